"""Failure detection adds exactly the list/watch rules its watchers use, where they use them, and nothing when
detection is off.

`detection_needs()` restates, independently of the templates, what the watchers do with the Kubernetes API
(bot/backends/kubernetes_watch.py, helm_watch.py):

- Kubernetes: one list+watch per kind (Deployments, DaemonSets, StatefulSets), cluster-wide for a scope with
  `namespaces: ["*"]`, else per namespace; the newest ReplicaSets of a Deployment in trouble are listed; pods
  are listed (never watched) for workloads mid-rollout or short of replicas;
- Helm: a list+watch of the release Secrets (`owner=helm`), cluster-wide or per namespace, for Helm scopes and
  Helm targets with detection on;
- a catalog target's own namespace already has get/list/watch on workloads and pods (the rollback's reads);
- nothing for ECS, for scopes or targets in other clusters, with no channel anywhere, with `enabled: false`,
  or with the chart's `detection.enabled: false` (which also sets ROLLBOT_DETECT=off).

The rendered rules are expanded into grants and compared with the rollback's needs (`test_chart_rbac.needed`)
plus these: nothing missing, nothing extra.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import yaml

from bot.core.catalog import parse_catalog
from bot.core.catalog_detect import HelmWatch, KubernetesWatch
from bot.core.watch_plan import watch_plan
from tests.ship.conftest import (
    APPROVERS,
    CHART,
    Grant,
    Helm,
    cluster_wide_but_gitops_reader,
    env_of,
    find,
    granted,
    of_kind,
    socket_values,
)
from tests.ship.test_chart_rbac import needed

pytestmark = pytest.mark.needs_helm

CARDS = {"channel": "C0INCIDENT"}
WORKLOAD_WATCH = [
    ("apps", r, v) for r in ("deployments", "daemonsets", "statefulsets", "replicasets") for v in ("list", "watch")
]
WORKLOAD_WATCH += [("", "pods", "list")]
HELM_WATCH = [("", "secrets", "list"), ("", "secrets", "watch")]


def is_active(defaults: dict[str, Any], own: dict[str, Any] | None) -> bool:
    merged = defaults | (own or {})
    return bool(merged.get("enabled", True) and merged.get("channel"))


def detection_needs(values: dict[str, Any]) -> set[Grant]:
    if not values.get("detection", {}).get("enabled", True):
        return set()
    catalog = values["catalog"]
    local = set(values.get("rbac", {}).get("localKubeContexts", []))
    defaults = catalog.get("defaults", {}).get("detect", {})
    workloads: set[str] = set()
    helm: set[str] = set()
    for target in catalog.get("targets", {}).values():
        context = target.get("kube_context")
        if (
            target["backend"] == "helm"
            and (not context or context in local)
            and is_active(defaults, target.get("detect"))
        ):
            helm.add(target.get("namespace", "default"))
    for scope in catalog.get("watch", []):
        context = scope.get("kube_context")
        if (
            scope["backend"] == "ecs"
            or (context and context not in local)
            or not is_active(defaults, scope.get("detect"))
        ):
            continue
        (helm if scope["backend"] == "helm" else workloads).update(scope.get("namespaces", ["*"]))
    # A cluster-wide watch covers every namespace: the namespaced grants would only repeat it.
    workloads = {"*"} if "*" in workloads else workloads
    helm = {"*"} if "*" in helm else helm
    grants = {(ns, group, resource, verb, "*") for ns in workloads for group, resource, verb in WORKLOAD_WATCH}
    grants |= {(ns, group, resource, verb, "*") for ns in helm for group, resource, verb in HELM_WATCH}
    return grants


def values_for(catalog: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    defaults = APPROVERS | catalog.get("defaults", {})
    return socket_values(catalog={**catalog, "defaults": defaults}, **overrides)


SHOP = {
    "web": {"backend": "kubernetes", "kind": "Deployment", "name": "web", "namespace": "shop"},
    "workshop": {"backend": "helm", "release": "workshop", "namespace": "workshop"},
}
EVERYWHERE = [{"backend": "kubernetes", "namespaces": ["*"]}, {"backend": "helm", "namespaces": ["*"]}]

CATALOGS: dict[str, dict[str, Any]] = {
    "no-channel-anywhere": {"targets": SHOP, "watch": EVERYWHERE},
    "catalog-targets-only": {"defaults": {"detect": CARDS}, "targets": SHOP},
    "scopes-in-named-namespaces": {
        "defaults": {"detect": CARDS},
        "targets": SHOP,
        "watch": [
            {"backend": "kubernetes", "namespaces": ["team-a", "shop"]},
            {"backend": "helm", "namespaces": ["team-b"]},
            {"backend": "ecs", "region": "us-east-1", "clusters": ["default"]},
        ],
    },
    "scopes-over-every-namespace": {"defaults": {"detect": CARDS}, "targets": SHOP, "watch": EVERYWHERE},
    "channel-only-on-a-scope": {
        "targets": SHOP,
        "watch": [{"backend": "kubernetes", "namespaces": ["team-a"], "detect": {"channel": "C0TEAMA"}}],
    },
    "detection-disabled-per-target-and-scope": {
        "defaults": {"detect": CARDS},
        "targets": {**SHOP, "workshop": {**SHOP["workshop"], "detect": {"enabled": False}}},
        "watch": [{"backend": "helm", "namespaces": ["*"], "detect": {"enabled": False}}],
    },
    "other-cluster-scopes": {
        "defaults": {"detect": CARDS},
        "targets": {"eu": {"backend": "helm", "release": "eu", "namespace": "eu", "kube_context": "prod-eu"}},
        "watch": [{"backend": "kubernetes", "kube_context": "prod-eu", "namespaces": ["*"]}],
    },
}


@pytest.mark.parametrize("catalog", list(CATALOGS.values()), ids=list(CATALOGS))
def test_rendered_roles_grant_exactly_what_detection_and_rollbacks_need(
    catalog: dict[str, Any], render: Callable[..., list[dict[str, Any]]]
) -> None:
    values = values_for(catalog)
    objects = render(values)
    assert granted(objects) == needed(values) | detection_needs(values)
    assert_every_role_is_bound(objects)


def test_a_scope_over_every_namespace_gets_its_own_cluster_role_with_exactly_these_rules(
    render: Callable[..., list[dict[str, Any]]],
) -> None:
    objects = render(values_for(CATALOGS["scopes-over-every-namespace"]))
    cluster_role = find(objects, "ClusterRole", "rb-rollbot-detect")
    assert cluster_role["rules"] == [
        {
            "apiGroups": ["apps"],
            "resources": ["daemonsets", "deployments", "replicasets", "statefulsets"],
            "verbs": ["list", "watch"],
        },
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["list", "watch"]},
    ]
    binding = find(objects, "ClusterRoleBinding", "rb-rollbot-detect")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "rb-rollbot-detect",
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "rb-rollbot", "namespace": "rollbot"}]
    # The namespaced Roles keep only what rollbacks need: no Role repeats the cluster-wide watch.
    assert {r["metadata"]["namespace"] for r in of_kind(objects, "Role")} == {"shop", "workshop"}


def test_named_namespaces_get_roles_and_no_cluster_role(render: Callable[..., list[dict[str, Any]]]) -> None:
    objects = render(values_for(CATALOGS["scopes-in-named-namespaces"]))
    assert not cluster_wide_but_gitops_reader(objects)
    team_a = find(objects, "Role", namespace="team-a")
    assert [(rule["resources"], rule["verbs"]) for rule in team_a["rules"]] == [
        (["daemonsets", "deployments", "replicasets", "statefulsets"], ["list", "watch"]),
        (["pods"], ["list"]),
    ]
    team_b = find(objects, "Role", namespace="team-b")
    assert [(rule["resources"], rule["verbs"]) for rule in team_b["rules"]] == [(["secrets"], ["list", "watch"])]


def test_detection_off_in_the_chart_grants_nothing_and_tells_the_bot(
    render: Callable[..., list[dict[str, Any]]],
) -> None:
    catalog = CATALOGS["scopes-over-every-namespace"]
    off = values_for(catalog, detection={"enabled": False})
    objects = render(off)
    assert granted(objects) == needed(off)
    assert not cluster_wide_but_gitops_reader(objects)
    (container,) = find(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert env_of(container)["ROLLBOT_DETECT"] == "off"
    (on,) = find(render(values_for(catalog)), "Deployment")["spec"]["template"]["spec"]["containers"]
    assert "ROLLBOT_DETECT" not in env_of(on)


def test_an_ecs_catalog_watching_every_namespace_mounts_a_token(render: Callable[..., list[dict[str, Any]]]) -> None:
    catalog = {
        "defaults": {"detect": CARDS},
        "targets": {"pay": {"backend": "ecs", "service": "pay"}},
        "watch": [{"backend": "kubernetes", "namespaces": ["*"]}],
    }
    pod = find(render(values_for(catalog)), "Deployment")["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is True


def test_the_mounted_catalog_carries_the_watch_scopes_the_bot_plans_from(
    render: Callable[..., list[dict[str, Any]]],
) -> None:
    objects = render(values_for(CATALOGS["scopes-in-named-namespaces"]))
    (text,) = find(objects, "ConfigMap")["data"].values()
    plan = watch_plan(parse_catalog(yaml.safe_load(text)))
    assert KubernetesWatch(namespaces=("shop", "team-a")) in plan
    assert HelmWatch(namespaces=("team-b", "workshop")) in plan


@pytest.mark.parametrize(
    ("scope", "message"),
    [
        ({"backend": "kubernetes", "namespaces": ["*", "shop"]}, "at '/catalog/watch/0/namespaces'"),
        ({"backend": "helm", "namespaces": ["Shop"]}, "at '/catalog/watch/0/namespaces'"),
        ({"backend": "kubernetes", "clusters": ["default"]}, "additional properties 'clusters' not allowed"),
    ],
    ids=["star-with-others", "not-a-namespace", "ecs-key-on-a-kubernetes-scope"],
)
def test_bad_watch_scopes_are_refused_with_their_path(helm: Helm, scope: dict[str, Any], message: str) -> None:
    values = helm.values_file(values_for({"targets": SHOP, "watch": [scope]}))
    result = helm("template", "rb", str(CHART), "-f", str(values), check=False)
    assert result.returncode != 0
    assert message in result.stderr


def assert_every_role_is_bound(objects: list[dict[str, Any]]) -> None:
    roles = {(r["metadata"]["namespace"], r["metadata"]["name"]) for r in of_kind(objects, "Role")}
    bindings = {(b["metadata"]["namespace"], b["roleRef"]["name"]) for b in of_kind(objects, "RoleBinding")}
    assert bindings == roles
    cluster_roles = {r["metadata"]["name"] for r in of_kind(objects, "ClusterRole")}
    assert {b["roleRef"]["name"] for b in of_kind(objects, "ClusterRoleBinding")} == cluster_roles


def test_the_mounted_catalog_carries_the_batch_groups(render: Callable[..., list[dict[str, Any]]]) -> None:
    catalog = {
        "targets": {
            "bootcamp": {"backend": "kubernetes", "kind": "Deployment", "name": "bootcamp", "namespace": "shop"},
            "workshop": {"backend": "helm", "release": "workshop", "namespace": "shop"},
        },
        "groups": {"storefront": ["bootcamp", "workshop"]},
    }
    objects = render(values_for(catalog))
    (text,) = find(objects, "ConfigMap")["data"].values()
    assert dict(parse_catalog(yaml.safe_load(text)).groups) == {"storefront": ("bootcamp", "workshop")}
