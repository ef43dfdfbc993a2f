"""The Kubernetes backend: `kubectl rollout history/undo/status` for Deployments, DaemonSets and StatefulSets.

This is the I/O half: it reads and patches objects with the official client, as raw JSON so that nothing is lost
in model conversion. Every decision (which revision, which patch, when a rollout is done) is taken by
`kubernetes_interpret`, which mirrors kubectl's own rules. A rollout is followed by `kubernetes_rollout`'s
watches; clients and the translation of client errors into `bot.core.errors` are `kubernetes_clients`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import timedelta
from typing import Any, TypeVar

import structlog
import urllib3
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from bot.backends import kubernetes_interpret as rules
from bot.backends import kubernetes_marks as marks
from bot.backends.kubernetes_changes import template_changes
from bot.backends.kubernetes_clients import (
    KubernetesClients,
    WorkloadRef,
    _raw,
    _translate_api_exception,
    translating_errors,
)
from bot.backends.kubernetes_rollout import RolloutObserver, follow_rollouts
from bot.core.catalog import KubernetesTarget, Target, WorkloadKind
from bot.core.errors import (
    BackendUnavailable,
    NothingToDo,
    RollbackFailed,
    UnknownTarget,
)
from bot.core.operations import OperationId
from bot.core.rollouts import (
    BackendOption,
    Revision,
    RevisionNumber,
    RollbackPlan,
    RollbackReceipt,
    RolloutPhase,
    RolloutStatus,
    TargetStatus,
)

log = structlog.get_logger(__name__)
T = TypeVar("T")

# Conflicts (409) mean someone else wrote in between; re-read and try again a few times, as kubectl's users would.
CONFLICT_RETRIES = 5
_KIND_PATHS = {
    WorkloadKind.DEPLOYMENT: "deployments",
    WorkloadKind.DAEMONSET: "daemonsets",
    WorkloadKind.STATEFULSET: "statefulsets",
}


class KubernetesBackend:
    """Implements `bot.ports.Backend` for `backend: kubernetes` targets."""

    def __init__(self, clients: KubernetesClients, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._clients = clients
        self._monotonic = monotonic

    # -- reading -------------------------------------------------------------------------------------------

    def options(self) -> Sequence[BackendOption]:
        return ()

    def check_target(self, target: Target) -> None:
        self._read_workload(self._workload(target))

    def history(self, target: Target) -> Sequence[Revision]:
        workload = self._workload(target)
        obj = self._read_workload(workload)
        return rules.revisions_from_history(obj, self._history(workload, obj))

    def current_revision(self, target: Target) -> RevisionNumber:
        workload = self._workload(target)
        obj = self._read_workload(workload)
        current = rules.current_entry(obj, self._history(workload, obj))
        if current is not None:
            return current.revision
        return RevisionNumber(int(rules.annotations_of(obj).get(rules.REVISION_ANNOTATION, "0") or 0))

    def status(self, target: Target) -> TargetStatus:
        workload = self._workload(target)
        obj = self._read_workload(workload)
        history = self._history(workload, obj)
        current = rules.current_entry(obj, history)
        verdict = rules.rollout_verdict(obj, workload.kind)
        ready, updated, desired = rules.replica_counts(obj, workload.kind)
        pods = self._list_pods(workload, obj)
        stuck = rules.unhealthy_pods(pods)
        details = [f"ready {ready}/{desired} · updated {updated}/{desired}", verdict.message]
        for condition in (obj.get("status") or {}).get("conditions") or ():
            reason = f" ({condition.get('reason')})" if condition.get("reason") else ""
            details.append(f"{condition.get('type')}={condition.get('status')}{reason}")
        return TargetStatus(
            revision=current.revision if current else None,
            summary=f"{workload.label} in {workload.namespace}: {verdict.message}",
            images=rules.images_of(rules.workload_template(obj)),
            details=tuple(details),
            unhealthy=tuple(stuck),
            is_healthy=verdict.is_done and not stuck,
        )

    def plan_rollback(
        self, target: Target, to_revision: RevisionNumber | None, options: Mapping[str, bool | str]
    ) -> RollbackPlan:
        workload = self._workload(target)
        obj = self._read_workload(workload)
        rules.check_rollback_allowed(obj, workload.kind)
        history = self._history(workload, obj)
        chosen = rules.choose_rollback_target(obj, history, to_revision, kind=workload.kind)
        current = rules.current_entry(obj, history)
        if rules.templates_equal(chosen.template, rules.workload_template(obj)):
            raise NothingToDo(
                f"{workload.label} is already at revision {chosen.revision} "
                "(the current template already matches it); nothing to roll back"
            )
        from_revision = current.revision if current else RevisionNumber(0)
        notes = []
        if not to_revision:
            notes.append(f"no revision given: the previous one, {chosen.revision}")
        cause = rules.annotations_of(chosen.source).get(rules.CHANGE_CAUSE_ANNOTATION)
        if cause:
            notes.append(f"revision {chosen.revision} change-cause: {cause}")
        return RollbackPlan(
            from_revision=from_revision,
            to_revision=chosen.revision,
            changes=tuple(template_changes(rules.workload_template(obj), chosen.template)),
            notes=tuple(notes),
            options=dict(options),
            backend_data={
                **self._pod_identity(workload, chosen, (obj.get("spec") or {}).get("selector")),
                # What the rollback starts from: roll_back refuses if the workload moved off it meanwhile.
                marks.FROM_TEMPLATE_KEY: marks.template_fingerprint(rules.workload_template(obj)),
            },
        )

    # -- changing ------------------------------------------------------------------------------------------

    def roll_back(self, target: Target, plan: RollbackPlan, operation_id: OperationId) -> RollbackReceipt:
        workload = self._workload(target)
        for attempt in range(CONFLICT_RETRIES):
            obj = self._read_workload(workload)
            history = self._history(workload, obj)
            chosen = self._planned_entry(workload, obj, history, plan)
            newest = max((entry.revision for entry in history), default=0)
            # Refuses when the workload moved under the plan, before or after this operation's own patch.
            decision = marks.decide_rollback(obj, workload.kind, history, chosen, plan, operation_id)
            if decision is not marks.RollbackDecision.APPLY:
                # Do not patch twice. The controller renumbers the target to newest+1 unless it already did.
                renumbered = chosen.revision if chosen.revision == newest else newest + 1
                message = (
                    f"{workload.label} was already rolled back to revision {plan.to_revision} by this operation"
                    if decision is marks.RollbackDecision.APPLIED_BY_THIS_OPERATION
                    else f"{workload.label} already runs revision {plan.to_revision}'s template"
                )
                return RollbackReceipt(new_revision=RevisionNumber(renumbered), message=message)
            rules.check_rollback_allowed(obj, workload.kind)
            try:
                self._patch(workload, obj, chosen, marks.rollback_mark(operation_id, plan.to_revision))
            except ApiException as exc:
                if exc.status == 409 and attempt + 1 < CONFLICT_RETRIES:
                    # Someone wrote in between: read again, and decide again whether this is still the plan.
                    log.info("rollback conflict, re-reading", operation_id=operation_id, attempt=attempt)
                    continue
                raise _translate_api_exception(exc, f"rolling back {workload.label}") from exc
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                raise BackendUnavailable(
                    f"cannot reach the Kubernetes API while rolling back {workload.label}"
                ) from exc
            log.info("rollback patched", operation_id=operation_id, target=workload.label, to=plan.to_revision)
            # Rolling back re-uses the target's ReplicaSet/ControllerRevision and renumbers it to newest+1.
            return RollbackReceipt(
                new_revision=RevisionNumber(newest + 1),
                message=f"{workload.label} rolled back to revision {plan.to_revision}'s template",
            )
        raise RollbackFailed(f"{workload.label} kept changing while rolling back; try again")

    def _planned_entry(
        self, workload: WorkloadRef, obj: rules.Obj, history: Sequence[rules.HistoryEntry], plan: RollbackPlan
    ) -> rules.HistoryEntry:
        # Deployments renumber the target ReplicaSet once it is rolled back to, so find it by name first.
        source_name = plan.backend_data.get("source_name")
        for entry in history:
            if source_name and rules.metadata(entry.source).get("name") == source_name:
                return entry
        return rules.choose_rollback_target(obj, history, plan.to_revision, kind=workload.kind)

    def _patch(
        self, workload: WorkloadRef, obj: rules.Obj, chosen: rules.HistoryEntry, mark: Mapping[str, str]
    ) -> None:
        """kubectl's rollback request, plus the operation's mark and the read resourceVersion as a precondition."""
        apps = k8s.AppsV1Api(self._clients.api(workload.kube_context))
        name, namespace = workload.name, workload.namespace
        if workload.kind is WorkloadKind.DEPLOYMENT:
            # A list body goes out as application/json-patch+json, exactly kubectl's request.
            apps.patch_namespaced_deployment(name, namespace, rules.deployment_rollback_patch(obj, chosen, mark))
        elif workload.kind is WorkloadKind.DAEMONSET:
            # A dict body goes out as a strategic merge patch; `$patch: replace` is preserved.
            apps.patch_namespaced_daemon_set(name, namespace, rules.controller_revision_patch(chosen, mark, obj))
        else:
            apps.patch_namespaced_stateful_set(name, namespace, rules.controller_revision_patch(chosen, mark, obj))

    # -- watching ------------------------------------------------------------------------------------------

    def watch_rollout(
        self, target: Target, plan: RollbackPlan, timeout: timedelta, resume_token: str | None = None
    ) -> Iterator[RolloutStatus]:
        workload = self._workload(target)
        observer = RolloutObserver(
            self._clients.api(workload.kube_context), workload, pod_selector=_target_pod_selector(plan)
        )
        observer.start()
        try:
            for status in follow_rollouts(
                [observer], self._monotonic() + timeout.total_seconds(), timeout, self._monotonic
            ):
                if (
                    status.phase is RolloutPhase.FAILED
                    and workload.kind is WorkloadKind.STATEFULSET
                    and status.unhealthy
                ):
                    status = status.model_copy(
                        update={"reason": f"{status.reason}; {_ordered_ready_hint(workload, status)}"}
                    )
                yield status
        finally:
            observer.stop()

    # -- helpers -------------------------------------------------------------------------------------------

    def _workload(self, target: Target) -> WorkloadRef:
        if not isinstance(target.spec, KubernetesTarget):
            raise UnknownTarget(f"`{target.name}` is not a Kubernetes target")
        return WorkloadRef.of(target.spec)

    def _read_workload(self, workload: WorkloadRef) -> dict[str, Any]:
        api = self._clients.api(workload.kube_context)
        apps = k8s.AppsV1Api(api)
        readers: dict[WorkloadKind, Callable[..., Any]] = {
            WorkloadKind.DEPLOYMENT: apps.read_namespaced_deployment,
            WorkloadKind.DAEMONSET: apps.read_namespaced_daemon_set,
            WorkloadKind.STATEFULSET: apps.read_namespaced_stateful_set,
        }
        try:
            return _raw(readers[workload.kind](workload.name, workload.namespace, _preload_content=False))
        except ApiException as exc:
            if exc.status == 404:
                raise UnknownTarget(
                    f"{workload.label} not found in namespace `{workload.namespace}`"
                    + (f" (context `{workload.kube_context}`)" if workload.kube_context else "")
                ) from exc
            raise _translate_api_exception(exc, f"reading {workload.label}") from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise BackendUnavailable(
                f"cannot reach the Kubernetes API for context `{workload.kube_context or 'default'}`"
            ) from exc

    def _history(self, workload: WorkloadRef, obj: rules.Obj) -> list[rules.HistoryEntry]:
        apps = k8s.AppsV1Api(self._clients.api(workload.kube_context))
        selector = rules.selector_string((obj.get("spec") or {}).get("selector"))
        with translating_errors(f"reading the history of {workload.label}"):
            if workload.kind is WorkloadKind.DEPLOYMENT:
                listing = _raw(
                    apps.list_namespaced_replica_set(
                        workload.namespace, label_selector=selector, _preload_content=False
                    )
                )
                return rules.deployment_history(obj, listing.get("items") or ())
            listing = _raw(
                apps.list_namespaced_controller_revision(
                    workload.namespace, label_selector=selector, _preload_content=False
                )
            )
            return rules.controller_revision_history(obj, listing.get("items") or ())

    def _list_pods(self, workload: WorkloadRef, obj: rules.Obj) -> list[rules.Obj]:
        core = k8s.CoreV1Api(self._clients.api(workload.kube_context))
        selector = rules.selector_string((obj.get("spec") or {}).get("selector"))
        with translating_errors(f"listing the pods of {workload.label}"):
            listing = _raw(
                core.list_namespaced_pod(workload.namespace, label_selector=selector, _preload_content=False)
            )
        return list(listing.get("items") or ())

    @staticmethod
    def _pod_identity(
        workload: WorkloadRef, chosen: rules.HistoryEntry, workload_selector: rules.Obj | None
    ) -> dict[str, str]:
        """How to recognise the pods of the target revision (to report only their failures)."""
        source = rules.metadata(chosen.source)
        identity = {"source_name": str(source.get("name", ""))}
        if workload.kind is WorkloadKind.DEPLOYMENT:
            labels = source.get("labels") or {}
            if "pod-template-hash" in labels:
                identity["pod_label"] = "pod-template-hash"
                identity["pod_label_value"] = str(labels["pod-template-hash"])
        elif workload.kind is WorkloadKind.DAEMONSET:
            labels = source.get("labels") or {}
            if "controller-revision-hash" in labels:
                identity["pod_label"] = "controller-revision-hash"
                identity["pod_label_value"] = str(labels["controller-revision-hash"])
        else:
            # A StatefulSet with OrderedReady pods never replaces a pod that is not Ready, even one of the old
            # revision (the upstream "forced rollback" caveat), so its stuck pods matter whatever their revision.
            identity["pod_selector"] = rules.selector_string(workload_selector)
        return identity


def _ordered_ready_hint(workload: WorkloadRef, status: RolloutStatus) -> str:
    pods = " ".join(unit.name for unit in status.unhealthy)
    return (
        f"a StatefulSet does not replace a pod that never became Ready by itself: delete it "
        f"(`kubectl delete pod {pods} -n {workload.namespace}`) and the controller recreates it at the "
        "rolled-back revision"
    )


def _target_pod_selector(plan: RollbackPlan) -> str | None:
    if plan.backend_data.get("pod_selector"):
        return plan.backend_data["pod_selector"]
    label = plan.backend_data.get("pod_label")
    value = plan.backend_data.get("pod_label_value")
    return f"{label}={value}" if label and value else None


# KubernetesClients and translating_errors live in kubernetes_clients; re-exported because many modules and tests
# import them from here.
__all__ = ["KubernetesBackend", "KubernetesClients", "translating_errors"]
