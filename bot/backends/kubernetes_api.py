"""The Kubernetes backend: `kubectl rollout history/undo/status` for Deployments, DaemonSets and StatefulSets.

This is the I/O half: it reads and patches objects with the official client, as raw JSON so that nothing is lost
in model conversion, and watches rollouts with the watch API. Every decision (which revision, which patch, when
a rollout is done) is taken by `kubernetes_interpret`, which mirrors kubectl's own rules. Client errors are
translated into `bot.core.errors` here and nowhere else.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import structlog
import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes import watch as k8s_watch
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from bot.backends import kubernetes_interpret as rules
from bot.backends import kubernetes_marks as marks
from bot.core import messages
from bot.core.catalog import KubernetesTarget, Target, WorkloadKind
from bot.core.errors import (
    BackendUnavailable,
    BotError,
    NothingToDo,
    RollbackFailed,
    TargetNotAllowed,
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
    UnhealthyUnit,
)

log = structlog.get_logger(__name__)
T = TypeVar("T")

# Conflicts (409) mean someone else wrote in between; re-read and try again a few times, as kubectl's users would.
CONFLICT_RETRIES = 5
# Each watch request ends after this long and is reopened from the last resourceVersion, so a silently dropped
# connection is noticed within this bound.
WATCH_WINDOW_SECONDS = 30
# Pause before reopening a watch after a transport error.
WATCH_RECONNECT_DELAY_SECONDS = 0.5

_KIND_PATHS = {
    WorkloadKind.DEPLOYMENT: "deployments",
    WorkloadKind.DAEMONSET: "daemonsets",
    WorkloadKind.STATEFULSET: "statefulsets",
}


class KubernetesClients:
    """One API client per kubeconfig context (or the in-cluster config), created once and reused."""

    def __init__(self, kubeconfig: str | None = None, *, in_cluster: bool | None = None) -> None:
        self._kubeconfig = kubeconfig
        self._in_cluster = in_cluster
        self._clients: dict[str | None, k8s.ApiClient] = {}
        self._lock = threading.Lock()

    def contexts(self) -> list[str]:
        try:
            found, _ = k8s_config.list_kube_config_contexts(config_file=self._kubeconfig)
        except (ConfigException, OSError, TypeError):
            return []
        return sorted(context["name"] for context in found or ())

    def api(self, context: str | None) -> k8s.ApiClient:
        with self._lock:
            if context not in self._clients:
                self._clients[context] = self._build(context)
            return self._clients[context]

    def _build(self, context: str | None) -> k8s.ApiClient:
        if context is None and self._use_in_cluster():
            configuration = k8s.Configuration()
            k8s_config.load_incluster_config(client_configuration=configuration)
            return k8s.ApiClient(configuration)
        if context is not None and context not in self.contexts():
            known = ", ".join(f"`{name}`" for name in self.contexts()) or "none"
            raise UnknownTarget(f"unknown kube context `{context}` — rollbot knows: {known}")
        try:
            return k8s_config.new_client_from_config(config_file=self._kubeconfig, context=context)
        except (ConfigException, OSError) as exc:
            raise BackendUnavailable(f"cannot load the kubeconfig for context `{context or 'default'}`: {exc}") from exc

    def _use_in_cluster(self) -> bool:
        """Targets without a kube_context use the pod's own ServiceAccount when running in a cluster."""
        if self._in_cluster is not None:
            return self._in_cluster
        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            return True
        if self._kubeconfig:
            return False
        try:
            k8s_config.load_kube_config()
        except (ConfigException, OSError, TypeError):
            return True
        return False

    def close(self) -> None:
        with self._lock:
            for api in self._clients.values():
                api.close()
            self._clients.clear()


@dataclass(frozen=True)
class WorkloadRef:
    """One workload in one cluster context: what the observers and the rules need to know about it."""

    kind: WorkloadKind
    name: str
    namespace: str
    kube_context: str | None = None

    @classmethod
    def of(cls, spec: KubernetesTarget) -> WorkloadRef:
        return cls(kind=spec.kind, name=spec.name, namespace=spec.namespace, kube_context=spec.kube_context)

    @property
    def label(self) -> str:
        return f"{rules.KIND_WORDS[self.kind][1]}/{self.name}"


@contextlib.contextmanager
def translating_errors(what: str) -> Iterator[None]:
    """Turn client exceptions into the bot's errors, so nothing above this module sees a vendor type."""
    try:
        yield
    except BotError:
        raise
    except ApiException as exc:
        raise _translate_api_exception(exc, what) from exc
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise BackendUnavailable(f"cannot reach the Kubernetes API while {what}: {exc.__class__.__name__}") from exc


def _translate_api_exception(exc: ApiException, what: str) -> BotError:
    message = _status_message(exc)
    if exc.status == 404:
        return UnknownTarget(f"{what}: {message}")
    if exc.status in (401, 403):
        return TargetNotAllowed(f"rollbot is not allowed to do this ({what}): {message}")
    if exc.status == 422:
        return RollbackFailed(f"the API server rejected the change ({what}): {message}")
    return BackendUnavailable(f"the Kubernetes API answered {exc.status} while {what}: {message}")


def _status_message(exc: ApiException) -> str:
    try:
        body = json.loads(exc.body or "{}")
    except (TypeError, ValueError):
        return str(exc.reason or exc.status)
    return str(body.get("message") or exc.reason or exc.status)


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
            changes=tuple(rules.template_changes(rules.workload_template(obj), chosen.template)),
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


def _raw(response: Any) -> dict[str, Any]:
    data = response.data
    parsed = json.loads(data.decode("utf-8") if isinstance(data, bytes) else data)
    return parsed if isinstance(parsed, dict) else {}


def _with_pods(reason: str, stuck: Sequence[UnhealthyUnit]) -> str:
    # A rollout of 50 replicas ends with one line: its pods counted per reason, never listed.
    return f"{reason}; {messages.stuck_pods_text(stuck)}" if stuck else reason


def _human(duration: timedelta) -> str:
    seconds = int(duration.total_seconds())
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds // 60}m"
    return f"{seconds}s"


def _target_pod_selector(plan: RollbackPlan) -> str | None:
    if plan.backend_data.get("pod_selector"):
        return plan.backend_data["pod_selector"]
    label = plan.backend_data.get("pod_label")
    value = plan.backend_data.get("pod_label_value")
    return f"{label}={value}" if label and value else None


def follow_rollouts(
    observers: Sequence[RolloutObserver],
    deadline: float,
    timeout: timedelta,
    monotonic: Callable[[], float],
    *,
    is_external_done: Callable[[], bool] = lambda: True,
    external_failure: Callable[[], str | None] = lambda: None,
    external_name: str = "the rollout to be confirmed",
) -> Iterator[RolloutStatus]:
    """Turn the observers' changes into RolloutStatus, with kubectl rollout status's rules for each workload.

    Finishes SUCCEEDED when every workload rolled out (and `is_external_done`, e.g. helm exited; it is asked only
    then), FAILED on a progress deadline, a deleted workload, an external failure or the timeout; stuck pods are
    reported once each, as soon as they appear. A timeout after the workloads rolled out says it waited for
    `external_name`, never just "timed out: … successfully rolled out".
    """
    changes = observers[0].changes if observers else None
    last_summary = ""
    rolled_out = False
    reported_stuck: set[tuple[str, str]] = set()
    while True:
        remaining = deadline - monotonic()
        if remaining <= 0:
            yield _timed_out(observers, timeout, last_summary, external_name if rolled_out else None)
            return
        if changes is None:
            change: set[RolloutObserver] | BaseException | None = None
            time.sleep(min(remaining, 0.2))
        else:
            change = next_change(changes, min(remaining, 0.5))
        if isinstance(change, BaseException):
            raise change
        failure = external_failure()
        if failure:
            stuck = [unit for observer in observers for unit in rules.unhealthy_pods(observer.pods())]
            yield RolloutStatus(phase=RolloutPhase.FAILED, summary=failure, reason=_with_pods(failure, stuck))
            return
        if any(observer.workload is None and not observer.is_deleted for observer in observers):
            continue
        deleted = [observer for observer in observers if observer.is_deleted]
        if deleted:
            reason = f"{deleted[0].ref.label} was deleted during the rollback"
            yield RolloutStatus(phase=RolloutPhase.FAILED, summary=reason, reason=reason)
            return
        verdicts = [
            (observer, rules.rollout_verdict(observer.workload or {}, observer.ref.kind)) for observer in observers
        ]
        ready = updated = desired = 0
        for observer, _ in verdicts:
            counts = rules.replica_counts(observer.workload or {}, observer.ref.kind)
            ready, updated, desired = ready + counts[0], updated + counts[1], desired + counts[2]
        stuck = [unit for observer in observers for unit in rules.unhealthy_pods(observer.pods())]
        new_stuck = [unit for unit in stuck if (unit.name, unit.reason) not in reported_stuck]
        reported_stuck.update((unit.name, unit.reason) for unit in stuck)
        failed = [verdict.failure for _, verdict in verdicts if verdict.failure]
        summary = "; ".join(verdict.message for _, verdict in verdicts)
        token = ",".join(observer.resource_version or "" for observer in observers)
        if failed:
            yield RolloutStatus(
                phase=RolloutPhase.FAILED,
                summary=summary,
                ready=ready,
                desired=desired,
                updated=updated,
                unhealthy=tuple(stuck),
                reason=_with_pods("; ".join(failed), stuck),
                resume_token=token,
            )
            return
        rolled_out = all(verdict.is_done for _, verdict in verdicts)
        if rolled_out and is_external_done():
            yield RolloutStatus(
                phase=RolloutPhase.SUCCEEDED,
                summary=summary,
                ready=ready,
                desired=desired,
                updated=updated,
                resume_token=token,
            )
            return
        if summary != last_summary or new_stuck:
            last_summary = summary
            yield RolloutStatus(
                phase=RolloutPhase.PROGRESSING,
                summary=summary,
                ready=ready,
                desired=desired,
                updated=updated,
                unhealthy=tuple(stuck),
                events=tuple(f"pod {unit.name}: {unit.reason}" for unit in new_stuck),
                resume_token=token,
            )


def _timed_out(
    observers: Sequence[RolloutObserver], timeout: timedelta, last_summary: str, waiting_for: str | None = None
) -> RolloutStatus:
    stuck = [unit for observer in observers for unit in rules.unhealthy_pods(observer.pods())]
    ready = updated = desired = 0
    for observer in observers:
        if observer.workload:
            counts = rules.replica_counts(observer.workload, observer.ref.kind)
            ready, updated, desired = ready + counts[0], updated + counts[1], desired + counts[2]
    seen = last_summary or "no progress observed"
    if waiting_for:
        reason = f"timed out after {_human(timeout)} waiting for {waiting_for}; the workloads rolled out: {seen}"
    else:
        reason = f"timed out after {_human(timeout)}: {seen}"
    reason = _with_pods(reason, stuck)
    return RolloutStatus(
        phase=RolloutPhase.FAILED,
        summary=f"timed out after {_human(timeout)}",
        ready=ready,
        desired=desired,
        updated=updated,
        unhealthy=tuple(stuck),
        reason=reason,
    )


class RolloutObserver:
    """Two watches (a workload by name, its pods by selector) that keep the latest objects and signal changes.

    The watches reconnect on errors and resume from the last resourceVersion they saw; a 410 Gone makes them
    list again. Nothing here decides anything. Several observers may share one `changes` queue (a Helm release
    has several workloads); each change is signalled as the observer itself.
    """

    def __init__(
        self,
        api: k8s.ApiClient,
        workload: WorkloadRef,
        *,
        pod_selector: str | None,
        changes: queue.Queue[RolloutObserver | BaseException] | None = None,
    ) -> None:
        self._api = api
        self.ref = workload
        self._pod_selector = pod_selector
        self.changes: queue.Queue[RolloutObserver | BaseException] = changes if changes is not None else queue.Queue()
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._watches: list[k8s_watch.Watch] = []
        self.workload: dict[str, Any] | None = None
        self.is_deleted = False
        self.resource_version: str | None = None
        self._pods: dict[str, dict[str, Any]] = {}

    def start(self) -> None:
        apps = k8s.AppsV1Api(self._api)
        listers: dict[WorkloadKind, Callable[..., Any]] = {
            WorkloadKind.DEPLOYMENT: apps.list_namespaced_deployment,
            WorkloadKind.DAEMONSET: apps.list_namespaced_daemon_set,
            WorkloadKind.STATEFULSET: apps.list_namespaced_stateful_set,
        }
        self._spawn(listers[self.ref.kind], {"field_selector": f"metadata.name={self.ref.name}"}, self._on_workload)
        if self._pod_selector is not None:
            core = k8s.CoreV1Api(self._api)
            self._spawn(core.list_namespaced_pod, {"label_selector": self._pod_selector}, self._on_pod)

    def _spawn(
        self, lister: Callable[..., Any], selectors: dict[str, str], on_event: Callable[[str, Any], None]
    ) -> None:
        thread = threading.Thread(
            target=self._run, args=(lister, selectors, on_event), name=f"k8s-watch-{self.ref.name}", daemon=True
        )
        thread.start()

    def _run(self, lister: Callable[..., Any], selectors: dict[str, str], on_event: Callable[[str, Any], None]) -> None:
        resource_version: str | None = None
        while not self._stopped.is_set():
            try:
                if resource_version is None:
                    listing = _raw(lister(self.ref.namespace, _preload_content=False, **selectors))
                    for item in listing.get("items") or ():
                        on_event("ADDED", item)
                    resource_version = (listing.get("metadata") or {}).get("resourceVersion")
                    self.changes.put(self)
                watcher = k8s_watch.Watch()
                with self._lock:
                    self._watches.append(watcher)
                for event in watcher.stream(
                    lister,
                    self.ref.namespace,
                    resource_version=resource_version,
                    timeout_seconds=WATCH_WINDOW_SECONDS,
                    allow_watch_bookmarks=True,
                    **selectors,
                ):
                    if self._stopped.is_set():
                        return
                    raw = event.get("raw_object") or {}
                    kind = event.get("type")
                    if kind == "ERROR":
                        if raw.get("code") == 410:
                            resource_version = None
                            break
                        raise ApiException(status=raw.get("code"), reason=raw.get("message"))
                    resource_version = rules.metadata(raw).get("resourceVersion") or resource_version
                    if kind != "BOOKMARK":
                        on_event(str(kind), raw)
                with self._lock:
                    if watcher in self._watches:
                        self._watches.remove(watcher)
            except ApiException as exc:
                if self._stopped.is_set():
                    return
                if exc.status == 410:
                    resource_version = None
                    continue
                if exc.status in (401, 403):
                    self.changes.put(_translate_api_exception(exc, f"watching {self.ref.label}"))
                    return
                self._stopped.wait(WATCH_RECONNECT_DELAY_SECONDS)
            except (urllib3.exceptions.HTTPError, OSError, ValueError):
                if self._stopped.is_set():
                    return
                self._stopped.wait(WATCH_RECONNECT_DELAY_SECONDS)

    def _on_workload(self, kind: str, obj: dict[str, Any]) -> None:
        with self._lock:
            if kind == "DELETED":
                self.is_deleted = True
            else:
                self.workload = obj
                self.resource_version = rules.metadata(obj).get("resourceVersion")
        self.changes.put(self)

    def _on_pod(self, kind: str, obj: dict[str, Any]) -> None:
        name = str(rules.metadata(obj).get("name", ""))
        with self._lock:
            if kind == "DELETED":
                self._pods.pop(name, None)
            else:
                self._pods[name] = obj
        self.changes.put(self)

    def pods(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._pods.values())

    def stop(self) -> None:
        self._stopped.set()
        with self._lock:
            watches = list(self._watches)
        for watcher in watches:
            watcher.stop()


def next_change(
    changes: queue.Queue[RolloutObserver | BaseException], timeout: float
) -> set[RolloutObserver] | BaseException | None:
    """Wait for a change, then drain the burst that follows, so one observation covers it."""
    try:
        first = changes.get(timeout=timeout)
    except queue.Empty:
        return None
    if isinstance(first, BaseException):
        return first
    changed = {first}
    while True:
        try:
            following = changes.get_nowait()
        except queue.Empty:
            return changed
        if isinstance(following, BaseException):
            return following
        changed.add(following)


__all__ = ["KubernetesBackend", "KubernetesClients", "RolloutObserver", "WorkloadRef", "next_change"]
