"""KubeSim: the in-process simulated cluster (store + API server + controllers)."""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

import yaml

from sandbox.kubesim.server import ApiServer
from sandbox.kubesim.store import Store

if TYPE_CHECKING:
    from sandbox.kubesim.registry import RegistryConfig

log = logging.getLogger("kubesim")

BOOTSTRAP_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
TOKEN = "kubesim-token"


class _Stoppable(Protocol):
    def stop(self) -> None: ...


def kubeconfig_dict(url: str, context: str = "sandbox", namespace: str = "default") -> dict[str, Any]:
    """A kubeconfig with a token user over plain http (accepted by kubectl, helm and the Python client)."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": context, "cluster": {"server": url}}],
        "users": [{"name": f"{context}-user", "user": {"token": TOKEN}}],
        "contexts": [
            {"name": context, "context": {"cluster": context, "user": f"{context}-user", "namespace": namespace}}
        ],
        "current-context": context,
        "preferences": {},
    }


def write_kubeconfig(path: str | Path, url: str, context: str = "sandbox") -> None:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(yaml.safe_dump(kubeconfig_dict(url, context), sort_keys=False))
    target.chmod(0o600)


class KubeSim:
    """A simulated Kubernetes control plane served on 127.0.0.1.

    `start()` serves the API and, when `sandbox.kubesim.controllers` is importable, starts the
    controllers and fake kubelet (Deployments roll out, pods become Ready after `pod_ready_seconds`).
    """

    def __init__(
        self,
        *,
        port: int = 0,
        nodes: int = 3,
        pod_ready_seconds: float = 1.0,
        registry: RegistryConfig | None = None,
    ) -> None:
        self.store = Store()
        self.nodes = nodes
        self.pod_ready_seconds = pod_ready_seconds
        self.registry = registry
        self._requested_port = port
        self._server: ApiServer | None = None
        self._controllers: _Stoppable | None = None
        for name in BOOTSTRAP_NAMESPACES:
            self.store.create(("", "v1", "namespaces"), {"metadata": {"name": name}})
        self.store.create(
            ("", "v1", "services"),
            {
                "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"component": "apiserver"}},
                "spec": {"clusterIP": "10.96.0.1", "ports": [{"name": "https", "port": 443, "targetPort": 6443}]},
            },
        )

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("KubeSim is not started")
        return self._server.url

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("KubeSim is not started")
        return self._server.port

    def start(self) -> KubeSim:
        if self._server is not None:
            return self
        self._server = ApiServer(self.store, port=self._requested_port).start()
        self._controllers = self._start_controllers()
        return self

    def _start_controllers(self) -> _Stoppable | None:
        try:
            module = importlib.import_module("sandbox.kubesim.controllers")
        except ImportError as exc:
            log.warning("kubesim controllers unavailable (%s); serving the API only", exc)
            return None
        start = getattr(module, "start_controllers", None)
        if start is None:
            log.warning("sandbox.kubesim.controllers has no start_controllers(); serving the API only")
            return None
        controllers: _Stoppable = start(
            self.store, nodes=self.nodes, pod_ready_seconds=self.pod_ready_seconds, registry=self.registry
        )
        return controllers

    def stop(self) -> None:
        if self._controllers is not None:
            self._controllers.stop()
            self._controllers = None
        if self._server is not None:
            self._server.stop()
            self._server = None

    def write_kubeconfig(self, path: str | Path, context: str = "sandbox") -> None:
        write_kubeconfig(path, self.url, context)

    def __enter__(self) -> KubeSim:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
