"""Finding who reconciles a target over the real Kubernetes API (kubesim): the owners, their settings, patches.

A cluster without the Argo CD / Flux CRDs answers 404 on the resource type: the target has no reconciler and
nothing fails. With the CRDs, the tracking annotation, the `label` tracking method and the Flux labels each lead
to their object; a HelmRelease is found by release name and target namespace.
"""

from __future__ import annotations

import pytest

from bot.backends.gitops_api import KubernetesReconcilers
from bot.backends.kubernetes_api import KubernetesClients
from bot.core.catalog import (
    ApprovalPolicy,
    HelmTarget,
    KubernetesTarget,
    SlackUserId,
    Target,
    TargetName,
    WorkloadKind,
)
from bot.core.gitops import ReconcilerKind, ReconcilerRef, pause_patch, restore_patch
from sandbox.faults import FaultClient
from sandbox.gitops.client import KubeClient, resource_path
from sandbox.gitops.reconcilers import APPLICATIONS
from sandbox.gitops.world import (
    argo_managed_deployment,
    deployment_manifest,
    ensure_namespace,
    flux_helm_release,
    flux_managed_deployment,
    install_crds,
)
from sandbox.kubesim.cluster import KubeSim

POLICY = ApprovalPolicy(approvers=(SlackUserId("U0ALICE"),))


def plain_deployment(client: KubeClient, name: str) -> None:
    manifest = deployment_manifest(name, "nginx:1.27")
    manifest["metadata"]["namespace"] = "default"
    client.apply(manifest, "deployments")


def deployment_target(name: str) -> Target:
    spec = KubernetesTarget(kind=WorkloadKind.DEPLOYMENT, name=name, namespace="default")
    return Target(name=TargetName(name), spec=spec, policy=POLICY)


def helm_target(release: str, namespace: str = "default") -> Target:
    return Target(name=TargetName(release), spec=HelmTarget(release=release, namespace=namespace), policy=POLICY)


@pytest.fixture
def client(kubesim: KubeSim) -> KubeClient:
    return KubeClient(kubesim.url)


@pytest.fixture
def reconcilers(kube_clients: KubernetesClients) -> KubernetesReconcilers:
    return KubernetesReconcilers(kube_clients)


def test_without_the_crds_a_target_has_no_reconciler(
    client: KubeClient, kubesim: KubeSim, reconcilers: KubernetesReconcilers
) -> None:
    plain_deployment(client, "web")
    assert reconcilers.reconciler(deployment_target("web")) is None
    assert reconcilers.reconciler(helm_target("workshop")) is None


def test_a_workload_nobody_reconciles_costs_one_read(
    client: KubeClient, kubesim: KubeSim, reconcilers: KubernetesReconcilers
) -> None:
    install_crds(client)
    plain_deployment(client, "web")
    faults = FaultClient(kubesim.url)
    watcher = faults.add(method="*", path="/apis/*", delay=0.001)
    assert reconcilers.reconciler(deployment_target("web")) is None
    seen = next(rule for rule in faults.list() if rule["id"] == watcher["id"])["seen"]
    assert seen == 1


def test_the_tracking_annotation_leads_to_the_application_and_its_sync_policy(
    client: KubeClient, reconcilers: KubernetesReconcilers
) -> None:
    install_crds(client)
    argo_managed_deployment(client, "shop", image="nginx:1.27")
    found = reconcilers.reconciler(deployment_target("shop"))
    assert found is not None
    assert found.ref == ReconcilerRef(kind=ReconcilerKind.ARGOCD, namespace="argocd", name="shop")
    assert (found.automated, found.self_heal) == (True, True)


def test_the_label_tracking_method_leads_to_the_application_when_it_exists(
    client: KubeClient, reconcilers: KubernetesReconcilers
) -> None:
    install_crds(client)
    argo_managed_deployment(client, "shop", image="nginx:1.27")
    labelled = deployment_manifest("labelled", "nginx:1.27")
    labelled["metadata"] = {
        "name": "labelled",
        "namespace": "default",
        "labels": {"app.kubernetes.io/instance": "shop"},
    }
    client.apply(labelled, "deployments")
    charted = deployment_manifest("charted", "nginx:1.27")
    charted["metadata"] = {"name": "charted", "namespace": "default", "labels": {"app.kubernetes.io/instance": "x"}}
    client.apply(charted, "deployments")
    found = reconcilers.reconciler(deployment_target("labelled"))
    assert found is not None
    assert found.ref.name == "shop"
    # A chart's own instance label with no Application behind it is not a reconciler.
    assert reconcilers.reconciler(deployment_target("charted")) is None


def test_flux_labels_and_helm_release_names_lead_to_their_objects(
    client: KubeClient, reconcilers: KubernetesReconcilers
) -> None:
    install_crds(client)
    flux_managed_deployment(client, "cart", image="nginx:1.27", interval="5m")
    flux_helm_release(client, "pay", image="nginx:1.27", interval="5m", suspend=True)
    cart = reconcilers.reconciler(deployment_target("cart"))
    assert cart is not None
    assert (cart.ref.key, cart.automated, cart.interval) == ("flux-kustomization:flux-system/cart", True, "5m")
    pay = reconcilers.reconciler(helm_target("pay"))
    assert pay is not None
    assert (pay.ref.key, pay.automated) == ("flux-helmrelease:flux-system/pay", False)
    assert reconcilers.reconciler(helm_target("pay", namespace="other")) is None


def test_a_merge_patch_pauses_and_restores_the_application(
    client: KubeClient, reconcilers: KubernetesReconcilers
) -> None:
    install_crds(client)
    argo_managed_deployment(client, "shop", image="nginx:1.27")
    target = deployment_target("shop")
    ref = ReconcilerRef(kind=ReconcilerKind.ARGOCD, namespace="argocd", name="shop")
    recorded = reconcilers.settings(target, ref)
    reconcilers.patch(target, ref, pause_patch(ref))
    paused = reconcilers.reconciler(target)
    assert paused is not None
    assert not paused.automated
    reconcilers.patch(target, ref, restore_patch(ref, recorded))
    app = client.get(resource_path(*APPLICATIONS, "argocd", "shop"))
    assert app is not None
    assert app["spec"]["syncPolicy"] == {"automated": {"prune": True, "selfHeal": True}}


def test_a_forbidden_read_means_no_reconciler_rollbot_can_see(
    client: KubeClient, kubesim: KubeSim, reconcilers: KubernetesReconcilers
) -> None:
    install_crds(client)
    ensure_namespace(client, "default")
    flux_helm_release(client, "pay", image="nginx:1.27", interval="5m")
    FaultClient(kubesim.url).add(method="GET", path="/apis/helm.toolkit.fluxcd.io/*", status=403)
    assert reconcilers.reconciler(helm_target("pay")) is None
