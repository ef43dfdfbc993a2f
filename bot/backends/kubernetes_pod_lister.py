"""The pods of the workloads the Kubernetes watcher selected, listed on a thread of their own.

The watcher's reporting thread selects the workloads `needs_pods` names (mid-rollout, or short of available
replicas) and lets go of them once healthy; it never waits for a listing. `PodLister.run` lists the update
revision's pods of each selected workload (a Deployment's update hash first, from its newest ReplicaSet) at most
every `interval`, the longest-waiting first, and hands each listing over as a `PodsListed` event in the watcher's
inbox, so a slow API server delays pod-rule signals, never a deadline the workload object itself carries.

A listing that a retry can fix (timeout, 5xx) is retried at the next interval; any other error ends the watch
(`StreamFailed`), as a refused list of the workloads does.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import structlog
from kubernetes import client as k8s

from bot.backends.kubernetes_api import translating_errors
from bot.backends.kubernetes_stream import StreamFailed
from bot.core.catalog import WorkloadKind
from bot.core.detection import REVISION_ANNOTATION, PodSnapshot, WorkloadSnapshot
from bot.core.detection.snapshots import CONTROLLER_REVISION_HASH, POD_TEMPLATE_HASH
from bot.core.errors import BotError, TemporaryError

log = structlog.get_logger(__name__)

WorkloadKey = tuple[WorkloadKind, str, str]  # kind, namespace, name
_REQUEST_TIMEOUT = (10, 30)
PODS_STREAM = "pods of selected workloads"


@dataclass(frozen=True)
class PodsListed:
    """One listing: the update revision's pods of a workload, for the snapshot it was made for."""

    key: WorkloadKey
    snapshot: WorkloadSnapshot  # with a Deployment's update hash filled in
    pods: tuple[PodSnapshot, ...]


class PodSink(Protocol):
    def put(self, event: PodsListed | StreamFailed) -> None: ...


@dataclass
class _Selected:
    snapshot: WorkloadSnapshot
    selector: str
    listed_at: float = float("-inf")
    # The Deployment revision the update hash was read for, and the hash (None: no ReplicaSet for it yet).
    hash_revision: int | None = None
    update_hash: str | None = None


class PodLister:
    def __init__(
        self,
        core: k8s.CoreV1Api,
        apps: k8s.AppsV1Api,
        sink: PodSink,
        *,
        interval: float,
        monotonic: Callable[[], float],
    ) -> None:
        self._core = core
        self._apps = apps
        self._sink = sink
        self._interval = interval
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._selected: dict[WorkloadKey, _Selected] = {}

    # -- called by the reporting thread ----------------------------------------------------------------------

    def select(self, key: WorkloadKey, snapshot: WorkloadSnapshot, selector: str) -> None:
        """Keep listing this workload's pods; a new selection, or a Deployment's new revision, is due at once."""
        with self._lock:
            selected = self._selected.get(key)
            if selected is None or selected.snapshot.revision_key != snapshot.revision_key:
                self._selected[key] = _Selected(snapshot, selector)
                self._wake.set()
            else:
                selected.snapshot, selected.selector = snapshot, selector

    def drop(self, key: WorkloadKey) -> None:
        with self._lock:
            self._selected.pop(key, None)

    def is_current(self, listed: PodsListed) -> bool:
        """Whether a listing still speaks for the workload's selected revision (it may have moved on since)."""
        with self._lock:
            selected = self._selected.get(listed.key)
            return selected is not None and selected.snapshot.revision_key == listed.snapshot.revision_key

    # -- its own thread ----------------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            due = self._due()
            if not due:
                self._wake.wait(min(0.2, self._interval))
                self._wake.clear()
                continue
            for key in due:
                if stop.is_set():
                    return
                try:
                    listed = self._list(key)
                except TemporaryError as exc:
                    log.warning("listing pods failed; trying again", workload=key[2], error=str(exc))
                    continue
                except BotError as exc:
                    self._sink.put(StreamFailed(PODS_STREAM, exc))
                    return
                if listed is not None:
                    self._sink.put(listed)

    def _due(self) -> list[WorkloadKey]:
        now = self._monotonic()
        with self._lock:
            due = [(s.listed_at, key) for key, s in self._selected.items() if now - s.listed_at >= self._interval]
        return [key for _, key in sorted(due)]

    def _list(self, key: WorkloadKey) -> PodsListed | None:
        with self._lock:
            selected = self._selected.get(key)
            if selected is None:
                return None
            selected.listed_at = self._monotonic()
            snapshot, selector = selected.snapshot, selected.selector
            hash_revision, update_hash = selected.hash_revision, selected.update_hash
        if snapshot.kind is WorkloadKind.DEPLOYMENT:
            if hash_revision != snapshot.revision or update_hash is None:
                update_hash = self._deployment_hash(snapshot, selector)
                with self._lock:
                    if key in self._selected:
                        self._selected[key].hash_revision = snapshot.revision
                        self._selected[key].update_hash = update_hash
            snapshot = snapshot.model_copy(update={"update_hash": update_hash})
        return PodsListed(key, snapshot, self._list_pods(snapshot, selector))

    def _deployment_hash(self, snapshot: WorkloadSnapshot, selector: str) -> str | None:
        """The pod-template-hash of the Deployment's ReplicaSet for its current revision (the newest)."""
        with translating_errors(f"listing the ReplicaSets of deployment/{snapshot.name}"):
            listing = _json(
                self._apps.list_namespaced_replica_set(
                    snapshot.namespace,
                    label_selector=selector,
                    _preload_content=False,
                    _request_timeout=_REQUEST_TIMEOUT,
                )
            )
        newest: tuple[int, str] | None = None
        for replica_set in listing.get("items") or ():
            meta = replica_set.get("metadata") or {}
            owners = meta.get("ownerReferences") or ()
            if not any(o.get("kind") == "Deployment" and o.get("name") == snapshot.name for o in owners):
                continue
            revision = str((meta.get("annotations") or {}).get(REVISION_ANNOTATION) or "0")
            template_hash = (meta.get("labels") or {}).get(POD_TEMPLATE_HASH)
            if template_hash and revision.isdigit() and (newest is None or int(revision) > newest[0]):
                newest = (int(revision), str(template_hash))
        return newest[1] if newest else None

    def _list_pods(self, snapshot: WorkloadSnapshot, selector: str) -> tuple[PodSnapshot, ...]:
        narrowed = _update_revision_selector(selector, snapshot)
        if narrowed is None:
            return ()  # the update revision has no ReplicaSet yet, hence no pods
        with translating_errors(f"listing the pods of {snapshot.kind.value.lower()}/{snapshot.name}"):
            listing = _json(
                self._core.list_namespaced_pod(
                    snapshot.namespace,
                    label_selector=narrowed,
                    _preload_content=False,
                    _request_timeout=_REQUEST_TIMEOUT,
                )
            )
        return tuple(PodSnapshot.from_manifest(pod) for pod in listing.get("items") or ())


def _update_revision_selector(selector: str, snapshot: WorkloadSnapshot) -> str | None:
    """The workload's selector narrowed to the update revision's pods, where the revision has a label."""
    if snapshot.kind is WorkloadKind.DEPLOYMENT:
        if snapshot.update_hash is None:
            return None
        return _and(selector, f"{POD_TEMPLATE_HASH}={snapshot.update_hash}")
    if snapshot.kind is WorkloadKind.STATEFULSET and snapshot.update_revision:
        return _and(selector, f"{CONTROLLER_REVISION_HASH}={snapshot.update_revision}")
    # A DaemonSet's status names no update revision: its pods are at most one per node, and the core tells
    # the update's pods apart by their template generation.
    return selector


def _and(selector: str, requirement: str) -> str:
    return f"{selector},{requirement}" if selector else requirement


def _json(response: Any) -> dict[str, Any]:
    parsed = json.loads(response.data)
    return parsed if isinstance(parsed, dict) else {}
