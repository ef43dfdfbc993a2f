"""Simulated Argo CD and Flux controllers: they put the Git state back after a rollback, as the real ones do.

"Git" is a ConfigMap named `<reconciler name>-git` next to the Application or Kustomization, with two keys:
`revision` (a commit id) and `manifests` (multi-document YAML). Changing it is "pushing a new commit". A
HelmRelease needs no ConfigMap: its desired state is `spec.chart` plus `spec.values`, as in Flux.

- `ArgoCdController`: for an Application whose `spec.syncPolicy.automated` is set and not `enabled: false`,
  syncs when Git has a revision the Application has not synced yet, and, with `selfHeal: true`, re-applies
  the Git state once a tracked object has drifted for `self_heal_delay`. Objects it applies carry the
  tracking annotation `argocd.argoproj.io/tracking-id: <app instance>:<group>/<kind>:<namespace>/<name>`
  (the instance is `<namespace>_<name>` for an Application outside the `argocd` namespace).
- `FluxController`: re-applies each Kustomization's manifests every `spec.interval` unless `spec.suspend`
  (labels `kustomize.toolkit.fluxcd.io/name|namespace`), and, for each HelmRelease, runs the real
  `helm upgrade --install` when the release's latest revision is not the one it made itself (a `helm
  rollback` or an out-of-band upgrade), at `spec.interval` unless suspended. Objects of the release carry
  `helm.toolkit.fluxcd.io/name|namespace` (the chart renders the `commonLabels` value the controller sets,
  standing in for helm-controller's post-renderer).

Each controller is a daemon thread polling kubesim over HTTP every `poll`; `stop()` ends it. Sources of the
field and label names: docs/adr/0013-gitops-reconcilers.md.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

from sandbox.gitops.client import KubeApiError, KubeClient, resource_path

log = logging.getLogger("sandbox.gitops")

APPLICATIONS = ("argoproj.io/v1alpha1", "applications")
KUSTOMIZATIONS = ("kustomize.toolkit.fluxcd.io/v1", "kustomizations")
HELMRELEASES = ("helm.toolkit.fluxcd.io/v2", "helmreleases")
ARGO_TRACKING_ANNOTATION = "argocd.argoproj.io/tracking-id"
ARGO_INSTANCE_LABEL = "app.kubernetes.io/instance"
# The namespace the simulated Argo CD runs in: Applications elsewhere are tracked as `<namespace>_<name>`.
ARGO_CONTROL_PLANE_NAMESPACE = "argocd"
KUSTOMIZE_LABELS = ("kustomize.toolkit.fluxcd.io/name", "kustomize.toolkit.fluxcd.io/namespace")
HELM_LABELS = ("helm.toolkit.fluxcd.io/name", "helm.toolkit.fluxcd.io/namespace")
CHART_DIR = Path(__file__).parent / "chart"
# Kinds the simulated Git repositories hold, and their resource names.
_PLURALS = {
    "Deployment": "deployments",
    "StatefulSet": "statefulsets",
    "DaemonSet": "daemonsets",
    "Service": "services",
    "ConfigMap": "configmaps",
}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_interval(text: str) -> timedelta:
    """A Go duration as Flux writes `spec.interval` (`5s`, `1m30s`, `10m`)."""
    parts = _DURATION.findall(text or "")
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"invalid interval {text!r}: use a Go duration such as 30s or 5m")
    return timedelta(seconds=sum(float(n) * _UNIT_SECONDS[u] for n, u in parts))


def plural_of(kind: str) -> str:
    return _PLURALS.get(kind, kind.lower() + "s")


def git_state(client: KubeClient, namespace: str, name: str) -> tuple[str, list[dict[str, Any]]] | None:
    """(revision, manifests) of the simulated Git repository of a reconciler, None when there is none."""
    cm = client.get(resource_path("v1", "configmaps", namespace, f"{name}-git"))
    if cm is None:
        return None
    data = cm.get("data") or {}
    manifests = [m for m in yaml.safe_load_all(data.get("manifests", "")) if isinstance(m, dict)]
    return data.get("revision", ""), manifests


def is_subset(desired: Any, live: Any) -> bool:
    """Whether every field Git declares has the same value live (server defaults may add more)."""
    if isinstance(desired, dict):
        return isinstance(live, dict) and all(is_subset(v, live.get(k)) for k, v in desired.items())
    if isinstance(desired, list):
        return isinstance(live, list) and len(desired) == len(live) and all(map(is_subset, desired, live))
    return bool(desired == live)


def _live_of(client: KubeClient, manifest: dict[str, Any]) -> dict[str, Any] | None:
    meta = manifest["metadata"]
    return client.get(
        resource_path(manifest["apiVersion"], plural_of(manifest["kind"]), meta.get("namespace"), meta["name"])
    )


def has_drifted(client: KubeClient, manifests: list[dict[str, Any]]) -> bool:
    return any(not is_subset(m, _live_of(client, m)) for m in manifests)


def _with_metadata(manifest: dict[str, Any], labels: dict[str, str], annotations: dict[str, str]) -> dict[str, Any]:
    meta = dict(manifest["metadata"])
    meta["labels"] = {**(meta.get("labels") or {}), **labels}
    if annotations:
        meta["annotations"] = {**(meta.get("annotations") or {}), **annotations}
    return {**manifest, "metadata": meta}


def argo_tracking_id(app: str, manifest: dict[str, Any]) -> str:
    group = manifest["apiVersion"].rpartition("/")[0]
    meta = manifest["metadata"]
    return f"{app}:{group}/{manifest['kind']}:{meta.get('namespace', '')}/{meta['name']}"


def argo_instance(app: dict[str, Any]) -> str:
    """How Argo CD names an Application in tracking ids: `Application.InstanceName(controller namespace)`."""
    meta = app["metadata"]
    namespace = meta.get("namespace") or ARGO_CONTROL_PLANE_NAMESPACE
    return meta["name"] if namespace == ARGO_CONTROL_PLANE_NAMESPACE else f"{namespace}_{meta['name']}"


def argo_manifests(app: dict[str, Any], manifests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The manifests as Argo CD applies them: destination namespace filled in, tracking annotation added."""
    name = argo_instance(app)
    namespace = ((app.get("spec") or {}).get("destination") or {}).get("namespace") or "default"
    out = []
    for manifest in manifests:
        placed = {**manifest, "metadata": {"namespace": namespace, **manifest["metadata"]}}
        out.append(_with_metadata(placed, {}, {ARGO_TRACKING_ANNOTATION: argo_tracking_id(name, placed)}))
    return out


def flux_manifests(ks: dict[str, Any], manifests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    meta = ks["metadata"]
    namespace = (ks.get("spec") or {}).get("targetNamespace") or meta["namespace"]
    labels = dict(zip(KUSTOMIZE_LABELS, (meta["name"], meta["namespace"]), strict=True))
    return [_with_metadata({**m, "metadata": {"namespace": namespace, **m["metadata"]}}, labels, {}) for m in manifests]


def is_automated(app: dict[str, Any]) -> bool:
    automated = ((app.get("spec") or {}).get("syncPolicy") or {}).get("automated")
    return isinstance(automated, dict) and automated.get("enabled", True) is not False


def is_self_healing(app: dict[str, Any]) -> bool:
    automated = ((app.get("spec") or {}).get("syncPolicy") or {}).get("automated") or {}
    return is_automated(app) and automated.get("selfHeal") is True


class _PollingController:
    """A daemon thread calling `reconcile_once` every `poll` until stopped."""

    name = "controller"

    def __init__(self, client: KubeClient, poll: timedelta) -> None:
        self.client = client
        self.poll = poll
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"gitops-{self.name}", daemon=True)

    def start(self) -> _PollingController:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stopping.wait(self.poll.total_seconds()):
            try:
                self.reconcile_once()
            except (KubeApiError, OSError, subprocess.SubprocessError, ValueError, yaml.YAMLError) as exc:
                # A real controller logs, backs off and retries; the next poll is our retry.
                log.warning("%s: reconcile failed: %s", self.name, exc)

    def reconcile_once(self) -> None:
        raise NotImplementedError


class ArgoCdController(_PollingController):
    """Automated sync (new revisions) and self-heal (drift older than `self_heal_delay`) of Applications."""

    name = "argocd"

    def __init__(
        self,
        client: KubeClient,
        *,
        self_heal_delay: timedelta = timedelta(seconds=2),
        poll: timedelta = timedelta(seconds=0.2),
    ) -> None:
        super().__init__(client, poll)
        self.self_heal_delay = self_heal_delay
        # (namespace, name) -> monotonic time the drift was first seen.
        self._drift_seen: dict[tuple[str, str], float] = {}

    def reconcile_once(self) -> None:
        for app in self.client.list(resource_path(*APPLICATIONS, None)):
            self._reconcile(app)

    def _reconcile(self, app: dict[str, Any]) -> None:
        meta = app["metadata"]
        key = (meta["namespace"], meta["name"])
        git = git_state(self.client, *key)
        if git is None:
            return
        revision, manifests = git
        desired = argo_manifests(app, manifests)
        drifted = has_drifted(self.client, desired)
        synced_revision = ((app.get("status") or {}).get("sync") or {}).get("revision")
        if not drifted:
            self._drift_seen.pop(key, None)
        now = time.monotonic()
        first_seen = self._drift_seen.setdefault(key, now) if drifted else now
        new_commit = revision != synced_revision
        heal_due = is_self_healing(app) and drifted and now - first_seen >= self.self_heal_delay.total_seconds()
        if is_automated(app) and (new_commit or heal_due):
            for manifest in desired:
                self.client.apply(manifest, plural_of(manifest["kind"]))
            self._drift_seen.pop(key, None)
            log.info("argocd: synced %s/%s to %s", *key, revision)
            self._write_status(app, "Synced", revision)
        else:
            self._write_status(app, "OutOfSync" if drifted else "Synced", synced_revision)

    def _write_status(self, app: dict[str, Any], sync: str, revision: str | None) -> None:
        current = app.get("status") or {}
        wanted = {"sync": {"status": sync, "revision": revision}, "health": {"status": "Healthy"}}
        if current.get("sync") == wanted["sync"] and current.get("health") == wanted["health"]:
            return
        meta = app["metadata"]
        # Argo CD's Application has no status subresource: status is written with the object.
        self.client.merge_patch(resource_path(*APPLICATIONS, meta["namespace"], meta["name"]), {"status": wanted})


@dataclass
class _Schedule:
    next_run: float = 0.0
    # HelmRelease: the release revision this controller made last.
    last_revision: int | None = None
    # HelmRelease: the metadata.generation (spec) that revision was made from.
    observed_generation: int | None = None


class FluxController(_PollingController):
    """kustomize-controller and helm-controller: re-apply at `spec.interval` unless `spec.suspend: true`."""

    name = "flux"

    def __init__(
        self,
        client: KubeClient,
        *,
        helm: str = "helm",
        kubeconfig: str | Path | None = None,
        poll: timedelta = timedelta(seconds=0.2),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(client, poll)
        self.helm = helm
        self.kubeconfig = str(kubeconfig) if kubeconfig else None
        self._clock = clock
        self._schedules: dict[tuple[str, str, str], _Schedule] = {}

    def reconcile_once(self) -> None:
        for ks in self.client.list(resource_path(*KUSTOMIZATIONS, None)):
            if self._due("ks", ks):
                self._apply_kustomization(ks)
        if self.kubeconfig is not None:
            for release in self.client.list(resource_path(*HELMRELEASES, None)):
                if self._due("hr", release):
                    self._reconcile_release(release)

    def _due(self, kind: str, obj: dict[str, Any]) -> bool:
        spec = obj.get("spec") or {}
        if spec.get("suspend") is True:
            return False
        meta = obj["metadata"]
        schedule = self._schedules.setdefault((kind, meta["namespace"], meta["name"]), _Schedule())
        now = self._clock()
        if now < schedule.next_run:
            return False
        schedule.next_run = now + parse_interval(spec.get("interval", "")).total_seconds()
        return True

    def _apply_kustomization(self, ks: dict[str, Any]) -> None:
        meta = ks["metadata"]
        git = git_state(self.client, meta["namespace"], meta["name"])
        if git is None:
            self._ready(KUSTOMIZATIONS, ks, False, "ArtifactFailed", f"ConfigMap {meta['name']}-git not found")
            return
        revision, manifests = git
        for manifest in flux_manifests(ks, manifests):
            self.client.apply(manifest, plural_of(manifest["kind"]))
        self._ready(KUSTOMIZATIONS, ks, True, "ReconciliationSucceeded", f"Applied revision: {revision}")

    def _reconcile_release(self, release: dict[str, Any]) -> None:
        meta = release["metadata"]
        spec = release.get("spec") or {}
        name = spec.get("releaseName") or meta["name"]
        namespace = spec.get("targetNamespace") or meta["namespace"]
        schedule = self._schedules[("hr", meta["namespace"], meta["name"])]
        latest = self._release_revision(name, namespace)
        generation = meta.get("generation")
        # Upgrade for a new spec (a "commit") or when someone else made the latest release revision.
        if latest is not None and latest == schedule.last_revision and generation == schedule.observed_generation:
            return
        values = {
            **(spec.get("values") or {}),
            "commonLabels": dict(zip(HELM_LABELS, (meta["name"], meta["namespace"]), strict=True)),
        }
        # A chart that is a local directory is used as is; any other name means the bundled chart.
        chart = ((spec.get("chart") or {}).get("spec") or {}).get("chart") or ""
        chart = chart if chart and Path(chart).is_dir() else str(CHART_DIR)
        with tempfile.NamedTemporaryFile("w", suffix=".yaml") as values_file:
            json.dump(values, values_file)
            values_file.flush()
            done = self._helm(
                "upgrade", "--install", name, chart, "-n", namespace, "-f", values_file.name, "-o", "json"
            )
        # The revision this upgrade made, from its own answer: a later `helm status` could already see a
        # rollback made meanwhile and mistake it for ours.
        schedule.last_revision = json.loads(done.stdout)["version"]
        schedule.observed_generation = generation
        self._ready(
            HELMRELEASES, release, True, "UpgradeSucceeded", f"Helm upgrade succeeded for release {namespace}/{name}"
        )

    def _release_revision(self, name: str, namespace: str) -> int | None:
        done = self._helm("status", name, "-n", namespace, "-o", "json", check=False)
        if done.returncode != 0:
            return None
        revision: int = json.loads(done.stdout)["version"]
        return revision

    def _helm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        assert self.kubeconfig is not None
        return subprocess.run(
            [self.helm, "--kubeconfig", self.kubeconfig, *args], capture_output=True, text=True, check=check, timeout=60
        )

    def _ready(self, kind: tuple[str, str], obj: dict[str, Any], ok: bool, reason: str, message: str) -> None:
        meta = obj["metadata"]
        condition = {"type": "Ready", "status": "True" if ok else "False", "reason": reason, "message": message}
        if condition in ((obj.get("status") or {}).get("conditions") or []):
            return
        self.client.merge_patch(
            resource_path(*kind, meta["namespace"], meta["name"]) + "/status", {"status": {"conditions": [condition]}}
        )
