"""One-call setup of GitOps-managed workloads on kubesim, and the controllers that reconcile them.

with KubeSim() as sim, GitOps(sim.url, kubeconfig=path) as gitops:
    argo_managed_deployment(gitops.client, "shop", image="nginx:1.27")
    flux_managed_deployment(gitops.client, "cart", image="nginx:1.27", interval="2s")
    flux_helm_release(gitops.client, "pay", image="nginx:1.27", interval="2s")
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from sandbox.gitops.client import KubeApiError, KubeClient, resource_path
from sandbox.gitops.reconcilers import (
    APPLICATIONS,
    HELMRELEASES,
    KUSTOMIZATIONS,
    ArgoCdController,
    FluxController,
    argo_manifests,
    flux_manifests,
)

CRD_DIR = Path(__file__).parent / "crds"


def install_crds(client: KubeClient) -> None:
    """Create the Application, Kustomization and HelmRelease CRDs (idempotent)."""
    for path in sorted(CRD_DIR.glob("*.yaml")):
        client.apply(yaml.safe_load(path.read_text(encoding="utf-8")), "customresourcedefinitions")


def ensure_namespace(client: KubeClient, name: str) -> None:
    try:
        client.create(resource_path("v1", "namespaces", None), {"metadata": {"name": name}})
    except KubeApiError as exc:
        if exc.code != 409:
            raise


def deployment_manifest(name: str, image: str, replicas: int = 1) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "app", "image": image}]}},
        },
    }


def push_commit(client: KubeClient, namespace: str, name: str, revision: str, manifests: list[dict[str, Any]]) -> None:
    """Write the simulated Git repository of reconciler `namespace/name` (a ConfigMap `<name>-git`)."""
    data = {"revision": revision, "manifests": yaml.safe_dump_all(manifests, sort_keys=False)}
    ensure_namespace(client, namespace)
    client.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": f"{name}-git", "namespace": namespace},
            "data": data,
        },
        "configmaps",
    )


def argo_managed_deployment(
    client: KubeClient,
    name: str,
    *,
    image: str,
    namespace: str = "default",
    app_namespace: str = "argocd",
    automated: bool = True,
    self_heal: bool = True,
    enabled: bool | None = None,
    revision: str = "rev-1",
) -> dict[str, Any]:
    """An Argo CD Application `app_namespace/name` deploying Deployment `namespace/name`, synced once."""
    ensure_namespace(client, namespace)
    push_commit(client, app_namespace, name, revision, [deployment_manifest(name, image)])
    sync_policy: dict[str, Any] = {}
    if automated:
        sync_policy["automated"] = {"prune": True, "selfHeal": self_heal}
        if enabled is not None:
            sync_policy["automated"]["enabled"] = enabled
    app = {
        "apiVersion": APPLICATIONS[0],
        "kind": "Application",
        "metadata": {"name": name, "namespace": app_namespace},
        "spec": {
            "project": "default",
            "source": {"repoURL": f"https://git.example/{name}.git", "path": "deploy", "targetRevision": "HEAD"},
            "destination": {"server": "https://kubernetes.default.svc", "namespace": namespace},
            "syncPolicy": sync_policy,
        },
        # The initial (manual) sync below: the Application starts Synced at `revision`.
        "status": {"sync": {"status": "Synced", "revision": revision}, "health": {"status": "Healthy"}},
    }
    created = client.apply(app, APPLICATIONS[1])
    for manifest in argo_manifests(created, [deployment_manifest(name, image)]):
        client.apply(manifest, "deployments")
    return created


def flux_managed_deployment(
    client: KubeClient,
    name: str,
    *,
    image: str,
    namespace: str = "default",
    ks_namespace: str = "flux-system",
    interval: str = "2s",
    suspend: bool = False,
    revision: str = "main@sha1:1",
) -> dict[str, Any]:
    """A Flux Kustomization `ks_namespace/name` applying Deployment `namespace/name`, applied once."""
    ensure_namespace(client, namespace)
    push_commit(client, ks_namespace, name, revision, [deployment_manifest(name, image)])
    ks = {
        "apiVersion": KUSTOMIZATIONS[0],
        "kind": "Kustomization",
        "metadata": {"name": name, "namespace": ks_namespace},
        "spec": {
            "interval": interval,
            "suspend": suspend,
            "path": f"./deploy/{name}",
            "prune": True,
            "targetNamespace": namespace,
            "sourceRef": {"kind": "GitRepository", "name": name},
        },
    }
    created = client.apply(ks, KUSTOMIZATIONS[1])
    for manifest in flux_manifests(created, [deployment_manifest(name, image)]):
        client.apply(manifest, "deployments")
    return created


def flux_helm_release(
    client: KubeClient,
    name: str,
    *,
    image: str,
    namespace: str = "default",
    hr_namespace: str = "flux-system",
    interval: str = "2s",
    suspend: bool = False,
) -> dict[str, Any]:
    """A Flux HelmRelease `hr_namespace/name` of the bundled one-Deployment chart into `namespace`."""
    ensure_namespace(client, namespace)
    ensure_namespace(client, hr_namespace)
    release = {
        "apiVersion": HELMRELEASES[0],
        "kind": "HelmRelease",
        "metadata": {"name": name, "namespace": hr_namespace},
        "spec": {
            "interval": interval,
            "suspend": suspend,
            "releaseName": name,
            "targetNamespace": namespace,
            "chart": {"spec": {"chart": "gitops-workload", "sourceRef": {"kind": "HelmRepository", "name": "local"}}},
            "values": {"image": image},
        },
    }
    return client.apply(release, HELMRELEASES[1])


class GitOps:
    """The simulated Argo CD and Flux controllers against one API server; a context manager."""

    def __init__(
        self,
        url: str,
        *,
        kubeconfig: str | Path | None = None,
        helm: str = "helm",
        self_heal_delay: timedelta = timedelta(seconds=2),
    ) -> None:
        self.client = KubeClient(url)
        install_crds(self.client)
        self.argocd = ArgoCdController(self.client, self_heal_delay=self_heal_delay)
        self.flux = FluxController(self.client, helm=helm, kubeconfig=kubeconfig)

    def start(self) -> GitOps:
        self.argocd.start()
        self.flux.start()
        return self

    def stop(self) -> None:
        self.argocd.stop()
        self.flux.stop()

    def __enter__(self) -> GitOps:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
