"""Arranging workloads in kubesim the way people do it with kubectl: create, then change the image."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from bot.backends import kubernetes_interpret as rules
from bot.core.catalog import WorkloadKind
from sandbox.kubesim.cluster import KubeSim

_RESOURCES = {
    WorkloadKind.DEPLOYMENT: ("apps", "v1", "deployments"),
    WorkloadKind.DAEMONSET: ("apps", "v1", "daemonsets"),
    WorkloadKind.STATEFULSET: ("apps", "v1", "statefulsets"),
}


class KubeWorld:
    """Direct store access for arranging scenarios; the code under test talks HTTP to the same cluster."""

    def __init__(self, sim: KubeSim) -> None:
        self.sim = sim
        self._changed = threading.Condition()
        sim.store.add_listener(self._on_change)

    def _on_change(self, *_: Any) -> None:
        with self._changed:
            self._changed.notify_all()

    def wait_until(self, condition: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}")
            with self._changed:
                # Bounded: readiness also depends on time passing in the fake kubelet.
                self._changed.wait(timeout=min(remaining, 0.2))

    def create(
        self, kind: WorkloadKind, name: str, image: str, *, namespace: str = "default", replicas: int = 2
    ) -> None:
        labels = {"app": name}
        spec: dict[str, Any] = {
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": name, "image": image}]}},
        }
        if kind is not WorkloadKind.DAEMONSET:
            spec["replicas"] = replicas
        if kind is WorkloadKind.STATEFULSET:
            spec["serviceName"] = name
        self.sim.store.create(_RESOURCES[kind], {"metadata": {"name": name, "namespace": namespace}, "spec": spec})

    def set_image(
        self, kind: WorkloadKind, name: str, image: str, *, namespace: str = "default", cause: str | None = None
    ) -> None:
        with self.sim.store.lock:
            obj = self.sim.store.get(_RESOURCES[kind], namespace, name)
            obj["spec"]["template"]["spec"]["containers"][0]["image"] = image
            if cause:
                obj["metadata"].setdefault("annotations", {})["kubernetes.io/change-cause"] = cause
            self.sim.store.update(_RESOURCES[kind], obj)

    def get(self, kind: WorkloadKind, name: str, namespace: str = "default") -> dict[str, Any]:
        return self.sim.store.get(_RESOURCES[kind], namespace, name)

    def rolled_out(self, kind: WorkloadKind, name: str, namespace: str = "default") -> bool:
        return rules.rollout_verdict(self.get(kind, name, namespace), kind).is_done

    def observed(self, kind: WorkloadKind, name: str, namespace: str = "default") -> bool:
        obj = self.get(kind, name, namespace)
        return int((obj.get("status") or {}).get("observedGeneration") or 0) >= int(
            obj["metadata"].get("generation") or 0
        )

    def history_numbers(self, kind: WorkloadKind, name: str, namespace: str = "default") -> list[int]:
        obj = self.get(kind, name, namespace)
        if kind is WorkloadKind.DEPLOYMENT:
            items, _ = self.sim.store.list(("apps", "v1", "replicasets"), namespace)
            return [entry.revision for entry in rules.deployment_history(obj, items)]
        items, _ = self.sim.store.list(("apps", "v1", "controllerrevisions"), namespace)
        return [entry.revision for entry in rules.controller_revision_history(obj, items)]
