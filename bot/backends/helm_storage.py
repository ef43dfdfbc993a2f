"""Helm's release storage read through the Kubernetes API: the latest revision number, without a helm process.

helm keeps one Secret per revision in the release's namespace (`sh.helm.release.v1.<release>.v<N>`, labelled
`owner=helm`, `name=<release>`, `status=<status>`, `version=<N>`; a ConfigMap each under `HELM_DRIVER=configmap`),
and `helm history` is that list decoded. Before a rollback the bot only needs to know that nothing was recorded
after the approved plan, which the `version` labels say in one LIST: about 10 ms instead of a `helm history`
process (~150 ms, most of it helm starting). Anything this cannot answer (another storage driver, no access to
Secrets, no release) is None, and the caller asks helm itself.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, Final

import structlog
import urllib3
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from bot.backends.kubernetes_api import KubernetesClients
from bot.core.catalog import HelmTarget
from bot.core.errors import BotError

log = structlog.get_logger(__name__)

# HELM_DRIVER values (helm's pkg/action/action.go): "" and "secret(s)" are the default, "configmap(s)" the other
# in-cluster driver; "memory" and "sql" keep nothing the API server can show.
_SECRET_DRIVERS: Final = frozenset({"", "secret", "secrets"})
_CONFIGMAP_DRIVERS: Final = frozenset({"configmap", "configmaps"})
# Only the objects' metadata (the labels): each revision's Secret also holds the whole release, gzipped.
_METADATA_ONLY: Final = {"Accept": "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io,application/json"}


class HelmStorage:
    def __init__(self, clients: KubernetesClients, environment: Mapping[str, str]) -> None:
        self._clients = clients
        self._driver = environment.get("HELM_DRIVER", "").lower()

    def latest_revision(self, spec: HelmTarget) -> int | None:
        """The highest revision helm has stored for the release, or None when only helm can say."""
        lister = self._lister(spec)
        if lister is None:
            return None
        try:
            response = lister(
                spec.namespace,
                label_selector=f"name={spec.release},owner=helm",
                _preload_content=False,
                _headers=_METADATA_ONLY,
            )
            items: list[dict[str, Any]] = json.loads(response.data).get("items") or []
        except (ApiException, urllib3.exceptions.HTTPError, OSError, ValueError, BotError) as exc:
            log.info("helm storage unreadable; asking helm", release=spec.release, error=str(exc)[:200])
            return None
        versions = [_version(item) for item in items]
        if not versions or None in versions:
            return None
        return max(version for version in versions if version is not None)

    def _lister(self, spec: HelmTarget) -> Callable[..., Any] | None:
        if self._driver not in _SECRET_DRIVERS | _CONFIGMAP_DRIVERS:
            return None
        try:
            core = k8s.CoreV1Api(self._clients.api(spec.kube_context))
        except BotError:
            return None
        return core.list_namespaced_secret if self._driver in _SECRET_DRIVERS else core.list_namespaced_config_map


def _version(item: Mapping[str, Any]) -> int | None:
    labels = (item.get("metadata") or {}).get("labels") or {}
    try:
        return int(labels["version"])
    except (KeyError, TypeError, ValueError):
        return None
