"""From a workload a watcher saw back to the catalog: which target names it, and how to watch it.

Watchers see Kubernetes objects, Helm releases and ECS services, not catalog names. A detected workload
(`FoundWorkload`) belongs to the catalog target that names it, if there is one. Then that target's `detect`
settings, approval policy and lock apply, however the workload was found. Otherwise it belongs to the first
`watch` scope that covers it, with that scope's settings. A workload that neither names is not watched.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from bot.core.catalog import (
    BackendKind,
    Catalog,
    DetectSettings,
    EcsTarget,
    EcsWatch,
    HelmTarget,
    KubernetesTarget,
    TargetName,
)


class FoundWorkload(BaseModel):
    """A workload a watcher saw, in catalog terms: which backend, where (context or region), and its name.

    `kind` is the Kubernetes kind for workloads, `HelmRelease` or `EcsService` otherwise; `namespace` is the ECS
    cluster for ECS. `default_location` is the context (or region) the bot uses when the catalog names none.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: BackendKind
    location: str | None
    kind: str
    namespace: str
    name: str
    default_location: str | None = None


def find_target(catalog: Catalog, found: FoundWorkload) -> TargetName | None:
    """The catalog target that names a detected workload, if any.

    A Kubernetes or Helm target without `kube_context` lives in `defaults.kubernetes.kube_context`, as ad-hoc
    targets do. An ECS target without `region` matches only when `found.default_location` is that region.
    """
    default_context = catalog.defaults.kubernetes.kube_context
    for name in catalog.names:
        spec = catalog.targets[name]
        match spec:
            case KubernetesTarget() if found.backend is BackendKind.KUBERNETES:
                is_same = (spec.kind.value, spec.namespace, spec.name) == (found.kind, found.namespace, found.name)
                if is_same and (spec.kube_context or default_context) == found.location:
                    return name
            case HelmTarget() if found.backend is BackendKind.HELM:
                is_same = (spec.namespace, spec.release) == (found.namespace, found.name)
                if is_same and (spec.kube_context or default_context) == found.location:
                    return name
            case EcsTarget() if found.backend is BackendKind.ECS:
                is_same = (spec.cluster, spec.service) == (found.namespace, found.name)
                if is_same and (spec.region or found.default_location) == found.location:
                    return name
    return None


def detect_settings_for(catalog: Catalog, found: FoundWorkload) -> DetectSettings | None:
    """How to watch a detected workload: its catalog target's settings, else the first scope covering it.

    None means nobody asked to watch it (it is outside the catalog and outside every scope).
    """
    name = find_target(catalog, found)
    if name is not None:
        return catalog.detect_settings(name)
    for scope in catalog.watch:
        if scope.backend is not found.backend:
            continue
        location = scope.region if isinstance(scope, EcsWatch) else scope.kube_context
        if (location or found.default_location) == found.location and scope.covers(found.namespace):
            return catalog.scope_detect_settings(scope)
    return None


def no_button_reason(catalog: Catalog, found: FoundWorkload) -> str | None:
    """Why an incident card for this workload may not offer a rollback button; None when it may.

    Catalog targets always may. A workload found by a scope only may where ad-hoc rollbacks are allowed
    (`defaults.kubernetes.allowed_namespaces`, with someone to approve); Helm releases and ECS services have no
    ad-hoc form, so they must be catalog targets.
    """
    if find_target(catalog, found) is not None:
        return None
    if found.backend is not BackendKind.KUBERNETES:
        return f"this {found.backend.value} workload is not a catalog target; add it under `targets:` to roll back here"
    allowed = catalog.defaults.kubernetes.allowed_namespaces
    if found.namespace not in allowed:
        return (
            f"namespace `{found.namespace}` is not open to ad-hoc rollbacks — add it to "
            "`defaults.kubernetes.allowed_namespaces`, or add the workload as a catalog target"
        )
    policy = catalog.defaults.approvals
    if not policy.approvers and not policy.approver_groups:
        return "nobody could approve it: set `defaults.approvals.approvers` or `approver_groups`"
    return None
