"""In-process harness for the controller tests: a Store, the bootstrap namespace and running controllers,
with helpers to write objects and wait for conditions (no HTTP, no mocks)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from sandbox.kubesim.controllers import Controllers, start_controllers
from sandbox.kubesim.registry import RegistryConfig
from sandbox.kubesim.store import Store

NS = "default"
DEPLOYMENTS = ("apps", "v1", "deployments")
REPLICASETS = ("apps", "v1", "replicasets")
DAEMONSETS = ("apps", "v1", "daemonsets")
STATEFULSETS = ("apps", "v1", "statefulsets")
CONTROLLERREVISIONS = ("apps", "v1", "controllerrevisions")
PODS = ("", "v1", "pods")
EVENTS = ("", "v1", "events")


def workload(
    kind: str, name: str, image: str, *, replicas: int | None = None, labels: dict[str, str] | None = None, **spec: Any
) -> dict[str, Any]:
    labels = labels or {"app": name}
    body: dict[str, Any] = {
        "selector": {"matchLabels": dict(labels)},
        "template": {
            "metadata": {"labels": dict(labels)},
            "spec": {"containers": [{"name": name, "image": image}]},
        },
    }
    if replicas is not None:
        body["replicas"] = replicas
    body.update(spec)
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name, "namespace": NS}, "spec": body}


class Harness:
    def __init__(
        self, *, nodes: int = 3, pod_ready_seconds: float = 0.05, registry: RegistryConfig | None = None
    ) -> None:
        self.store = Store()
        self.store.create(("", "v1", "namespaces"), {"metadata": {"name": NS}})
        self._changed = threading.Condition()
        self.store.add_listener(self._notify)
        self.controllers: Controllers = start_controllers(
            self.store, nodes=nodes, pod_ready_seconds=pod_ready_seconds, registry=registry
        )

    def _notify(self, etype: str, res: tuple[str, str, str], obj: dict[str, Any]) -> None:
        with self._changed:
            self._changed.notify_all()

    def __enter__(self) -> Harness:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.controllers.stop()

    # ------------------------------------------------------------------ reads

    def get(self, res: tuple[str, str, str], name: str, ns: str = NS) -> dict[str, Any]:
        return self.store.get(res, ns, name)

    def list(self, res: tuple[str, str, str], selector: str | None = None, ns: str = NS) -> list[dict[str, Any]]:
        return self.store.list(res, ns, label_selector=selector)[0]

    def wait(self, condition: Callable[[], Any], *, timeout: float = 10.0, message: str = "condition") -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out after {timeout}s waiting for {message}")
            with self._changed:
                self._changed.wait(timeout=min(remaining, 0.05))

    # ------------------------------------------------------------------ writes

    def create(self, res: tuple[str, str, str], obj: dict[str, Any]) -> dict[str, Any]:
        return self.store.create(res, obj)

    def mutate(self, res: tuple[str, str, str], name: str, fn: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        """Read-modify-write with retries on conflict, like a client applying a change."""
        from sandbox.kubesim.store import ApiError

        for _ in range(50):
            obj = self.get(res, name)
            fn(obj)
            try:
                return self.store.update(res, obj)
            except ApiError as exc:
                if exc.code != 409:
                    raise
        raise AssertionError(f"could not update {name}: constant conflicts")

    def set_image(self, res: tuple[str, str, str], name: str, image: str) -> dict[str, Any]:
        def change(obj: dict[str, Any]) -> None:
            obj["spec"]["template"]["spec"]["containers"][0]["image"] = image

        return self.mutate(res, name, change)

    # ------------------------------------------------------------------ rollout helpers

    def deployment_done(self, name: str) -> bool:
        """kubectl rollout status' success rule."""
        d = self.get(DEPLOYMENTS, name)
        st = d.get("status") or {}
        want = d["spec"]["replicas"]
        return (
            d["metadata"]["generation"] <= st.get("observedGeneration", 0)
            and st.get("updatedReplicas", 0) >= want
            and st.get("replicas", 0) <= st.get("updatedReplicas", 0)
            and st.get("availableReplicas", 0) >= st.get("updatedReplicas", 0)
        )

    def owned_replicasets(self, name: str) -> list[dict[str, Any]]:
        uid = self.get(DEPLOYMENTS, name)["metadata"]["uid"]
        return [
            rs
            for rs in self.list(REPLICASETS)
            if any(r.get("uid") == uid and r.get("controller") for r in rs["metadata"].get("ownerReferences", []))
        ]
