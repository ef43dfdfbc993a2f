"""The simulated Argo CD and Flux controllers undo a plain rollback, unless paused, as the real ones do."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest

from sandbox.gitops.reconcilers import HELM_LABELS, KUSTOMIZE_LABELS
from sandbox.gitops.world import (
    GitOps,
    argo_managed_deployment,
    deployment_manifest,
    flux_helm_release,
    flux_managed_deployment,
    push_commit,
)
from sandbox.kubesim.cluster import KubeSim
from tests.conformance.conftest import HELM, CliRunner, needs_controllers

pytestmark = [pytest.mark.needs_kubectl, needs_controllers]

DEPLOYMENTS = ("apps", "v1", "deployments")
GOOD, BAD = "nginx:1.27", "nginx:1.28"
# How long a rollback must survive to count as "stays": longer than the self-heal delay and the interval.
SETTLE_SECONDS = 3.0


@pytest.fixture
def gitops(kubesim: KubeSim, cli_env: dict[str, str]) -> Iterator[GitOps]:
    with GitOps(
        kubesim.url, kubeconfig=cli_env["KUBECONFIG"], helm=str(HELM), self_heal_delay=timedelta(seconds=1)
    ) as running:
        yield running


def image_of(kubesim: KubeSim, name: str, namespace: str = "default") -> str:
    deployment = kubesim.store.try_get(DEPLOYMENTS, namespace, name) or {}
    containers = ((deployment.get("spec") or {}).get("template") or {}).get("spec", {}).get("containers") or [{}]
    return str(containers[0].get("image", ""))


def roll_back(kubectl: CliRunner, name: str, image: str) -> None:
    """A plain rollback by patching the image, as an on-call engineer (or rollbot) would."""
    kubectl("set", "image", f"deployment/{name}", f"app={image}")


def stays(kubesim: KubeSim, name: str, image: str) -> bool:
    deadline = time.monotonic() + SETTLE_SECONDS
    while time.monotonic() < deadline:
        if image_of(kubesim, name) != image:
            return False
        time.sleep(0.2)
    return True


def test_argo_self_heal_reverts_a_rollback_within_seconds(
    gitops: GitOps, kubesim: KubeSim, kubectl: CliRunner, wait_for: Callable[..., Any]
) -> None:
    argo_managed_deployment(gitops.client, "shop", image=BAD)
    tracking = kubesim.store.get(DEPLOYMENTS, "default", "shop")["metadata"]["annotations"]
    assert tracking["argocd.argoproj.io/tracking-id"] == "shop:apps/Deployment:default/shop"
    roll_back(kubectl, "shop", GOOD)
    wait_for(lambda: image_of(kubesim, "shop") == BAD, timeout=8, message="Argo CD to put the Git image back")
    wait_for(
        lambda: kubectl("get", "app", "shop", "-n", "argocd").stdout.split()[-2:] == ["Synced", "Healthy"],
        message="the Application to report Synced",
    )


@pytest.mark.parametrize(
    ("automated", "enabled"), [(False, None), (True, False)], ids=["automated-off", "automated-enabled-false"]
)
def test_argo_without_automated_sync_leaves_a_rollback_alone(
    gitops: GitOps, kubesim: KubeSim, kubectl: CliRunner, automated: bool, enabled: bool | None
) -> None:
    argo_managed_deployment(gitops.client, "shop", image=BAD, automated=automated, enabled=enabled)
    roll_back(kubectl, "shop", GOOD)
    assert stays(kubesim, "shop", GOOD)
    assert kubectl("get", "app", "shop", "-n", "argocd").stdout.split()[-2:] == ["OutOfSync", "Healthy"]


def test_argo_automated_without_self_heal_reverts_only_at_a_new_commit(
    gitops: GitOps, kubesim: KubeSim, kubectl: CliRunner, wait_for: Callable[..., Any]
) -> None:
    argo_managed_deployment(gitops.client, "shop", image=BAD, self_heal=False)
    roll_back(kubectl, "shop", GOOD)
    assert stays(kubesim, "shop", GOOD)
    push_commit(gitops.client, "argocd", "shop", "rev-2", [deployment_manifest("shop", "nginx:1.29")])
    wait_for(lambda: image_of(kubesim, "shop") == "nginx:1.29", message="the new commit to be synced")


@pytest.mark.parametrize("suspend", [False, True], ids=["reconciling", "suspended"])
def test_flux_kustomization_reapplies_at_its_interval_unless_suspended(
    gitops: GitOps, kubesim: KubeSim, kubectl: CliRunner, wait_for: Callable[..., Any], suspend: bool
) -> None:
    flux_managed_deployment(gitops.client, "cart", image=BAD, interval="1s", suspend=suspend)
    labels = kubesim.store.get(DEPLOYMENTS, "default", "cart")["metadata"]["labels"]
    assert {k: labels[k] for k in KUSTOMIZE_LABELS} == dict(zip(KUSTOMIZE_LABELS, ("cart", "flux-system"), strict=True))
    roll_back(kubectl, "cart", GOOD)
    if suspend:
        assert stays(kubesim, "cart", GOOD)
    else:
        wait_for(lambda: image_of(kubesim, "cart") == BAD, timeout=5, message="Flux to re-apply the Git image")


@pytest.mark.parametrize("suspend", [False, True], ids=["reconciling", "suspended"])
def test_flux_helm_release_is_upgraded_again_after_a_helm_rollback_unless_suspended(
    gitops: GitOps,
    kubesim: KubeSim,
    kubectl: CliRunner,
    helm: CliRunner,
    wait_for: Callable[..., Any],
    suspend: bool,
) -> None:
    flux_helm_release(gitops.client, "pay", image=GOOD, interval="1s")
    wait_for(lambda: image_of(kubesim, "pay") == GOOD, timeout=10, message="helm-controller to install the release")
    labels = kubesim.store.get(DEPLOYMENTS, "default", "pay")["metadata"]["labels"]
    assert {k: labels[k] for k in HELM_LABELS} == dict(zip(HELM_LABELS, ("pay", "flux-system"), strict=True))
    flux_helm_release(gitops.client, "pay", image=BAD, interval="1s")  # a new commit with a bad image
    wait_for(lambda: image_of(kubesim, "pay") == BAD, timeout=10, message="the upgrade to the bad image")
    if suspend:
        kubectl("patch", "hr", "pay", "-n", "flux-system", "--type=merge", "-p", '{"spec":{"suspend":true}}')
    helm("rollback", "pay", "1", "-n", "default")
    if suspend:
        assert stays(kubesim, "pay", GOOD)
    else:
        wait_for(lambda: image_of(kubesim, "pay") == BAD, timeout=10, message="helm-controller to upgrade again")
        assert "Helm upgrade succeeded" in kubectl("get", "hr", "pay", "-n", "flux-system").stdout
