"""GitOps RBAC (ADR 0020): read Argo CD and Flux objects; patch only the named ones, only when the catalog pauses.

Restated independently of the templates: with a local Kubernetes or Helm target, get/list/watch on
applications.argoproj.io, kustomizations.kustomize.toolkit.fluxcd.io and helmreleases.helm.toolkit.fluxcd.io,
cluster-wide (rollbot finds a HelmRelease by its release name, wherever it lives); `patch`, restricted by
`resourceNames` to `rbac.gitops.pausable`, in each object's namespace, only when `gitops: suspend` appears in
the catalog's defaults or a target.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ship.conftest import APPROVERS, CHART, GITOPS_READS, Helm, find, granted, socket_values

pytestmark = pytest.mark.needs_helm

SHOP = {"shop": {"backend": "kubernetes", "kind": "Deployment", "name": "shop"}}
PAY = {"pay": {"backend": "helm", "release": "pay", "namespace": "pay"}}
PAUSABLE = [
    {"kind": "Application", "namespace": "argocd", "name": "shop"},
    {"kind": "HelmRelease", "namespace": "flux-system", "name": "pay"},
    {"kind": "Kustomization", "namespace": "flux-system", "name": "cart"},
]


def gitops_grants(objects: list[dict[str, Any]]) -> set[tuple[str, str, str, str, str]]:
    groups = {group for group, _ in GITOPS_READS}
    return {grant for grant in granted(objects) if grant[1] in groups}


def reads() -> set[tuple[str, str, str, str, str]]:
    return {("*", group, resource, verb, "*") for group, resource in GITOPS_READS for verb in ("get", "list", "watch")}


def test_every_catalog_with_a_kubernetes_target_may_read_who_reconciles_it_and_patch_nothing(
    render: Callable[..., list[dict[str, Any]]],
) -> None:
    objects = render(socket_values(catalog={"defaults": APPROVERS, "targets": {**SHOP, **PAY}}))
    assert gitops_grants(objects) == reads()
    binding = find(objects, "ClusterRoleBinding", "rb-rollbot-gitops")
    assert binding["roleRef"]["name"] == "rb-rollbot-gitops"


def test_pausable_objects_are_ignored_unless_the_catalog_asks_for_pauses(
    render: Callable[..., list[dict[str, Any]]],
) -> None:
    values = socket_values(
        catalog={"defaults": {**APPROVERS, "gitops": "warn"}, "targets": SHOP}, rbac={"gitops": {"pausable": PAUSABLE}}
    )
    assert gitops_grants(render(values)) == reads()


@pytest.mark.parametrize("where", ["defaults", "target"])
def test_gitops_suspend_grants_patch_on_exactly_the_named_objects_in_their_namespaces(
    where: str, render: Callable[..., list[dict[str, Any]]]
) -> None:
    defaults = {**APPROVERS, "gitops": "suspend"} if where == "defaults" else APPROVERS
    targets = {"shop": {**SHOP["shop"], "gitops": "suspend"}} if where == "target" else SHOP
    values = socket_values(catalog={"defaults": defaults, "targets": targets}, rbac={"gitops": {"pausable": PAUSABLE}})
    objects = render(values)
    assert gitops_grants(objects) == reads() | {
        ("argocd", "argoproj.io", "applications", "patch", "shop"),
        ("flux-system", "helm.toolkit.fluxcd.io", "helmreleases", "patch", "pay"),
        ("flux-system", "kustomize.toolkit.fluxcd.io", "kustomizations", "patch", "cart"),
    }
    role = find(objects, "Role", "rb-rollbot-gitops-pause", "flux-system")
    binding = find(objects, "RoleBinding", "rb-rollbot-gitops-pause", "flux-system")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]


def test_reads_can_be_turned_off(render: Callable[..., list[dict[str, Any]]]) -> None:
    values = socket_values(catalog={"defaults": APPROVERS, "targets": SHOP}, rbac={"gitops": {"read": False}})
    assert not gitops_grants(render(values))


def test_pausing_without_naming_what_may_be_paused_fails_the_install_with_the_fix(helm: Helm, tmp_path: Path) -> None:
    values = socket_values(catalog={"defaults": {**APPROVERS, "gitops": "suspend"}, "targets": SHOP})
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values), encoding="utf-8")
    result = helm("template", "rb", str(CHART), "-f", str(path), check=False)
    assert result.returncode != 0
    assert "rbac.gitops.pausable lists none" in result.stderr
