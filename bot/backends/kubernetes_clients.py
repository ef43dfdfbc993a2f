"""Reaching the Kubernetes API: one client per kubeconfig context, the workload a target names, and the
translation of client errors into `bot.core.errors`.

Every Kubernetes module of the bot (the backend, the rollout observers, the failure watches, helm's storage
reader) gets its API client from `KubernetesClients` and wraps its calls in `translating_errors`, so nothing
above `bot/backends` sees a vendor type.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from bot.backends import kubernetes_interpret as rules
from bot.core.catalog import KubernetesTarget, WorkloadKind
from bot.core.errors import BackendUnavailable, BotError, RollbackFailed, TargetNotAllowed, UnknownTarget


class KubernetesClients:
    """One API client per kubeconfig context (or the in-cluster config), created once and reused."""

    def __init__(self, kubeconfig: str | None = None, *, in_cluster: bool | None = None) -> None:
        self._kubeconfig = kubeconfig
        self._in_cluster = in_cluster
        self._clients: dict[str | None, k8s.ApiClient] = {}
        self._lock = threading.Lock()

    def contexts(self) -> list[str]:
        try:
            found, _ = k8s_config.list_kube_config_contexts(config_file=self._kubeconfig)
        except (ConfigException, OSError, TypeError):
            return []
        return sorted(context["name"] for context in found or ())

    def api(self, context: str | None) -> k8s.ApiClient:
        with self._lock:
            if context not in self._clients:
                self._clients[context] = self._build(context)
            return self._clients[context]

    def _build(self, context: str | None) -> k8s.ApiClient:
        if context is None and self._use_in_cluster():
            configuration = k8s.Configuration()
            k8s_config.load_incluster_config(client_configuration=configuration)
            return k8s.ApiClient(configuration)
        if context is not None and context not in self.contexts():
            known = ", ".join(f"`{name}`" for name in self.contexts()) or "none"
            raise UnknownTarget(f"unknown kube context `{context}` — rollbot knows: {known}")
        try:
            return k8s_config.new_client_from_config(config_file=self._kubeconfig, context=context)
        except (ConfigException, OSError) as exc:
            raise BackendUnavailable(f"cannot load the kubeconfig for context `{context or 'default'}`: {exc}") from exc

    def _use_in_cluster(self) -> bool:
        """Targets without a kube_context use the pod's own ServiceAccount when running in a cluster."""
        if self._in_cluster is not None:
            return self._in_cluster
        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            return True
        if self._kubeconfig:
            return False
        try:
            k8s_config.load_kube_config()
        except (ConfigException, OSError, TypeError):
            return True
        return False

    def close(self) -> None:
        with self._lock:
            for api in self._clients.values():
                api.close()
            self._clients.clear()


@dataclass(frozen=True)
class WorkloadRef:
    """One workload in one cluster context: what the observers and the rules need to know about it."""

    kind: WorkloadKind
    name: str
    namespace: str
    kube_context: str | None = None

    @classmethod
    def of(cls, spec: KubernetesTarget) -> WorkloadRef:
        return cls(kind=spec.kind, name=spec.name, namespace=spec.namespace, kube_context=spec.kube_context)

    @property
    def label(self) -> str:
        return f"{rules.KIND_WORDS[self.kind][1]}/{self.name}"


@contextlib.contextmanager
def translating_errors(what: str) -> Iterator[None]:
    """Turn client exceptions into the bot's errors, so nothing above this module sees a vendor type."""
    try:
        yield
    except BotError:
        raise
    except ApiException as exc:
        raise _translate_api_exception(exc, what) from exc
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise BackendUnavailable(f"cannot reach the Kubernetes API while {what}: {exc.__class__.__name__}") from exc


def _translate_api_exception(exc: ApiException, what: str) -> BotError:
    message = _status_message(exc)
    if exc.status == 404:
        return UnknownTarget(f"{what}: {message}")
    if exc.status in (401, 403):
        return TargetNotAllowed(f"rollbot is not allowed to do this ({what}): {message}")
    if exc.status == 422:
        return RollbackFailed(f"the API server rejected the change ({what}): {message}")
    return BackendUnavailable(f"the Kubernetes API answered {exc.status} while {what}: {message}")


def _status_message(exc: ApiException) -> str:
    try:
        body = json.loads(exc.body or "{}")
    except (TypeError, ValueError):
        return str(exc.reason or exc.status)
    return str(body.get("message") or exc.reason or exc.status)


def _raw(response: Any) -> dict[str, Any]:
    data = response.data
    parsed = json.loads(data.decode("utf-8") if isinstance(data, bytes) else data)
    return parsed if isinstance(parsed, dict) else {}
