"""Target resolution: from what the user named (`TargetRef`) to a `Target` with the policy that guards it.

A catalog name resolves to its catalog entry. An ad-hoc Kubernetes workload (`deploy/web -n shop`) is denied by
default: it resolves only when its namespace is listed in `defaults.kubernetes.allowed_namespaces`, and it is
then guarded by `defaults.approvals`. An ad-hoc reference to a workload the catalog already names resolves to that
catalog target, so its own policy (and its lock) applies whichever way people spell it.

This module does not ask any backend whether the target exists; `Backend.check_target` does, later.
"""

from __future__ import annotations

from typing import Final

from bot.core.catalog import (
    Catalog,
    ChannelId,
    HelmTarget,
    KubernetesTarget,
    Target,
    TargetName,
    TargetSpec,
    closest_names,
)
from bot.core.commands import TargetRef
from bot.core.errors import TargetNotAllowed, UnknownTarget

# Listing a hundred targets in an ephemeral error helps nobody; beyond this we say how many more there are.
MAX_LISTED_TARGETS: Final = 10


def resolve_target(ref: TargetRef, catalog: Catalog) -> Target:
    """Raises UnknownTarget (with a suggestion) or TargetNotAllowed (with where to allow it)."""
    if ref.kind is None:
        return _catalog_target(ref.name, catalog)
    namespace = ref.namespace or "default"
    context = catalog.defaults.kubernetes.kube_context
    for name in catalog.names:
        spec = catalog.targets[name]
        if (
            isinstance(spec, KubernetesTarget)
            and (spec.kind, spec.name, spec.namespace) == (ref.kind, ref.name, namespace)
            and (spec.kube_context or context) == context
        ):
            return Target(name=name, spec=spec, policy=catalog.policy_for(name), gitops=catalog.gitops_mode(name))
    allowed = catalog.defaults.kubernetes.allowed_namespaces
    if not allowed:
        raise TargetNotAllowed(
            f"ad-hoc targets like `{ref.display}` are off: list namespaces under "
            "`defaults.kubernetes.allowed_namespaces` in the catalog, or add the workload as a catalog target"
        )
    if namespace not in allowed:
        raise TargetNotAllowed(
            f"namespace `{namespace}` is not open to ad-hoc rollbacks (allowed: {_listed(allowed)}) — "
            "add it to `defaults.kubernetes.allowed_namespaces` in the catalog, or add a catalog target"
        )
    policy = catalog.defaults.approvals
    if not policy.approvers and not policy.approver_groups:
        raise TargetNotAllowed(
            f"nobody could approve `{ref.display}`: set `defaults.approvals.approvers` or `approver_groups`"
        )
    spec = KubernetesTarget(kind=ref.kind, name=ref.name, namespace=namespace, kube_context=context)
    return Target(
        name=TargetName(ref.display), spec=spec, policy=policy, is_ad_hoc=True, gitops=catalog.defaults.gitops
    )


def _catalog_target(name: str, catalog: Catalog) -> Target:
    target = catalog.get(name) or catalog.get(name.lower())
    if target is not None:
        return target
    suggestion = closest_target(name, catalog)
    if suggestion is not None:
        raise UnknownTarget(f"unknown target `{name}` — did you mean `{suggestion}`?")
    if not catalog.names:
        raise UnknownTarget(f"unknown target `{name}` — the catalog has no targets yet (add them under `targets:`)")
    known = catalog.names
    listed = _listed(known[:MAX_LISTED_TARGETS])
    more = f" and {len(known) - MAX_LISTED_TARGETS} more" if len(known) > MAX_LISTED_TARGETS else ""
    raise UnknownTarget(f"unknown target `{name}` — known targets: {listed}{more}")


def closest_target(word: str, catalog: Catalog) -> str | None:
    """The catalog name people most likely meant: a near spelling, or the target whose workload is called so."""
    for name in catalog.names:
        spec = catalog.targets[name]
        if word.lower() == _workload_name(spec):
            return name
    matches = closest_names(word.lower(), catalog.names)
    return matches[0] if matches else None


def check_channel(catalog: Catalog, channel: ChannelId) -> None:
    """Raises TargetNotAllowed when the catalog restricts rollbacks to other channels."""
    if catalog.is_channel_allowed(channel):
        return
    channels = ", ".join(f"<#{allowed}>" for allowed in catalog.defaults.allowed_channels)
    raise TargetNotAllowed(
        f"rollbacks are requested in {channels} — ask there, or add this channel to `defaults.allowed_channels`"
    )


def _listed(names: tuple[str, ...] | list[TargetName]) -> str:
    return ", ".join(f"`{name}`" for name in names)


def _workload_name(spec: TargetSpec) -> str:
    match spec:
        case HelmTarget():
            return spec.release
        case KubernetesTarget():
            return spec.name
        case _:
            return spec.service
