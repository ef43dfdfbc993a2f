"""What this bot watches, and how a sighting is judged: the pure half of "one watcher per context".

`watch_plan(catalog)` merges the contexts of every catalog target with detection on and every `watch` scope into
one scope per backend and location (Kubernetes context, or AWS region): that is what a watcher lists, and what
one context lease (`lease_name`) guards, so replicas compete for whole contexts, never for single workloads.
`found_in(sighting)` says which workload a sighting is about, in catalog terms; `judge_sighting` calls the
backend's rule with the object's memory; `current_revision` names the revision that is current now (a newer
one than an incident's failed revision supersedes it). Nothing here reads a clock or talks to anybody.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from bot.core.catalog import (
    BackendKind,
    Catalog,
    DetectSettings,
    EcsTarget,
    EcsWatch,
    HelmTarget,
    HelmWatch,
    KubernetesTarget,
    KubernetesWatch,
    Target,
    TargetName,
    WatchScope,
    WorkloadKind,
)
from bot.core.commands import TargetRef
from bot.core.detected_targets import FoundWorkload
from bot.core.detection import (
    Observations,
    Sighting,
    Verdict,
    judge_ecs_service,
    judge_helm_release,
    judge_workload,
)
from bot.core.incident_parts import ECS_SERVICE_KIND, HELM_RELEASE_KIND, WorkloadRef
from bot.core.targets import resolve_target


def watch_plan(catalog: Catalog) -> tuple[WatchScope, ...]:
    """One scope per (backend, location), covering every namespace (or ECS cluster) detection needs there."""
    wanted: dict[tuple[BackendKind, str | None], set[str]] = {}
    # A Kubernetes or Helm target without `kube_context` lives in the default context, as `found_in` matches it.
    default_context = catalog.defaults.kubernetes.kube_context
    for name in catalog.names:
        if not catalog.detect_settings(name).is_active:
            continue
        spec = catalog.targets[name]
        match spec:
            case KubernetesTarget():
                context = spec.kube_context or default_context
                wanted.setdefault((BackendKind.KUBERNETES, context), set()).add(spec.namespace)
            case HelmTarget():
                wanted.setdefault((BackendKind.HELM, spec.kube_context or default_context), set()).add(spec.namespace)
            case EcsTarget():
                wanted.setdefault((BackendKind.ECS, spec.region), set()).add(spec.cluster)
    for scope in catalog.watch:
        if not catalog.scope_detect_settings(scope).is_active:
            continue
        match scope:
            case EcsWatch():
                wanted.setdefault((BackendKind.ECS, scope.region), set()).update(scope.clusters)
            case KubernetesWatch() | HelmWatch():
                wanted.setdefault((scope.backend, scope.kube_context), set()).update(scope.namespaces)
    return tuple(_scope(backend, location, names) for (backend, location), names in sorted(wanted.items(), key=_order))


def lease_name(scope: WatchScope) -> str:
    """The context lease guarding a scope: `kubernetes:sandbox`, `helm:sandbox`, `ecs:us-east-1`."""
    location = scope.region if isinstance(scope, EcsWatch) else scope.kube_context
    return f"{scope.backend.value}:{location or 'default'}"


def found_in(sighting: Sighting, backend: BackendKind) -> FoundWorkload:
    """The workload a sighting is about (`backend` says which watcher saw it: Helm and Kubernetes share contexts)."""
    if sighting.workload is not None:
        snapshot = sighting.workload
        return FoundWorkload(
            backend=backend,
            location=sighting.location,
            kind=snapshot.kind.value,
            namespace=snapshot.namespace,
            name=snapshot.name,
        )
    if sighting.release is not None:
        release = sighting.release
        return FoundWorkload(
            backend=BackendKind.HELM,
            location=sighting.location,
            kind=HELM_RELEASE_KIND,
            namespace=release.namespace,
            name=release.name,
        )
    assert sighting.service is not None  # a Sighting carries exactly one object
    return FoundWorkload(
        backend=BackendKind.ECS,
        location=sighting.location,
        kind=ECS_SERVICE_KIND,
        namespace=sighting.service.cluster,
        name=sighting.service.service,
    )


def workload_ref(found: FoundWorkload) -> WorkloadRef:
    return WorkloadRef(
        backend=found.backend, location=found.location, kind=found.kind, namespace=found.namespace, name=found.name
    )


def target_workload(target: Target, catalog: Catalog) -> WorkloadRef | None:
    """The workload a rollback target names, for verifying a rollback with the watcher's eyes; None for a batch."""
    spec = target.spec
    context = catalog.defaults.kubernetes.kube_context
    match spec:
        case KubernetesTarget():
            location = spec.kube_context or context
            return WorkloadRef(
                backend=BackendKind.KUBERNETES,
                location=location,
                kind=spec.kind.value,
                namespace=spec.namespace,
                name=spec.name,
            )
        case HelmTarget():
            return WorkloadRef(
                backend=BackendKind.HELM,
                location=spec.kube_context or context,
                kind=HELM_RELEASE_KIND,
                namespace=spec.namespace,
                name=spec.release,
            )
        case EcsTarget():
            return WorkloadRef(
                backend=BackendKind.ECS,
                location=spec.region,
                kind=ECS_SERVICE_KIND,
                namespace=spec.cluster,
                name=spec.service,
            )
    return None


def incident_target(catalog: Catalog, name: TargetName | None, workload: WorkloadRef) -> Target:
    """What an incident's rollback acts on: its catalog target, else the workload as an ad-hoc target."""
    if name is not None:
        target = catalog.get(name)
        if target is not None:
            return target
    ref = TargetRef.workload(WorkloadKind(workload.kind), workload.name, workload.namespace)
    return resolve_target(ref, catalog)


def judge_sighting(sighting: Sighting, now: datetime, settings: DetectSettings, memory: Observations) -> Verdict:
    if sighting.workload is not None:
        return judge_workload(sighting.workload, sighting.pods, now, settings, memory)
    if sighting.release is not None:
        return judge_helm_release(sighting.release, now, settings, memory)
    assert sighting.service is not None
    return judge_ecs_service(sighting.service, now, settings, memory)


def current_revision(sighting: Sighting) -> str | None:
    """The revision that is current now, in the same terms as a signal's `revision`."""
    if sighting.workload is not None:
        return sighting.workload.revision_key
    if sighting.release is not None:
        return str(sighting.release.revision)
    primary = sighting.service.primary if sighting.service is not None else None
    return primary.id if primary is not None else None


def _scope(backend: BackendKind, location: str | None, names: Iterable[str]) -> WatchScope:
    everything = "*" in names
    listed = ("*",) if everything else tuple(sorted(names))
    match backend:
        case BackendKind.ECS:
            return EcsWatch(region=location, clusters=tuple(sorted(names)))
        case BackendKind.HELM:
            return HelmWatch(kube_context=location, namespaces=listed)
    return KubernetesWatch(kube_context=location, namespaces=listed)


def _order(item: tuple[tuple[BackendKind, str | None], set[str]]) -> tuple[str, str]:
    (backend, location), _ = item
    return backend.value, location or ""
