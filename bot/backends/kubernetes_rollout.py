"""Following workload rollouts to their end: watches of each workload and its pods, read with kubectl's rules.

`RolloutObserver` keeps the latest object of one workload and of its pods (two watches, reconnecting and
resuming from the last resourceVersion) and signals each change on a queue; `follow_rollouts` turns the changes
of one or more observers into `RolloutStatus`es, with `kubectl rollout status`'s verdicts from
`kubernetes_interpret`. The Kubernetes backend follows one workload this way, the Helm backend every workload of
a release's manifest.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from typing import Any

import urllib3
from kubernetes import client as k8s
from kubernetes import watch as k8s_watch
from kubernetes.client.exceptions import ApiException

from bot.backends import kubernetes_interpret as rules
from bot.backends.kubernetes_clients import WorkloadRef, _raw, _translate_api_exception
from bot.core import messages
from bot.core.catalog import WorkloadKind
from bot.core.rollouts import RolloutPhase, RolloutStatus, UnhealthyUnit

# Each watch request ends after this long and is reopened from the last resourceVersion, so a silently dropped
# connection is noticed within this bound.
WATCH_WINDOW_SECONDS = 30
# Pause before reopening a watch after a transport error.
WATCH_RECONNECT_DELAY_SECONDS = 0.5


def _with_pods(reason: str, stuck: Sequence[UnhealthyUnit]) -> str:
    # A rollout of 50 replicas ends with one line: its pods counted per reason, never listed.
    return f"{reason}; {messages.stuck_pods_text(stuck)}" if stuck else reason


def _human(duration: timedelta) -> str:
    seconds = int(duration.total_seconds())
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds // 60}m"
    return f"{seconds}s"


def follow_rollouts(
    observers: Sequence[RolloutObserver],
    deadline: float,
    timeout: timedelta,
    monotonic: Callable[[], float],
    *,
    is_external_done: Callable[[], bool] = lambda: True,
    external_failure: Callable[[], str | None] = lambda: None,
    external_name: str = "the rollout to be confirmed",
) -> Iterator[RolloutStatus]:
    """Turn the observers' changes into RolloutStatus, with kubectl rollout status's rules for each workload.

    Finishes SUCCEEDED when every workload rolled out (and `is_external_done`, e.g. helm exited; it is asked only
    then), FAILED on a progress deadline, a deleted workload, an external failure or the timeout; stuck pods are
    reported once each, as soon as they appear. A timeout after the workloads rolled out says it waited for
    `external_name`, never just "timed out: … successfully rolled out".
    """
    changes = observers[0].changes if observers else None
    last_summary = ""
    rolled_out = False
    reported_stuck: set[tuple[str, str]] = set()
    while True:
        remaining = deadline - monotonic()
        if remaining <= 0:
            yield _timed_out(observers, timeout, last_summary, external_name if rolled_out else None)
            return
        if changes is None:
            change: set[RolloutObserver] | BaseException | None = None
            time.sleep(min(remaining, 0.2))
        else:
            change = next_change(changes, min(remaining, 0.5))
        if isinstance(change, BaseException):
            raise change
        failure = external_failure()
        if failure:
            stuck = [unit for observer in observers for unit in rules.unhealthy_pods(observer.pods())]
            yield RolloutStatus(phase=RolloutPhase.FAILED, summary=failure, reason=_with_pods(failure, stuck))
            return
        if any(observer.workload is None and not observer.is_deleted for observer in observers):
            continue
        deleted = [observer for observer in observers if observer.is_deleted]
        if deleted:
            reason = f"{deleted[0].ref.label} was deleted during the rollback"
            yield RolloutStatus(phase=RolloutPhase.FAILED, summary=reason, reason=reason)
            return
        verdicts = [
            (observer, rules.rollout_verdict(observer.workload or {}, observer.ref.kind)) for observer in observers
        ]
        ready = updated = desired = 0
        for observer, _ in verdicts:
            counts = rules.replica_counts(observer.workload or {}, observer.ref.kind)
            ready, updated, desired = ready + counts[0], updated + counts[1], desired + counts[2]
        stuck = [unit for observer in observers for unit in rules.unhealthy_pods(observer.pods())]
        new_stuck = [unit for unit in stuck if (unit.name, unit.reason) not in reported_stuck]
        reported_stuck.update((unit.name, unit.reason) for unit in stuck)
        failed = [verdict.failure for _, verdict in verdicts if verdict.failure]
        summary = "; ".join(verdict.message for _, verdict in verdicts)
        token = ",".join(observer.resource_version or "" for observer in observers)
        if failed:
            yield RolloutStatus(
                phase=RolloutPhase.FAILED,
                summary=summary,
                ready=ready,
                desired=desired,
                updated=updated,
                unhealthy=tuple(stuck),
                reason=_with_pods("; ".join(failed), stuck),
                resume_token=token,
            )
            return
        rolled_out = all(verdict.is_done for _, verdict in verdicts)
        if rolled_out and is_external_done():
            yield RolloutStatus(
                phase=RolloutPhase.SUCCEEDED,
                summary=summary,
                ready=ready,
                desired=desired,
                updated=updated,
                resume_token=token,
            )
            return
        if summary != last_summary or new_stuck:
            last_summary = summary
            yield RolloutStatus(
                phase=RolloutPhase.PROGRESSING,
                summary=summary,
                ready=ready,
                desired=desired,
                updated=updated,
                unhealthy=tuple(stuck),
                events=tuple(f"pod {unit.name}: {unit.reason}" for unit in new_stuck),
                resume_token=token,
            )


def _timed_out(
    observers: Sequence[RolloutObserver], timeout: timedelta, last_summary: str, waiting_for: str | None = None
) -> RolloutStatus:
    stuck = [unit for observer in observers for unit in rules.unhealthy_pods(observer.pods())]
    ready = updated = desired = 0
    for observer in observers:
        if observer.workload:
            counts = rules.replica_counts(observer.workload, observer.ref.kind)
            ready, updated, desired = ready + counts[0], updated + counts[1], desired + counts[2]
    seen = last_summary or "no progress observed"
    if waiting_for:
        reason = f"timed out after {_human(timeout)} waiting for {waiting_for}; the workloads rolled out: {seen}"
    else:
        reason = f"timed out after {_human(timeout)}: {seen}"
    reason = _with_pods(reason, stuck)
    return RolloutStatus(
        phase=RolloutPhase.FAILED,
        summary=f"timed out after {_human(timeout)}",
        ready=ready,
        desired=desired,
        updated=updated,
        unhealthy=tuple(stuck),
        reason=reason,
    )


class RolloutObserver:
    """Two watches (a workload by name, its pods by selector) that keep the latest objects and signal changes.

    The watches reconnect on errors and resume from the last resourceVersion they saw; a 410 Gone makes them
    list again. Nothing here decides anything. Several observers may share one `changes` queue (a Helm release
    has several workloads); each change is signalled as the observer itself.
    """

    def __init__(
        self,
        api: k8s.ApiClient,
        workload: WorkloadRef,
        *,
        pod_selector: str | None,
        changes: queue.Queue[RolloutObserver | BaseException] | None = None,
    ) -> None:
        self._api = api
        self.ref = workload
        self._pod_selector = pod_selector
        self.changes: queue.Queue[RolloutObserver | BaseException] = changes if changes is not None else queue.Queue()
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._watches: list[k8s_watch.Watch] = []
        self.workload: dict[str, Any] | None = None
        self.is_deleted = False
        self.resource_version: str | None = None
        self._pods: dict[str, dict[str, Any]] = {}

    def start(self) -> None:
        apps = k8s.AppsV1Api(self._api)
        listers: dict[WorkloadKind, Callable[..., Any]] = {
            WorkloadKind.DEPLOYMENT: apps.list_namespaced_deployment,
            WorkloadKind.DAEMONSET: apps.list_namespaced_daemon_set,
            WorkloadKind.STATEFULSET: apps.list_namespaced_stateful_set,
        }
        self._spawn(listers[self.ref.kind], {"field_selector": f"metadata.name={self.ref.name}"}, self._on_workload)
        if self._pod_selector is not None:
            core = k8s.CoreV1Api(self._api)
            self._spawn(core.list_namespaced_pod, {"label_selector": self._pod_selector}, self._on_pod)

    def _spawn(
        self, lister: Callable[..., Any], selectors: dict[str, str], on_event: Callable[[str, Any], None]
    ) -> None:
        thread = threading.Thread(
            target=self._run, args=(lister, selectors, on_event), name=f"k8s-watch-{self.ref.name}", daemon=True
        )
        thread.start()

    def _run(self, lister: Callable[..., Any], selectors: dict[str, str], on_event: Callable[[str, Any], None]) -> None:
        resource_version: str | None = None
        while not self._stopped.is_set():
            try:
                if resource_version is None:
                    listing = _raw(lister(self.ref.namespace, _preload_content=False, **selectors))
                    for item in listing.get("items") or ():
                        on_event("ADDED", item)
                    resource_version = (listing.get("metadata") or {}).get("resourceVersion")
                    self.changes.put(self)
                watcher = k8s_watch.Watch()
                with self._lock:
                    self._watches.append(watcher)
                for event in watcher.stream(
                    lister,
                    self.ref.namespace,
                    resource_version=resource_version,
                    timeout_seconds=WATCH_WINDOW_SECONDS,
                    allow_watch_bookmarks=True,
                    **selectors,
                ):
                    if self._stopped.is_set():
                        return
                    raw = event.get("raw_object") or {}
                    kind = event.get("type")
                    if kind == "ERROR":
                        if raw.get("code") == 410:
                            resource_version = None
                            break
                        raise ApiException(status=raw.get("code"), reason=raw.get("message"))
                    resource_version = rules.metadata(raw).get("resourceVersion") or resource_version
                    if kind != "BOOKMARK":
                        on_event(str(kind), raw)
                with self._lock:
                    if watcher in self._watches:
                        self._watches.remove(watcher)
            except ApiException as exc:
                if self._stopped.is_set():
                    return
                if exc.status == 410:
                    resource_version = None
                    continue
                if exc.status in (401, 403):
                    self.changes.put(_translate_api_exception(exc, f"watching {self.ref.label}"))
                    return
                self._stopped.wait(WATCH_RECONNECT_DELAY_SECONDS)
            except (urllib3.exceptions.HTTPError, OSError, ValueError):
                if self._stopped.is_set():
                    return
                self._stopped.wait(WATCH_RECONNECT_DELAY_SECONDS)

    def _on_workload(self, kind: str, obj: dict[str, Any]) -> None:
        with self._lock:
            if kind == "DELETED":
                self.is_deleted = True
            else:
                self.workload = obj
                self.resource_version = rules.metadata(obj).get("resourceVersion")
        self.changes.put(self)

    def _on_pod(self, kind: str, obj: dict[str, Any]) -> None:
        name = str(rules.metadata(obj).get("name", ""))
        with self._lock:
            if kind == "DELETED":
                self._pods.pop(name, None)
            else:
                self._pods[name] = obj
        self.changes.put(self)

    def pods(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._pods.values())

    def stop(self) -> None:
        self._stopped.set()
        with self._lock:
            watches = list(self._watches)
        for watcher in watches:
            watcher.stop()


def next_change(
    changes: queue.Queue[RolloutObserver | BaseException], timeout: float
) -> set[RolloutObserver] | BaseException | None:
    """Wait for a change, then drain the burst that follows, so one observation covers it."""
    try:
        first = changes.get(timeout=timeout)
    except queue.Empty:
        return None
    if isinstance(first, BaseException):
        return first
    changed = {first}
    while True:
        try:
            following = changes.get_nowait()
        except queue.Empty:
            return changed
        if isinstance(following, BaseException):
            return following
        changed.add(following)
