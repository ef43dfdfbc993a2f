"""The Kubernetes failure watcher: Deployments, DaemonSets and StatefulSets of one context, as `Sighting`s.

Implements `bot.ports.FailureWatcher` for `KubernetesWatch` scopes. Per kind there is one list+watch
(`kubernetes_stream.CollectionStream`): cluster-wide for `namespaces: ["*"]`, else one per listed namespace.
Each object is projected at once into a `WorkloadSnapshot` (plus its pod selector); nothing else is kept.

Pods are never watched. For the workloads `needs_pods` selects (mid-rollout, or short of available replicas)
the watcher lists the pods of the update revision only (the workload's selector plus the revision's hash
label), at most every `pod_interval` while they stay selected, and reports each listing, so the flow's holds
(`failing_for`) mature even when the workload object itself does not change. A Deployment's update hash comes
from its newest ReplicaSet, listed only then. Once a workload is healthy again its pods are forgotten.

Every stream's events go through one inbox to the thread that called `watch`, which alone calls `report`: the
flow sees one ordered series of sightings. The inbox keeps only the newest state of each workload, so a burst
of changes (10,000 pods settling after a relist) costs one sighting per workload, never a growing backlog. Pod
listings are done by `kubernetes_pod_lister.PodLister` on a thread of its own and arrive in the same inbox, so a
thousand workloads mid-rollout never hold back the sighting of a Deployment whose deadline just passed.
Decisions are the core's (`bot.core.detection`); this module only looks.

Projections are slim (about 2 KB per workload): conditions the rules do not read are dropped before parsing.
"""

from __future__ import annotations

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
from bot.backends.kubernetes_pod_lister import PodLister, PodsListed
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
from bot.core.detection import PodSnapshot, Sighting, WorkloadSnapshot, needs_pods
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
class _Scope:
    """The state of one `watch` call (one context): snapshots by key, and the pods of the selected ones."""

    location: str
    # Which kind and namespace ("*": all) each stream speaks for, by stream name.
    streams: dict[str, tuple[WorkloadKind, str]] = field(default_factory=dict)
    held: dict[WorkloadKey, HeldWorkload] = field(default_factory=dict)
    # The last pod listing of each selected workload.
    pods: dict[WorkloadKey, PodsListed] = field(default_factory=dict)


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
        self._order: deque[WorkloadKey | Listed[HeldWorkload] | StreamFailed | PodsListed] = deque()
        self._latest: dict[WorkloadKey, Changed[HeldWorkload]] = {}

    def put(self, event: StreamEvent[HeldWorkload] | PodsListed) -> None:
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

    def get(self, timeout: float) -> StreamEvent[HeldWorkload] | PodsListed | None:
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
        lister = PodLister(
            k8s.CoreV1Api(api), k8s.AppsV1Api(api), events, interval=self._pod_interval, monotonic=self._monotonic
        )
        done = threading.Event()
        pod_thread = threading.Thread(target=lister.run, args=(done,), name=f"watch-pods-{state.location}", daemon=True)
        pod_thread.start()
        try:
            self._loop(lister, state, events, report, stop)
        finally:
            done.set()
            for stream, _ in streams:
                stream.close()
            for thread in [*threads, pod_thread]:
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
        lister: PodLister,
        state: _Scope,
        events: _Inbox,
        report: Callable[[Sighting], None],
        stop: threading.Event,
    ) -> None:
        while not stop.is_set():
            event = events.get(timeout=0.5)
            if event is None or stop.is_set():
                continue
            if isinstance(event, StreamFailed):
                raise event.error
            if isinstance(event, Listed):
                self._relisted(state, event, lister, report)
            elif isinstance(event, PodsListed):
                self._pods_listed(state, event, lister, report)
            else:
                self._changed(state, event, lister, report)

    def _relisted(
        self,
        state: _Scope,
        listed: Listed[HeldWorkload],
        lister: PodLister,
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
            report(self._sighting(state, held, lister, deleted=True, resync=True))
        for key, held in fresh.items():
            state.held[key] = held
            report(self._sighting(state, held, lister, resync=True))
        # The listing is judged now: the moment a new holder knows its context (the bench's cold sync).
        log.info(
            "workloads judged",
            kind=kind.value,
            namespace=namespace,
            count=len(fresh),
            seconds=round(self._monotonic() - started, 2),
        )

    def _pods_listed(
        self, state: _Scope, listed: PodsListed, lister: PodLister, report: Callable[[Sighting], None]
    ) -> None:
        """A pod listing is reported even when nothing changed: the flow's holds (`failing_for`) mature on it."""
        held = state.held.get(listed.key)
        if held is None or not lister.is_current(listed):
            return  # gone, healthy again, or a newer revision since the listing started
        state.pods[listed.key] = listed
        report(self._sighting(state, held, lister))

    def _changed(
        self, state: _Scope, changed: Changed[HeldWorkload], lister: PodLister, report: Callable[[Sighting], None]
    ) -> None:
        held = changed.item
        if changed.is_deleted:
            state.held.pop(held.key, None)
            report(self._sighting(state, held, lister, deleted=True))
            return
        state.held[held.key] = held
        report(self._sighting(state, held, lister))

    def _sighting(
        self, state: _Scope, held: HeldWorkload, lister: PodLister, *, deleted: bool = False, resync: bool = False
    ) -> Sighting:
        snapshot = held.snapshot
        listed: tuple[PodSnapshot, ...] = ()
        if not deleted and needs_pods(snapshot):
            lister.select(held.key, snapshot, held.selector)
            known = state.pods.get(held.key)
            if known is not None and known.snapshot.revision_key == snapshot.revision_key:
                listed = known.pods
                if snapshot.kind is WorkloadKind.DEPLOYMENT:
                    snapshot = snapshot.model_copy(update={"update_hash": known.snapshot.update_hash})
        else:
            # Healthy (or gone): its pods say nothing any more, so they are neither listed nor kept.
            lister.drop(held.key)
            state.pods.pop(held.key, None)
        return Sighting(
            location=state.location,
            seen_at=self._now(),
            workload=snapshot,
            pods=listed,
            deleted=deleted,
            resync=resync,
        )


def _stream_name(kind: WorkloadKind, namespace: str) -> str:
    """Also the words in its errors: "listing StatefulSets in all namespaces: …"."""
    where = "all namespaces" if namespace == "*" else f"namespace `{namespace}`"
    return f"{kind.value}s in {where}"
