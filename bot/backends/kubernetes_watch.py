"""The Kubernetes failure watcher: Deployments, DaemonSets and StatefulSets of one context, as `Sighting`s.

Implements `bot.ports.FailureWatcher` for `KubernetesWatch` scopes. Per kind there is one list+watch
(`kubernetes_stream.CollectionStream`): cluster-wide for `namespaces: ["*"]`, else one per listed namespace.
Each object is projected at once into a `WorkloadSnapshot` (plus its pod selector); nothing else is kept.

Pods are never watched. For the workloads `needs_pods` selects (mid-rollout, or short of available replicas)
this module lists the pods of the update revision only (the workload's selector plus the revision's hash
label), at most every `pod_interval` while they stay selected, and reports each listing, so the flow's holds
(`failing_for`) mature even when the workload object itself does not change. A Deployment's update hash comes
from its newest ReplicaSet, listed only then. Once a workload is healthy again its pods are forgotten.

Every stream's events go through one inbox to the thread that called `watch`, which alone calls `report`: the
flow sees one ordered series of sightings. The inbox keeps only the newest state of each workload, so a burst
of changes (10,000 pods settling after a relist) costs one sighting per workload, never a growing backlog. Pod
listings are I/O the reporting thread does between events, oldest first and for at most `POD_LISTING_BUDGET`
per turn, so a thousand workloads mid-rollout never hold back the sighting of a Deployment whose deadline just
passed. Decisions are the core's (`bot.core.detection`); this module only looks.

Projections are slim (about 2 KB per workload): conditions the rules do not read are dropped before parsing.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
from kubernetes import client as k8s

from bot.backends.kubernetes_api import KubernetesClients, translating_errors
from bot.backends.kubernetes_interpret import selector_string
from bot.backends.kubernetes_stream import (
    DEFAULT_BACKOFF,
    PAGE_SIZE,
    WATCH_WINDOW_SECONDS,
    Backoff,
    Changed,
    CollectionStream,
    Listed,
    StreamEvent,
    StreamFailed,
)
from bot.core.catalog import WorkloadKind
from bot.core.catalog_detect import KubernetesWatch, WatchScope
from bot.core.detection import REVISION_ANNOTATION, PodSnapshot, Sighting, WorkloadSnapshot, needs_pods
from bot.core.detection.snapshots import CONTROLLER_REVISION_HASH, POD_TEMPLATE_HASH
from bot.core.errors import UnknownTarget

log = structlog.get_logger(__name__)

# Pods of a selected workload are listed again at most this often (and at least this often while selected).
POD_INTERVAL_SECONDS = 3.0
# Seconds of pod listings the reporting thread does before it looks at its inbox again, and the longest it
# handles changes before a turn of pod listings (so that neither starves the other).
POD_LISTING_BUDGET = 0.25
EVENT_BUDGET = 1.0
# The only conditions the rules read (bot/core/detection/workloads.py), and only in these states: the others
# are dropped before parsing, since a parsed condition costs more than the rest of a snapshot.
_READ_CONDITIONS = {"Progressing": "False", "ReplicaFailure": "True"}
_REQUEST_TIMEOUT = (10, 30)

WorkloadKey = tuple[WorkloadKind, str, str]  # kind, namespace, name


@dataclass(frozen=True)
class HeldWorkload:
    """What is kept per workload: its snapshot and how to find its pods."""

    snapshot: WorkloadSnapshot
    selector: str

    @property
    def key(self) -> WorkloadKey:
        return (self.snapshot.kind, self.snapshot.namespace, self.snapshot.name)


@dataclass
class _PodWatch:
    """The last pod listing of a selected workload; dropped once `needs_pods` lets go of it."""

    listed_at: float
    pods: tuple[PodSnapshot, ...]
    # The Deployment revision the update hash was read for, and the hash (None: no ReplicaSet for it yet).
    hash_revision: int | None = None
    update_hash: str | None = None


@dataclass
class _Scope:
    """The state of one `watch` call (one context): snapshots by key, and the pods of the selected ones."""

    location: str
    # Which kind and namespace ("*": all) each stream speaks for, by stream name.
    streams: dict[str, tuple[WorkloadKind, str]] = field(default_factory=dict)
    held: dict[WorkloadKey, HeldWorkload] = field(default_factory=dict)
    pods: dict[WorkloadKey, _PodWatch] = field(default_factory=dict)


def project_workload(kind: WorkloadKind) -> Callable[[dict[str, Any]], HeldWorkload]:
    def project(obj: dict[str, Any]) -> HeldWorkload:
        # List items carry no `kind`; the snapshot's parser needs it.
        obj["kind"] = kind.value
        status = obj.get("status") or {}
        if status.get("conditions"):
            status["conditions"] = [
                condition
                for condition in status["conditions"]
                if _READ_CONDITIONS.get(condition.get("type")) == condition.get("status")
            ]
        selector = selector_string((obj.get("spec") or {}).get("selector"))
        return HeldWorkload(WorkloadSnapshot.from_manifest(obj), selector)

    return project


class _Inbox:
    """The streams' events, for the reporting thread; of a workload's changes only the newest is kept.

    Order is kept where it matters: a listing or a failure is handed over where it arrived, and a listing drops
    the changes its stream sent before it (the listing is newer than all of them).
    """

    def __init__(self) -> None:
        self._ready = threading.Condition()
        self._order: deque[WorkloadKey | Listed[HeldWorkload] | StreamFailed] = deque()
        self._latest: dict[WorkloadKey, Changed[HeldWorkload]] = {}

    def put(self, event: StreamEvent[HeldWorkload]) -> None:
        with self._ready:
            if isinstance(event, Changed):
                key = event.item.key
                if key not in self._latest:
                    self._order.append(key)
                self._latest[key] = event
            else:
                if isinstance(event, Listed):
                    for key in [k for k, change in self._latest.items() if change.stream == event.stream]:
                        del self._latest[key]  # its place in the order is skipped
                self._order.append(event)
            self._ready.notify()

    def get(self, timeout: float) -> StreamEvent[HeldWorkload] | None:
        with self._ready:
            deadline = time.monotonic() + timeout
            while True:
                while self._order:
                    head = self._order.popleft()
                    if not isinstance(head, tuple):
                        return head
                    change = self._latest.pop(head, None)
                    if change is not None:
                        return change
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._ready.wait(remaining):
                    return None


class KubernetesFailureWatcher:
    """`bot.ports.FailureWatcher` for `backend: kubernetes` watch scopes, over the contexts of `clients`."""

    def __init__(
        self,
        clients: KubernetesClients,
        *,
        pod_interval: float = POD_INTERVAL_SECONDS,
        page_size: int = PAGE_SIZE,
        window_seconds: int = WATCH_WINDOW_SECONDS,
        backoff: Backoff = DEFAULT_BACKOFF,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clients = clients
        self._pod_interval = pod_interval
        self._page_size = page_size
        self._window = window_seconds
        self._backoff = backoff
        self._now = now
        self._monotonic = monotonic

    def watch(self, scope: WatchScope, report: Callable[[Sighting], None], stop: threading.Event) -> None:
        if not isinstance(scope, KubernetesWatch):
            raise UnknownTarget(f"the Kubernetes watcher cannot watch a `{scope.backend}` scope")
        with translating_errors(f"connecting to kube context `{scope.kube_context or 'default'}`"):
            api = self._clients.api(scope.kube_context)
        events = _Inbox()
        state = _Scope(location=scope.kube_context or "default")
        streams = list(self._streams(api, scope, events))
        state.streams = {stream.name: stream_scope for stream, stream_scope in streams}
        threads = [stream.start() for stream, _ in streams]
        try:
            self._loop(k8s.CoreV1Api(api), k8s.AppsV1Api(api), state, events, report, stop)
        finally:
            for stream, _ in streams:
                stream.close()
            for thread in threads:
                thread.join(timeout=5)

    def _streams(
        self, api: k8s.ApiClient, scope: KubernetesWatch, events: _Inbox
    ) -> Iterator[tuple[CollectionStream[HeldWorkload], tuple[WorkloadKind, str]]]:
        apps = k8s.AppsV1Api(api)
        cluster_wide = {
            WorkloadKind.DEPLOYMENT: apps.list_deployment_for_all_namespaces,
            WorkloadKind.DAEMONSET: apps.list_daemon_set_for_all_namespaces,
            WorkloadKind.STATEFULSET: apps.list_stateful_set_for_all_namespaces,
        }
        namespaced = {
            WorkloadKind.DEPLOYMENT: apps.list_namespaced_deployment,
            WorkloadKind.DAEMONSET: apps.list_namespaced_daemon_set,
            WorkloadKind.STATEFULSET: apps.list_namespaced_stateful_set,
        }
        options: dict[str, Any] = {
            "page_size": self._page_size,
            "window_seconds": self._window,
            "backoff": self._backoff,
        }
        for kind in WorkloadKind:
            if scope.namespaces == ("*",):
                stream = CollectionStream(
                    _stream_name(kind, "*"), cluster_wide[kind], project_workload(kind), events, **options
                )
                yield stream, (kind, "*")
                continue
            for namespace in scope.namespaces:
                stream = CollectionStream(
                    _stream_name(kind, namespace),
                    namespaced[kind],
                    project_workload(kind),
                    events,
                    args=(namespace,),
                    **options,
                )
                yield stream, (kind, namespace)

    # -- the reporting loop ------------------------------------------------------------------------------------

    def _loop(
        self,
        core: k8s.CoreV1Api,
        apps: k8s.AppsV1Api,
        state: _Scope,
        events: _Inbox,
        report: Callable[[Sighting], None],
        stop: threading.Event,
    ) -> None:
        pods = _PodLister(core, apps, self._pod_interval, self._monotonic)
        while not stop.is_set():
            # Everything pending first (workload changes carry the signals that need no pods, such as a passed
            # deadline), for a bounded time; then a turn of pod listings.
            wait = min(0.5, self._pod_interval)
            turn_ends = self._monotonic() + EVENT_BUDGET
            while (event := events.get(timeout=wait)) is not None and not stop.is_set():
                if isinstance(event, StreamFailed):
                    raise event.error
                if isinstance(event, Listed):
                    self._relisted(state, event, pods, report)
                else:
                    self._changed(state, event, pods, report)
                if self._monotonic() >= turn_ends:
                    break
                wait = 0.0
            # Selected workloads whose pods are due are listed again and reported, changed or not: the oldest
            # first, for a bounded time, so the inbox is never starved by pod listings.
            budget_ends = self._monotonic() + POD_LISTING_BUDGET
            for key in pods.due(state):
                held = state.held.get(key)
                if held is None or stop.is_set():
                    continue
                pods.refresh(state, held)
                report(self._sighting(state, held, pods))
                if self._monotonic() >= budget_ends:
                    break

    def _relisted(
        self,
        state: _Scope,
        listed: Listed[HeldWorkload],
        pods: _PodLister,
        report: Callable[[Sighting], None],
    ) -> None:
        kind, namespace = state.streams[listed.stream]
        fresh = {held.key: held for held in listed.items}
        gone = [
            key
            for key in state.held
            if key[0] is kind and (namespace == "*" or key[1] == namespace) and key not in fresh
        ]
        log.info("workloads listed", kind=kind.value, namespace=namespace, count=len(fresh), gone=len(gone))
        started = self._monotonic()
        for key in gone:
            held = state.held.pop(key)
            state.pods.pop(key, None)
            report(self._sighting(state, held, pods, deleted=True, resync=True))
        for key, held in fresh.items():
            state.held[key] = held
            report(self._sighting(state, held, pods, resync=True))
        # The listing is judged now: the moment a new holder knows its context (the bench's cold sync).
        log.info(
            "workloads judged",
            kind=kind.value,
            namespace=namespace,
            count=len(fresh),
            seconds=round(self._monotonic() - started, 2),
        )

    def _changed(
        self, state: _Scope, changed: Changed[HeldWorkload], pods: _PodLister, report: Callable[[Sighting], None]
    ) -> None:
        held = changed.item
        if changed.is_deleted:
            state.held.pop(held.key, None)
            state.pods.pop(held.key, None)
            report(self._sighting(state, held, pods, deleted=True))
            return
        state.held[held.key] = held
        report(self._sighting(state, held, pods))

    def _sighting(
        self, state: _Scope, held: HeldWorkload, pods: _PodLister, *, deleted: bool = False, resync: bool = False
    ) -> Sighting:
        snapshot = held.snapshot
        listed: tuple[PodSnapshot, ...] = ()
        if not deleted and needs_pods(snapshot):
            snapshot, listed = pods.known(state, held)
        else:
            # Healthy (or gone): its pods say nothing any more, so they are not kept.
            state.pods.pop(held.key, None)
        return Sighting(
            location=state.location,
            seen_at=self._now(),
            workload=snapshot,
            pods=listed,
            deleted=deleted,
            resync=resync,
        )


class _PodLister:
    """Lists the update revision's pods of selected workloads, each at most once per `interval`."""

    def __init__(
        self, core: k8s.CoreV1Api, apps: k8s.AppsV1Api, interval: float, monotonic: Callable[[], float]
    ) -> None:
        self._core = core
        self._apps = apps
        self._interval = interval
        self._monotonic = monotonic

    def due(self, state: _Scope) -> list[WorkloadKey]:
        """Selected workloads whose pods are due, the longest-waiting first."""
        now = self._monotonic()
        due = [
            (watched.listed_at, key) for key, watched in state.pods.items() if now - watched.listed_at >= self._interval
        ]
        return [key for _, key in sorted(due)]

    def known(self, state: _Scope, held: HeldWorkload) -> tuple[WorkloadSnapshot, tuple[PodSnapshot, ...]]:
        """The snapshot (a Deployment's with its update hash) and the pods last listed; no I/O.

        A workload newly selected, or a Deployment whose revision changed, is due at once (what was listed for an
        older revision says nothing about this one).
        """
        snapshot = held.snapshot
        watched = state.pods.get(held.key)
        if watched is None:
            watched = state.pods[held.key] = _PodWatch(listed_at=float("-inf"), pods=())
        if snapshot.kind is WorkloadKind.DEPLOYMENT:
            if watched.hash_revision != snapshot.revision:
                watched.listed_at, watched.pods, watched.update_hash = float("-inf"), (), None
            snapshot = snapshot.model_copy(update={"update_hash": watched.update_hash})
        return snapshot, watched.pods

    def refresh(self, state: _Scope, held: HeldWorkload) -> None:
        """List the update revision's pods again (and a Deployment's update hash, until it is known)."""
        snapshot, _ = self.known(state, held)
        watched = state.pods[held.key]
        if snapshot.kind is WorkloadKind.DEPLOYMENT and (
            watched.hash_revision != snapshot.revision or watched.update_hash is None
        ):
            watched.update_hash = self._deployment_hash(held)
            watched.hash_revision = snapshot.revision
            snapshot = snapshot.model_copy(update={"update_hash": watched.update_hash})
        watched.pods = self._list_pods(held, snapshot)
        watched.listed_at = self._monotonic()

    def _deployment_hash(self, held: HeldWorkload) -> str | None:
        """The pod-template-hash of the Deployment's ReplicaSet for its current revision (the newest)."""
        snapshot = held.snapshot
        with translating_errors(f"listing the ReplicaSets of deployment/{snapshot.name}"):
            listing = _json(
                self._apps.list_namespaced_replica_set(
                    snapshot.namespace,
                    label_selector=held.selector,
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

    def _list_pods(self, held: HeldWorkload, snapshot: WorkloadSnapshot) -> tuple[PodSnapshot, ...]:
        selector = _update_revision_selector(held.selector, snapshot)
        if selector is None:
            return ()  # the update revision has no ReplicaSet yet, hence no pods
        with translating_errors(f"listing the pods of {snapshot.kind.value.lower()}/{snapshot.name}"):
            listing = _json(
                self._core.list_namespaced_pod(
                    snapshot.namespace,
                    label_selector=selector,
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


def _stream_name(kind: WorkloadKind, namespace: str) -> str:
    """Also the words in its errors: "listing StatefulSets in all namespaces: …"."""
    where = "all namespaces" if namespace == "*" else f"namespace `{namespace}`"
    return f"{kind.value}s in {where}"


def _json(response: Any) -> dict[str, Any]:
    parsed = json.loads(response.data)
    return parsed if isinstance(parsed, dict) else {}
