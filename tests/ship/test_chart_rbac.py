"""The RBAC the chart renders is exactly what the catalog's targets need, rule by rule.

`needed()` below states, independently of the templates, what each backend does with the Kubernetes API
(bot/backends/kubernetes_api.py, its watches in kubernetes_rollout.py, bot/backends/helm_cli.py and the helm
binary it runs):

- every Kubernetes or Helm target: get/list/watch the workloads, their history (ReplicaSets,
  ControllerRevisions), pods and events of its namespace;
- a kubernetes target: `patch` on its own kind, restricted to its name;
- an ad-hoc namespace (catalog.defaults.kubernetes.allowed_namespaces): `patch` on any Deployment, DaemonSet or
  StatefulSet there;
- a Helm target: the release Secrets (get, list, create, update, delete) and get/list/watch/create/patch/delete
  on the kinds of the release's manifests, in the release namespace;
- a target in another cluster (`kube_context`) or an ECS target: nothing here.

Each rendered rule is expanded into (namespace, apiGroup, resource, verb, resourceName) grants and compared
with that set: nothing missing, nothing extra.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from tests.ship.conftest import (
    APPROVERS,
    CHART,
    GITOPS_READS,
    Grant,
    Helm,
    cluster_wide_but_gitops_reader,
    find,
    granted,
    of_kind,
    socket_values,
)

pytestmark = pytest.mark.needs_helm


READS = [("apps", r) for r in ("deployments", "replicasets", "daemonsets", "statefulsets", "controllerrevisions")]
READS += [("", "pods"), ("", "events")]
WORKLOAD_RESOURCE = {"Deployment": "deployments", "DaemonSet": "daemonsets", "StatefulSet": "statefulsets"}
READ_VERBS = ("get", "list", "watch")
HELM_STORAGE_VERBS = ("get", "list", "create", "update", "delete")
HELM_APPLY_VERBS = ("get", "list", "watch", "create", "patch", "delete")
DEFAULT_HELM_RESOURCES = [
    ("apps", "deployments"),
    ("", "services"),
    ("", "serviceaccounts"),
    ("", "configmaps"),
    ("networking.k8s.io", "ingresses"),
    ("autoscaling", "horizontalpodautoscalers"),
]


def needed(values: dict[str, Any]) -> set[Grant]:
    catalog = values["catalog"]
    rbac = values.get("rbac", {})
    local = set(rbac.get("localKubeContexts", []))
    by_target = rbac.get("helmReleaseResourcesByTarget", {})
    grants: set[Grant] = set()

    def reads(namespace: str) -> None:
        grants.update(
            (namespace, group, resource, verb, "*") for group, resource in READS for verb in ("get", "list", "watch")
        )

    for name, target in catalog.get("targets", {}).items():
        if target["backend"] == "ecs" or (target.get("kube_context") and target["kube_context"] not in local):
            continue
        namespace = target.get("namespace", "default")
        reads(namespace)
        if target["backend"] == "kubernetes":
            grants.add((namespace, "apps", WORKLOAD_RESOURCE[target["kind"]], "patch", target["name"]))
        else:
            grants.update((namespace, "", "secrets", verb, "*") for verb in HELM_STORAGE_VERBS)
            if name in by_target:
                kinds = [(rule["apiGroup"], r) for rule in by_target[name] for r in rule["resources"]]
            else:
                kinds = DEFAULT_HELM_RESOURCES
            grants.update((namespace, group, res, verb, "*") for group, res in kinds for verb in HELM_APPLY_VERBS)
    k8s_defaults = catalog.get("defaults", {}).get("kubernetes", {})
    if not k8s_defaults.get("kube_context") or k8s_defaults["kube_context"] in local:
        for namespace in k8s_defaults.get("allowed_namespaces", []):
            reads(namespace)
            grants.update((namespace, "apps", resource, "patch", "*") for resource in WORKLOAD_RESOURCE.values())
    if grants and rbac.get("gitops", {}).get("read", True):
        # Who reconciles a target (ADR 0020): Argo CD and Flux objects, read cluster-wide.
        grants.update(("*", group, resource, verb, "*") for group, resource in GITOPS_READS for verb in READ_VERBS)
    # A named patch is implied by "patch any" in the same namespace; the chart renders only the broader one.
    return {g for g in grants if not (g[3] == "patch" and g[4] != "*" and (g[0], g[1], g[2], "patch", "*") in grants)}


CATALOGS: dict[str, dict[str, Any]] = {
    "one-deployment": {"targets": {"web": {"backend": "kubernetes", "kind": "Deployment", "name": "web"}}},
    "every-kind-in-two-namespaces": {
        "targets": {
            "web": {"backend": "kubernetes", "kind": "Deployment", "name": "web", "namespace": "shop"},
            "api": {"backend": "kubernetes", "kind": "Deployment", "name": "api", "namespace": "shop"},
            "fluentd": {"backend": "kubernetes", "kind": "DaemonSet", "name": "fluentd", "namespace": "kube-system"},
            "db": {"backend": "kubernetes", "kind": "StatefulSet", "name": "db", "namespace": "shop"},
        }
    },
    "helm-next-to-kubernetes": {
        "targets": {
            "workshop": {"backend": "helm", "release": "workshop", "namespace": "shop"},
            "web": {"backend": "kubernetes", "kind": "Deployment", "name": "web", "namespace": "web"},
        }
    },
    "ad-hoc-namespace-overlapping-a-target": {
        "defaults": {"kubernetes": {"allowed_namespaces": ["sandbox", "shop"]}},
        "targets": {"web": {"backend": "kubernetes", "kind": "Deployment", "name": "web", "namespace": "shop"}},
    },
    "other-cluster-and-ecs-only": {
        "targets": {
            "pay": {"backend": "ecs", "service": "pay"},
            "eu": {"backend": "kubernetes", "kind": "Deployment", "name": "eu", "kube_context": "prod-eu"},
        }
    },
}


@pytest.mark.parametrize("catalog", list(CATALOGS.values()), ids=list(CATALOGS))
def test_rendered_roles_grant_exactly_what_the_targets_need(
    catalog: dict[str, Any], render: Callable[..., list[dict[str, Any]]]
) -> None:
    values = socket_values(catalog={"defaults": APPROVERS | catalog.get("defaults", {}), "targets": catalog["targets"]})
    objects = render(values)
    assert granted(objects) == needed(values)
    assert_bindings_match_roles(objects)


def test_no_patch_on_kinds_the_catalog_never_rolls_back(render: Callable[..., list[dict[str, Any]]]) -> None:
    objects = render(socket_values(catalog={"defaults": APPROVERS, **CATALOGS["one-deployment"]}))
    patches = {(g[2], g[4]) for g in granted(objects) if g[3] == "patch"}
    assert patches == {("deployments", "web")}


def test_no_secrets_without_a_helm_target(render: Callable[..., list[dict[str, Any]]]) -> None:
    objects = render(socket_values(catalog={"defaults": APPROVERS, **CATALOGS["every-kind-in-two-namespaces"]}))
    assert not [g for g in granted(objects) if g[2] == "secrets"]


def test_secrets_only_in_the_helm_release_namespace(render: Callable[..., list[dict[str, Any]]]) -> None:
    objects = render(socket_values(catalog={"defaults": APPROVERS, **CATALOGS["helm-next-to-kubernetes"]}))
    assert {g[0] for g in granted(objects) if g[2] == "secrets"} == {"shop"}
    assert {g[3] for g in granted(objects) if g[2] == "secrets"} == set(HELM_STORAGE_VERBS)


def test_helm_release_kinds_can_be_narrowed_per_target(render: Callable[..., list[dict[str, Any]]]) -> None:
    values = socket_values(
        catalog={"defaults": APPROVERS, **CATALOGS["helm-next-to-kubernetes"]},
        rbac={"helmReleaseResourcesByTarget": {"workshop": [{"apiGroup": "apps", "resources": ["statefulsets"]}]}},
    )
    grants = granted(render(values))
    assert grants == needed(values)
    shop_writes = {(g[1], g[2]) for g in grants if g[0] == "shop" and g[3] == "patch"}
    assert shop_writes == {("apps", "statefulsets")}


def test_local_kube_contexts_are_included(render: Callable[..., list[dict[str, Any]]]) -> None:
    values = socket_values(
        catalog={"defaults": APPROVERS, **CATALOGS["other-cluster-and-ecs-only"]},
        rbac={"localKubeContexts": ["prod-eu"]},
    )
    grants = granted(render(values))
    assert grants == needed(values)
    assert ("default", "apps", "deployments", "patch", "eu") in grants


def test_ecs_and_other_cluster_targets_get_no_role_and_no_token(render: Callable[..., list[dict[str, Any]]]) -> None:
    objects = render(socket_values(catalog={"defaults": APPROVERS, **CATALOGS["other-cluster-and-ecs-only"]}))
    assert not of_kind(objects, "Role")
    assert not of_kind(objects, "RoleBinding")
    deployment = find(objects, "Deployment")
    assert deployment["spec"]["template"]["spec"]["automountServiceAccountToken"] is False


def test_cluster_wide_only_when_asked_and_then_the_same_rules(render: Callable[..., list[dict[str, Any]]]) -> None:
    catalog = {"defaults": APPROVERS, **CATALOGS["every-kind-in-two-namespaces"]}
    namespaced = granted(render(socket_values(catalog=catalog)))
    objects = render(socket_values(catalog=catalog, rbac={"clusterWide": True}))
    assert not of_kind(objects, "Role")
    assert not of_kind(objects, "RoleBinding")
    (cluster_role,) = cluster_wide_but_gitops_reader(objects)
    (binding,) = cluster_wide_but_gitops_reader(objects, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == cluster_role["metadata"]["name"]
    # The union of the namespaced rules, with the namespace dropped.
    assert granted(objects) == {("*", *g[1:]) for g in namespaced}


def test_no_wildcards_and_every_rule_says_why(helm: Helm) -> None:
    text = helm.template(
        socket_values(
            catalog={
                "defaults": APPROVERS | CATALOGS["ad-hoc-namespace-overlapping-a-target"]["defaults"],
                "targets": CATALOGS["helm-next-to-kubernetes"]["targets"],
            }
        ),
        "-s",
        "templates/rbac.yaml",
    )
    assert '"*"' not in text
    assert "'*'" not in text
    lines = text.splitlines()
    rule_starts = [i for i, line in enumerate(lines) if re.match(r"^\s*- apiGroups:", line)]
    assert rule_starts
    for index in rule_starts:
        assert lines[index - 1].strip().startswith("#"), f"rule without a reason: {lines[index]}"


def assert_bindings_match_roles(objects: list[dict[str, Any]]) -> None:
    roles = {(r["metadata"]["namespace"], r["metadata"]["name"]) for r in of_kind(objects, "Role")}
    bindings = of_kind(objects, "RoleBinding")
    assert {(b["metadata"]["namespace"], b["roleRef"]["name"]) for b in bindings} == roles
    for binding in bindings:
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "rb-rollbot", "namespace": "rollbot"}]


def test_notes_warn_when_a_helm_target_shares_the_bots_namespace(helm: Helm) -> None:
    values = helm.values_file(socket_values(catalog={"defaults": APPROVERS, **CATALOGS["helm-next-to-kubernetes"]}))
    shared = helm("install", "rb", str(CHART), "-n", "shop", "-f", str(values), "--dry-run=client").stdout
    assert "WARNING: a Helm target lives in shop, rollbot's own namespace" in shared
    apart = helm("install", "rb", str(CHART), "-n", "rollbot", "-f", str(values), "--dry-run=client").stdout
    assert "WARNING" not in apart
