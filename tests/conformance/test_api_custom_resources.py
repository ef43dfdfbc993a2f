"""The real kubectl against custom resources: CRDs applied with kubectl make their types served."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sandbox.kubesim.cluster import KubeSim
from tests.conformance.conftest import CliRunner

pytestmark = pytest.mark.needs_kubectl

CRDS = Path(__file__).resolve().parents[2] / "sandbox" / "gitops" / "crds"
APPLICATION = """
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: shop, namespace: argocd, labels: {team: web}}
spec:
  project: default
  source: {repoURL: https://git.example/shop.git, path: deploy}
  destination: {server: https://kubernetes.default.svc, namespace: shop}
  syncPolicy: {automated: {prune: true, selfHeal: true}}
status: {sync: {status: Synced, revision: abc123}, health: {status: Healthy}}
"""
KUSTOMIZATION = """
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {name: cart, namespace: flux-system}
spec: {interval: 5m, prune: true, path: ./cart, sourceRef: {kind: GitRepository, name: cart}}
"""
CLUSTER_CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: clusterwidgets.example.com}
spec:
  group: example.com
  names: {kind: ClusterWidget, plural: clusterwidgets}
  scope: Cluster
  versions: [{name: v1, served: true, storage: true, schema: {openAPIV3Schema: {type: object}}}]
"""


@pytest.fixture
def with_crds(kubectl: CliRunner) -> CliRunner:
    kubectl("apply", "-f", str(CRDS))
    kubectl("create", "namespace", "argocd")
    kubectl("create", "namespace", "flux-system")
    return kubectl


def test_crds_applied_with_kubectl_appear_in_discovery(with_crds: CliRunner) -> None:
    resources = with_crds("api-resources", "--api-group=argoproj.io", "-o", "wide").stdout
    assert "applications" in resources
    assert "app,apps" in resources
    assert "Application" in resources
    established = with_crds(
        "get",
        "crd",
        "kustomizations.kustomize.toolkit.fluxcd.io",
        "-o",
        "jsonpath={.status.conditions[?(@.type=='Established')].status}",
    )
    assert established.stdout == "True"


def test_get_prints_the_crd_printer_columns(with_crds: CliRunner) -> None:
    with_crds("apply", "-f", "-", stdin=APPLICATION)
    table = with_crds("get", "applications.argoproj.io", "-n", "argocd").stdout.splitlines()
    assert table[0].split() == ["NAME", "SYNC", "STATUS", "HEALTH", "STATUS"]
    assert table[1].split() == ["shop", "Synced", "Healthy"]
    wide = with_crds("get", "app", "-n", "argocd", "-o", "wide").stdout.splitlines()
    assert wide[0].split()[-2:] == ["REVISION", "PROJECT"]
    assert wide[1].split() == ["shop", "Synced", "Healthy", "abc123", "default"]


def test_flux_columns_read_the_ready_condition_written_through_status(with_crds: CliRunner, tmp_path: Path) -> None:
    with_crds("apply", "-f", "-", stdin=KUSTOMIZATION)
    ready = {
        "status": {"conditions": [{"type": "Ready", "status": "True", "message": "Applied revision: main@sha1:9"}]}
    }
    with_crds(
        "patch", "kustomizations.kustomize.toolkit.fluxcd.io", "cart", "-n", "flux-system",
        "--subresource=status", "--type=merge", "-p", json.dumps(ready),
    )  # fmt: skip
    rows = with_crds("get", "kustomizations.kustomize.toolkit.fluxcd.io", "-n", "flux-system", "-o", "wide").stdout
    header, row = rows.splitlines()
    assert header.split() == ["NAME", "AGE", "READY", "STATUS"]
    assert row.split()[0] == "cart"
    assert row.split()[2:] == ["True", "Applied", "revision:", "main@sha1:9"]
    # A spec change through the main resource leaves the status alone (status subresource semantics).
    with_crds(
        "patch", "ks", "cart", "-n", "flux-system", "--type=merge", "-p", '{"spec":{"suspend":true},"status":null}'
    )
    obj = with_crds("get", "ks", "cart", "-n", "flux-system", "-o", "json").json()
    assert obj["spec"]["suspend"] is True
    assert obj["status"]["conditions"][0]["status"] == "True"
    assert obj["metadata"]["generation"] == 2


def test_merge_and_json_patch_work_and_strategic_merge_is_refused(with_crds: CliRunner) -> None:
    with_crds("apply", "-f", "-", stdin=APPLICATION)
    with_crds(
        "patch", "applications.argoproj.io", "shop", "-n", "argocd", "--type", "merge",
        "-p", '{"spec":{"syncPolicy":{"automated":{"enabled":false}}}}',
    )  # fmt: skip
    with_crds(
        "patch", "app", "shop", "-n", "argocd", "--type", "json",
        "-p", '[{"op":"replace","path":"/spec/project","value":"payments"}]',
    )  # fmt: skip
    spec = with_crds("get", "app", "shop", "-n", "argocd", "-o", "json").json()["spec"]
    assert spec["syncPolicy"]["automated"] == {"prune": True, "selfHeal": True, "enabled": False}
    assert spec["project"] == "payments"
    refused = with_crds("patch", "app", "shop", "-n", "argocd", "-p", '{"spec":{"project":"x"}}', check=False)
    assert refused.returncode != 0
    assert "application/strategic-merge-patch+json is not supported" in refused.stderr


def test_label_selectors_and_watch_see_custom_resources(with_crds: CliRunner) -> None:
    with_crds("apply", "-f", "-", stdin=APPLICATION)
    assert with_crds("get", "app", "-A", "-l", "team=web", "-o", "name").stdout.split() == [
        "application.argoproj.io/shop"
    ]
    assert with_crds("get", "app", "-A", "-l", "team=ops", "-o", "name").stdout == ""
    watcher = with_crds.popen("get", "app", "-n", "argocd", "-w", "-o", "name", "--request-timeout=3s")
    try:
        assert watcher.stdout is not None
        assert watcher.stdout.readline().strip() == "application.argoproj.io/shop"
        with_crds("label", "app", "shop", "-n", "argocd", "tier=gold")
        assert watcher.stdout.readline().strip() == "application.argoproj.io/shop"
    finally:
        watcher.kill()
        watcher.communicate()


def test_delete_a_custom_resource_and_a_crd_with_its_objects(with_crds: CliRunner, kubesim: KubeSim) -> None:
    with_crds("apply", "-f", "-", stdin=APPLICATION)
    with_crds("apply", "-f", "-", stdin=KUSTOMIZATION)
    deleted = with_crds("delete", "app", "shop", "-n", "argocd")
    assert 'application.argoproj.io "shop" deleted' in deleted.stdout
    assert with_crds("get", "app", "-A", "-o", "name").stdout == ""
    with_crds("delete", "crd", "kustomizations.kustomize.toolkit.fluxcd.io")
    gone = with_crds("get", "kustomizations.kustomize.toolkit.fluxcd.io", "-A", check=False)
    assert gone.returncode != 0
    # Re-creating the CRD does not bring the old objects back.
    with_crds("apply", "-f", str(CRDS / "kustomizations.kustomize.toolkit.fluxcd.io.yaml"))
    assert with_crds("get", "ks", "-A", "-o", "name").stdout == ""


def test_cluster_scoped_crds_are_served_without_a_namespace(with_crds: CliRunner) -> None:
    with_crds("apply", "-f", "-", stdin=CLUSTER_CRD)
    with_crds("apply", "-f", "-", stdin="apiVersion: example.com/v1\nkind: ClusterWidget\nmetadata: {name: big}\n")
    listed = with_crds("get", "clusterwidgets", "-o", "json").json()
    assert [item["metadata"]["name"] for item in listed["items"]] == ["big"]
    assert "namespace" not in listed["items"][0]["metadata"]
    assert with_crds("get", "clusterwidgets").stdout.split()[:2] == ["NAME", "AGE"]


def test_an_invalid_crd_is_refused_with_the_reason(with_crds: CliRunner) -> None:
    bad = CLUSTER_CRD.replace("name: clusterwidgets.example.com", "name: widgets.example.com")
    refused = with_crds("apply", "-f", "-", stdin=bad, check=False)
    assert refused.returncode != 0
    assert 'must be spec.names.plural+"."+spec.group' in refused.stderr
