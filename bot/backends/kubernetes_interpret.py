"""The pure half of the Kubernetes backend: kubectl's rollout rules applied to plain JSON objects.

Everything here works on the dicts the API server returns (camelCase, as `kubectl get -o json` shows them), so
it can be tested with recorded payloads. The rules follow kubectl's `polymorphichelpers` (history, rollback,
rollout status) and the controllers' revision bookkeeping; see docs/kubernetes-and-helm.md §1–4 in shared/.
What a rollback changes in the pod template, shown in the preview, is `kubernetes_changes`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.core.catalog import WorkloadKind
from bot.core.errors import RevisionNotFound, RollbackRefused
from bot.core.rollouts import ContainerImage, Revision, RevisionNumber, UnhealthyUnit

Obj = Mapping[str, Any]

REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
CHANGE_CAUSE_ANNOTATION = "kubernetes.io/change-cause"
# kubectl keeps these from the Deployment and takes every other annotation from the target ReplicaSet (rollback.go).
ANNOTATIONS_TO_SKIP = frozenset(
    {
        "kubectl.kubernetes.io/last-applied-configuration",
        "deployment.kubernetes.io/revision",
        "deployment.kubernetes.io/revision-history",
        "deployment.kubernetes.io/desired-replicas",
        "deployment.kubernetes.io/max-replicas",
        "deprecated.deployment.rollback.to",
    }
)
# Waiting reasons that mean a pod will not become ready by itself; named in the thread as soon as seen.
STUCK_REASONS = frozenset(
    {
        "ImagePullBackOff",
        "ErrImagePull",
        "CrashLoopBackOff",
        "CreateContainerConfigError",
        "CreateContainerError",
        "InvalidImageName",
        "RunContainerError",
        "ErrImageNeverPull",
    }
)
KIND_WORDS = {
    WorkloadKind.DEPLOYMENT: ("deployment", "deployment.apps"),
    WorkloadKind.DAEMONSET: ("daemon set", "daemonset.apps"),
    WorkloadKind.STATEFULSET: ("statefulset", "statefulset.apps"),
}


@dataclass(frozen=True)
class HistoryEntry:
    """One revision of a workload with the object that carries it (a ReplicaSet or a ControllerRevision)."""

    revision: RevisionNumber
    source: Obj
    template: Obj


@dataclass(frozen=True)
class RolloutVerdict:
    """kubectl rollout status's answer for one observation of the workload."""

    is_done: bool
    message: str
    failure: str | None = None


def metadata(obj: Obj) -> Obj:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def annotations_of(obj: Obj) -> Mapping[str, str]:
    found = metadata(obj).get("annotations")
    return found if isinstance(found, Mapping) else {}


def is_controlled_by(obj: Obj, owner: Obj) -> bool:
    owner_uid = metadata(owner).get("uid")
    return any(
        ref.get("controller") is True and ref.get("uid") == owner_uid
        for ref in metadata(obj).get("ownerReferences") or ()
    )


def replica_set_revision(replica_set: Obj) -> int | None:
    """The RS's revision annotation; missing counts as 0 and an unparsable one is skipped, as in kubectl."""
    raw = annotations_of(replica_set).get(REVISION_ANNOTATION, "0")
    try:
        return int(raw)
    except ValueError:
        return None


def selector_string(selector: Obj | None) -> str:
    """Render a LabelSelector the way LabelSelectorAsSelector does (sorted keys)."""
    if not selector:
        return ""
    parts = [f"{key}={value}" for key, value in sorted((selector.get("matchLabels") or {}).items())]
    for expression in selector.get("matchExpressions") or ():
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        if operator == "In":
            parts.append(f"{key} in ({','.join(sorted(values))})")
        elif operator == "NotIn":
            parts.append(f"{key} notin ({','.join(sorted(values))})")
        elif operator == "Exists":
            parts.append(key)
        elif operator == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts)


def normalized(value: Any) -> Any:
    """Semantic.DeepEqual's view: None, empty maps and empty lists are the same as absent."""
    if isinstance(value, Mapping):
        cleaned = {key: normalized(item) for key, item in value.items()}
        return {key: item for key, item in cleaned.items() if item not in (None, {}, [])}
    if isinstance(value, list | tuple):
        return [normalized(item) for item in value]
    return value


def template_without_hash(template: Obj) -> dict[str, Any]:
    copied: dict[str, Any] = json.loads(json.dumps(template))
    labels = copied.get("metadata", {}).get("labels")
    if isinstance(labels, dict):
        labels.pop("pod-template-hash", None)
    return copied


def templates_equal(left: Obj, right: Obj) -> bool:
    """kubectl's EqualIgnoreHash."""
    return bool(normalized(template_without_hash(left)) == normalized(template_without_hash(right)))


def controller_revision_template(revision: Obj) -> dict[str, Any]:
    data = revision.get("data") or {}
    if isinstance(data, str):
        data = json.loads(data)
    template = dict((data.get("spec") or {}).get("template") or {})
    template.pop("$patch", None)
    return template


def deployment_history(deployment: Obj, replica_sets: Iterable[Obj]) -> list[HistoryEntry]:
    """The revisions `kubectl rollout history deployment/X` lists, ascending; later duplicates win."""
    by_revision: dict[int, HistoryEntry] = {}
    for replica_set in replica_sets:
        if not is_controlled_by(replica_set, deployment):
            continue
        revision = replica_set_revision(replica_set)
        if revision is None:
            continue
        template = (replica_set.get("spec") or {}).get("template") or {}
        by_revision[revision] = HistoryEntry(RevisionNumber(revision), replica_set, template)
    return [by_revision[number] for number in sorted(by_revision)]


def controller_revision_history(workload: Obj, revisions: Iterable[Obj]) -> list[HistoryEntry]:
    """The revisions of a DaemonSet or StatefulSet, from its ControllerRevisions."""
    by_revision: dict[int, HistoryEntry] = {}
    for revision in revisions:
        if not is_controlled_by(revision, workload):
            continue
        number = int(revision.get("revision") or 0)
        by_revision[number] = HistoryEntry(RevisionNumber(number), revision, controller_revision_template(revision))
    return [by_revision[number] for number in sorted(by_revision)]


def workload_template(workload: Obj) -> Obj:
    template = (workload.get("spec") or {}).get("template")
    return template if isinstance(template, Mapping) else {}


def current_entry(workload: Obj, history: Sequence[HistoryEntry]) -> HistoryEntry | None:
    """The entry whose template the workload runs now (the highest such revision)."""
    template = workload_template(workload)
    matching = [entry for entry in history if templates_equal(entry.template, template)]
    return matching[-1] if matching else None


def choose_rollback_target(
    workload: Obj, history: Sequence[HistoryEntry], to_revision: int | None, *, kind: WorkloadKind
) -> HistoryEntry:
    """kubectl rollout undo's target choice: 0/None = second-highest revision, else an exact match."""
    name = metadata(workload).get("name", "?")
    available = [entry.revision for entry in history]
    if not to_revision:
        if kind is WorkloadKind.DEPLOYMENT and not history:
            raise RevisionNotFound(f'no rollout history found for deployment "{name}"', available)
        if len(history) <= 1:
            raise RevisionNotFound(
                f"{KIND_WORDS[kind][1]}/{name} has no earlier revision to roll back to "
                f"(history: {_listing(available)})",
                available,
            )
        return history[-2]
    for entry in history:
        if entry.revision == to_revision:
            return entry
    raise RevisionNotFound(
        f"revision {to_revision} of {KIND_WORDS[kind][1]}/{name} does not exist; available: {_listing(available)}",
        available,
    )


def _listing(numbers: Sequence[int]) -> str:
    return ", ".join(str(number) for number in numbers) if numbers else "none"


def check_rollback_allowed(workload: Obj, kind: WorkloadKind) -> None:
    spec = workload.get("spec") or {}
    name = metadata(workload).get("name", "?")
    if kind is WorkloadKind.DEPLOYMENT and spec.get("paused"):
        raise RollbackRefused(
            f"deployment/{name} is paused; resume it first with "
            f"`kubectl rollout resume deployment/{name}` and try again"
        )
    if kind in (WorkloadKind.DAEMONSET, WorkloadKind.STATEFULSET):
        strategy = (spec.get("updateStrategy") or {}).get("type", "RollingUpdate")
        if strategy != "RollingUpdate":
            raise RollbackRefused(
                f"{KIND_WORDS[kind][1]}/{name} uses the {strategy} update strategy, so a rollback would not "
                "replace its pods; switch it to RollingUpdate first"
            )


def deployment_rollback_patch(
    deployment: Obj, target: HistoryEntry, mark: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    """The JSON patch kubectl sends: the target RS's template and the merged annotations.

    With a `mark` (the operation's annotations), the patch also carries them and the resourceVersion it was
    computed from, so the API server refuses it (409) if anyone changed the Deployment since it was read.
    """
    template = template_without_hash(target.template)
    merged = {key: value for key, value in annotations_of(deployment).items() if key in ANNOTATIONS_TO_SKIP}
    merged.update(
        {key: value for key, value in annotations_of(target.source).items() if key not in ANNOTATIONS_TO_SKIP}
    )
    patch: list[dict[str, Any]] = [
        {"op": "replace", "path": "/spec/template", "value": template},
        {"op": "replace", "path": "/metadata/annotations", "value": {**merged, **(mark or {})}},
    ]
    resource_version = metadata(deployment).get("resourceVersion")
    if mark is not None and resource_version:
        patch.append({"op": "replace", "path": "/metadata/resourceVersion", "value": resource_version})
    return patch


def controller_revision_patch(
    target: HistoryEntry, mark: Mapping[str, str] | None = None, workload: Obj | None = None
) -> dict[str, Any]:
    """DaemonSets and StatefulSets: kubectl sends the ControllerRevision data verbatim as a strategic merge patch.

    A `mark` is merged into the workload's annotations, with the `workload`'s resourceVersion as a precondition.
    """
    data = target.source.get("data") or {}
    if isinstance(data, str):
        data = json.loads(data)
    patch = dict(data)
    if mark is not None:
        meta: dict[str, Any] = {"annotations": dict(mark)}
        resource_version = metadata(workload or {}).get("resourceVersion")
        if resource_version:
            meta["resourceVersion"] = resource_version
        patch["metadata"] = meta
    return patch


def images_of(template: Obj) -> tuple[ContainerImage, ...]:
    spec = template.get("spec") or {}
    containers = list(spec.get("initContainers") or ()) + list(spec.get("containers") or ())
    return tuple(ContainerImage(container=c.get("name", "?"), image=c.get("image", "?")) for c in containers)


def parse_timestamp(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def revisions_from_history(workload: Obj, history: Sequence[HistoryEntry]) -> list[Revision]:
    current = current_entry(workload, history)
    return [
        Revision(
            number=entry.revision,
            change_cause=annotations_of(entry.source).get(CHANGE_CAUSE_ANNOTATION) or None,
            images=images_of(entry.template),
            deployed_at=parse_timestamp(metadata(entry.source).get("creationTimestamp")),
            is_current=current is not None and entry.revision == current.revision,
        )
        for entry in history
    ]


def rollout_verdict(workload: Obj, kind: WorkloadKind) -> RolloutVerdict:
    """`kubectl rollout status`'s message for one observation, with the same completion rules."""
    if kind is WorkloadKind.DEPLOYMENT:
        return _deployment_verdict(workload)
    if kind is WorkloadKind.DAEMONSET:
        return _daemonset_verdict(workload)
    return _statefulset_verdict(workload)


def _generation_observed(workload: Obj) -> bool:
    generation = int(metadata(workload).get("generation") or 0)
    observed = int((workload.get("status") or {}).get("observedGeneration") or 0)
    return generation <= observed


def _deployment_verdict(deployment: Obj) -> RolloutVerdict:
    name = metadata(deployment).get("name", "?")
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    if not _generation_observed(deployment):
        return RolloutVerdict(False, "Waiting for deployment spec update to be observed...")
    for condition in status.get("conditions") or ():
        if condition.get("type") == "Progressing" and condition.get("reason") == "ProgressDeadlineExceeded":
            return RolloutVerdict(
                False,
                f'deployment "{name}" exceeded its progress deadline',
                failure=f'deployment "{name}" exceeded its progress deadline',
            )
    desired = int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1)
    updated = int(status.get("updatedReplicas") or 0)
    replicas = int(status.get("replicas") or 0)
    available = int(status.get("availableReplicas") or 0)
    waiting = f'Waiting for deployment "{name}" rollout to finish: '
    if updated < desired:
        return RolloutVerdict(False, f"{waiting}{updated} out of {desired} new replicas have been updated...")
    if replicas > updated:
        return RolloutVerdict(False, f"{waiting}{replicas - updated} old replicas are pending termination...")
    if available < updated:
        return RolloutVerdict(False, f"{waiting}{available} of {updated} updated replicas are available...")
    return RolloutVerdict(True, f'deployment "{name}" successfully rolled out')


def _daemonset_verdict(daemonset: Obj) -> RolloutVerdict:
    name = metadata(daemonset).get("name", "?")
    status = daemonset.get("status") or {}
    if not _generation_observed(daemonset):
        return RolloutVerdict(False, "Waiting for daemon set spec update to be observed...")
    desired = int(status.get("desiredNumberScheduled") or 0)
    updated = int(status.get("updatedNumberScheduled") or 0)
    available = int(status.get("numberAvailable") or 0)
    waiting = f'Waiting for daemon set "{name}" rollout to finish: '
    if updated < desired:
        return RolloutVerdict(False, f"{waiting}{updated} out of {desired} new pods have been updated...")
    if available < desired:
        return RolloutVerdict(False, f"{waiting}{available} of {desired} updated pods are available...")
    return RolloutVerdict(True, f'daemon set "{name}" successfully rolled out')


def _statefulset_verdict(statefulset: Obj) -> RolloutVerdict:
    spec, status = statefulset.get("spec") or {}, statefulset.get("status") or {}
    observed = int(status.get("observedGeneration") or 0)
    if observed == 0 or int(metadata(statefulset).get("generation") or 0) > observed:
        return RolloutVerdict(False, "Waiting for statefulset spec update to be observed...")
    desired = int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1)
    ready = int(status.get("readyReplicas") or 0)
    if ready < desired:
        return RolloutVerdict(False, f"Waiting for {desired - ready} pods to be ready...")
    rolling = (spec.get("updateStrategy") or {}).get("rollingUpdate")
    updated = int(status.get("updatedReplicas") or 0)
    if rolling is not None:
        partition = int(rolling.get("partition") or 0)
        if updated < desired - partition:
            return RolloutVerdict(
                False,
                f"Waiting for partitioned roll out to finish: {updated} out of {desired - partition} "
                "new pods have been updated...",
            )
        return RolloutVerdict(True, f"partitioned roll out complete: {updated} new pods have been updated...")
    if status.get("updateRevision") != status.get("currentRevision"):
        return RolloutVerdict(
            False,
            f"waiting for statefulset rolling update to complete {updated} pods at revision "
            f"{status.get('updateRevision')}...",
        )
    current = int(status.get("currentReplicas") or 0)
    return RolloutVerdict(
        True, f"statefulset rolling update complete {current} pods at revision {status.get('currentRevision')}..."
    )


def replica_counts(workload: Obj, kind: WorkloadKind) -> tuple[int, int, int]:
    """(ready, updated, desired) for progress lines."""
    spec, status = workload.get("spec") or {}, workload.get("status") or {}
    if kind is WorkloadKind.DAEMONSET:
        return (
            int(status.get("numberReady") or 0),
            int(status.get("updatedNumberScheduled") or 0),
            int(status.get("desiredNumberScheduled") or 0),
        )
    desired = int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1)
    return int(status.get("readyReplicas") or 0), int(status.get("updatedReplicas") or 0), desired


def unhealthy_pods(pods: Iterable[Obj]) -> list[UnhealthyUnit]:
    """Pods stuck in a state they will not leave by themselves, with the kubelet's reason."""
    stuck: list[UnhealthyUnit] = []
    for pod in pods:
        if metadata(pod).get("deletionTimestamp"):
            continue
        status = pod.get("status") or {}
        for container in list(status.get("initContainerStatuses") or ()) + list(status.get("containerStatuses") or ()):
            waiting = (container.get("state") or {}).get("waiting") or {}
            reason = waiting.get("reason")
            if reason in STUCK_REASONS:
                stuck.append(
                    UnhealthyUnit(
                        name=str(metadata(pod).get("name", "?")), reason=reason, message=waiting.get("message")
                    )
                )
                break
    return stuck


def pod_matches(pod: Obj, selector: Obj | None) -> bool:
    """Whether a pod matches a LabelSelector (matchLabels and matchExpressions)."""
    if not selector:
        return False
    labels = metadata(pod).get("labels") or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or ():
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        if (
            (operator == "In" and labels.get(key) not in values)
            or (operator == "NotIn" and labels.get(key) in values)
            or (operator == "Exists" and key not in labels)
            or (operator == "DoesNotExist" and key in labels)
        ):
            return False
    return True
