"""Argo CD and Flux objects over the Kubernetes API: who reconciles a target, and the merge patches that pause it.

Implements `bot.ports.Reconcilers` for Kubernetes and Helm targets. The decisions (which labels name an owner,
what "automated" means, the patches) are `bot.core.gitops`; this module only reads and patches. A target no
reconciler names costs one read: the workload (Kubernetes) or the HelmReleases list (Helm). A 404 on a
resource type means its CRD is not installed, i.e. no reconciler of that kind; a 403 means the chart was
installed without the GitOps read rules: rollbot then behaves as before and logs why it could not tell.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import structlog
import urllib3
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from pydantic import JsonValue

from bot.backends.kubernetes_clients import KubernetesClients, _raw, _translate_api_exception, translating_errors
from bot.core.catalog import HelmTarget, KubernetesTarget, Target, WorkloadKind
from bot.core.errors import BackendUnavailable
from bot.core.gitops import (
    RESOURCES,
    Reconciler,
    ReconcilerKind,
    ReconcilerRef,
    helm_release_owner,
    owner_of,
    previous_settings,
    reconciler_of,
)

log = structlog.get_logger(__name__)

_MERGE_PATCH = "application/merge-patch+json"
_HELMRELEASES = RESOURCES[ReconcilerKind.FLUX_HELMRELEASE]


class KubernetesReconcilers:
    """Finds the Argo CD Application, Flux Kustomization or HelmRelease of a target; pauses and restores it."""

    def __init__(self, clients: KubernetesClients) -> None:
        self._clients = clients

    def reconciler(self, target: Target) -> Reconciler | None:
        spec = target.spec
        if isinstance(spec, KubernetesTarget):
            ref = self._workload_owner(spec)
        elif isinstance(spec, HelmTarget):
            ref = self._release_owner(spec)
        else:
            return None
        if ref is None:
            return None
        obj = self._read(_context(target), ref)
        return None if obj is None else reconciler_of(ref, obj)

    def settings(self, target: Target, ref: ReconcilerRef) -> dict[str, JsonValue]:
        """The fields a pause changes, as they are now."""
        obj = self._read(_context(target), ref)
        if obj is None:
            raise BackendUnavailable(f"{ref.display} is gone: it was there when the rollback was requested")
        return previous_settings(ref, obj)

    def patch(self, target: Target, ref: ReconcilerRef, patch: Mapping[str, Any]) -> None:
        group, version, plural = RESOURCES[ref.kind]
        api = k8s.CustomObjectsApi(self._clients.api(_context(target)))
        with translating_errors(f"patching {ref.display}"):
            api.patch_namespaced_custom_object(
                group, version, ref.namespace, plural, ref.name, dict(patch), _content_type=_MERGE_PATCH
            )
        log.info("reconciler patched", reconciler=ref.key, patch=dict(patch))

    # -- reading ---------------------------------------------------------------------------------------------

    def _workload_owner(self, spec: KubernetesTarget) -> ReconcilerRef | None:
        apps = k8s.AppsV1Api(self._clients.api(spec.kube_context))
        readers: dict[WorkloadKind, Callable[..., Any]] = {
            WorkloadKind.DEPLOYMENT: apps.read_namespaced_deployment,
            WorkloadKind.DAEMONSET: apps.read_namespaced_daemon_set,
            WorkloadKind.STATEFULSET: apps.read_namespaced_stateful_set,
        }
        obj = self._tolerant(
            f"reading {spec.kind.value} {spec.namespace}/{spec.name}",
            lambda: _raw(readers[spec.kind](spec.name, spec.namespace, _preload_content=False)),
        )
        return None if obj is None else owner_of(obj, "apps/v1", spec.kind.value)

    def _release_owner(self, spec: HelmTarget) -> ReconcilerRef | None:
        group, version, plural = _HELMRELEASES
        api = k8s.CustomObjectsApi(self._clients.api(spec.kube_context))
        listed = self._tolerant(
            "listing Flux HelmReleases",
            lambda: _raw(api.list_cluster_custom_object(group, version, plural, _preload_content=False)),
        )
        found = helm_release_owner((listed or {}).get("items") or [], spec.release, spec.namespace)
        if found is None:
            return None
        meta = found.get("metadata") or {}
        return ReconcilerRef(kind=ReconcilerKind.FLUX_HELMRELEASE, namespace=meta["namespace"], name=meta["name"])

    def _read(self, context: str | None, ref: ReconcilerRef) -> dict[str, Any] | None:
        group, version, plural = RESOURCES[ref.kind]
        api = k8s.CustomObjectsApi(self._clients.api(context))
        return self._tolerant(
            f"reading {ref.display}",
            lambda: _raw(
                api.get_namespaced_custom_object(
                    group, version, ref.namespace, plural, ref.name, _preload_content=False
                )
            ),
        )

    @staticmethod
    def _tolerant(what: str, read: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
        """None when the object or its type does not exist (or may not be read); other errors as the bot's."""
        try:
            return read()
        except ApiException as exc:
            if exc.status == 404:
                return None
            if exc.status == 403:
                log.warning("cannot read GitOps objects; treating the target as not reconciled", what=what)
                return None
            raise _translate_api_exception(exc, what) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise BackendUnavailable(f"cannot reach the Kubernetes API while {what}: {exc.__class__.__name__}") from exc


def _context(target: Target) -> str | None:
    spec = target.spec
    return spec.kube_context if isinstance(spec, KubernetesTarget | HelmTarget) else None
