"""Controller runtime: a deduplicating work queue with delayed items, owner indexes fed by store listeners,
and worker threads.

Keys are (kind, namespace, name). Kinds are the controller names ("Deployment", "ReplicaSet", "DaemonSet",
"StatefulSet"), "Kubelet" for pods and "GC" (namespace "", name = owner uid) for garbage collection.
The store calls the listener synchronously under its lock after every commit, so the listener only updates
indexes and enqueues; all reads and writes happen on the worker threads.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from sandbox.kubesim.controllers.util import (
    DAEMONSETS,
    DEPLOYMENTS,
    EVENTS,
    JOBS,
    PODS,
    REPLICASETS,
    STATEFULSETS,
    controller_ref,
    pod_is_active,
)
from sandbox.kubesim.resources import RESOURCES, ResourceKey
from sandbox.kubesim.selectors import label_selector_from_dict, labels_match
from sandbox.kubesim.store import ApiError, Store, clone

log = logging.getLogger("kubesim.controllers")

Key = tuple[str, str, str]
ObjKey = tuple[ResourceKey, str, str]
Handler = Callable[[str, str], None]

# Resources whose own changes trigger a sync of the controller with the same name.
CONTROLLED: dict[ResourceKey, str] = {
    DEPLOYMENTS: "Deployment",
    REPLICASETS: "ReplicaSet",
    DAEMONSETS: "DaemonSet",
    STATEFULSETS: "StatefulSet",
    JOBS: "Job",
}
MAX_RETRIES = 15
# Kinds a controller adopts by label selector when they have no controller (ClaimReplicaSets/ClaimPods).
ADOPTABLE: frozenset[ResourceKey] = frozenset({REPLICASETS, PODS})


class Requeue(Exception):
    """Raised by a handler to have its key processed again after `delay` seconds."""

    def __init__(self, delay: float = 0.0) -> None:
        super().__init__(f"requeue after {delay}s")
        self.delay = delay


class WorkQueue:
    """client-go's workqueue semantics: a key is queued at most once, and never processed by two workers
    at the same time (a key added while being processed is re-queued when the worker is done)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._queue: deque[Key] = deque()
        self._queued: set[Key] = set()
        self._processing: set[Key] = set()
        self._dirty: set[Key] = set()
        self._timers: list[tuple[float, int, Key]] = []
        self._seq = itertools.count()
        self._stopped = False

    def add(self, key: Key) -> None:
        with self._cond:
            self._add_locked(key)

    def _add_locked(self, key: Key) -> None:
        if key in self._processing:
            self._dirty.add(key)
            return
        if key in self._queued:
            return
        self._queued.add(key)
        self._queue.append(key)
        self._cond.notify()

    def add_after(self, key: Key, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        with self._cond:
            heapq.heappush(self._timers, (time.monotonic() + delay, next(self._seq), key))
            self._cond.notify()

    def get(self) -> Key | None:
        """Block until a key is ready; None once stopped."""
        with self._cond:
            while True:
                if self._stopped:
                    return None
                now = time.monotonic()
                while self._timers and self._timers[0][0] <= now:
                    _, _, key = heapq.heappop(self._timers)
                    self._add_locked(key)
                if self._queue:
                    key = self._queue.popleft()
                    self._queued.discard(key)
                    self._processing.add(key)
                    return key
                timeout = self._timers[0][0] - now if self._timers else None
                self._cond.wait(timeout)

    def done(self, key: Key) -> None:
        with self._cond:
            self._processing.discard(key)
            if key in self._dirty:
                self._dirty.discard(key)
                self._add_locked(key)
            elif not self._queue and not self._processing:
                self._cond.notify_all()

    def idle(self) -> bool:
        with self._cond:
            return not self._queue and not self._processing

    def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing is queued or running (delayed timers may still be pending)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._queue or self._processing:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.05))
            return True

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()


class OwnerIndex:
    """uid -> object key for every watched object, and owner uid -> dependents."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.live: dict[str, ObjKey] = {}
        self.dependents: dict[str, set[ObjKey]] = {}
        self._owners_of: dict[ObjKey, tuple[str, ...]] = {}
        # (resource, namespace) -> names of ReplicaSets/pods without a controller, for adoption by selector.
        self.orphans: dict[tuple[ResourceKey, str], set[str]] = {}

    def apply(self, etype: str, key: ObjKey, uid: str, owner_uids: tuple[str, ...], orphan: bool = False) -> list[str]:
        """Record a change; returns owner uids that are not (or no longer) live, for the GC to look at."""
        with self.lock:
            res, ns, name = key
            if orphan and etype != "DELETED":
                self.orphans.setdefault((res, ns), set()).add(name)
            else:
                names = self.orphans.get((res, ns))
                if names is not None:
                    names.discard(name)
                    if not names:
                        del self.orphans[(res, ns)]
            old = self._owners_of.get(key, ())
            if etype == "DELETED":
                if self.live.get(uid) == key:
                    del self.live[uid]
                self._owners_of.pop(key, None)
                owner_uids = ()
            else:
                if uid:
                    self.live[uid] = key
                if owner_uids:
                    self._owners_of[key] = owner_uids
                else:
                    self._owners_of.pop(key, None)
            if old != owner_uids:
                for o in old:
                    if o not in owner_uids:
                        deps = self.dependents.get(o)
                        if deps is not None:
                            deps.discard(key)
                            if not deps:
                                del self.dependents[o]
                for o in owner_uids:
                    self.dependents.setdefault(o, set()).add(key)
            return [o for o in owner_uids if o not in self.live]

    def orphans_in(self, res: ResourceKey, ns: str) -> list[str]:
        with self.lock:
            return sorted(self.orphans.get((res, ns), ()))

    def dependents_of(self, uid: str, res: ResourceKey | None = None) -> list[ObjKey]:
        with self.lock:
            deps = self.dependents.get(uid)
            if not deps:
                return []
            return [k for k in deps if res is None or k[0] == res]

    def is_live(self, uid: str) -> bool:
        with self.lock:
            return uid in self.live


class Runtime:
    """Owns the queue, the index and the worker threads; controllers register handlers by kind."""

    def __init__(self, store: Store, *, workers: int = 1) -> None:
        self.store = store
        self.queue = WorkQueue()
        self.index = OwnerIndex()
        self.handlers: dict[str, Handler] = {}
        self._workers = workers
        self._threads: list[threading.Thread] = []
        self._failures: dict[Key, int] = {}
        # Propagation policy ("Orphan"/"Foreground") of deleted owners, read by the garbage collector.
        self.deleted_policy: dict[str, str] = {}

    # ------------------------------------------------------------------ wiring

    def register(self, kind: str, handler: Handler) -> None:
        self.handlers[kind] = handler

    def start(self) -> None:
        with self.store.lock:
            # Index what is already stored, then listen; both under the lock so no change slips between.
            # Every kind, not just the controlled ones: the GC must know which owner uids are alive.
            for res in [r.key for r in RESOURCES if r.key != EVENTS]:
                items, _ = self.store.list_refs(res)
                for obj in items:
                    self.on_event("ADDED", res, obj)
            self.store.add_listener(self.on_event)
        for i in range(self._workers):
            t = threading.Thread(target=self._run, name=f"kubesim-controller-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self.store.remove_listener(self.on_event)
        self.queue.stop()
        for t in self._threads:
            t.join(timeout=5)

    # ------------------------------------------------------------------ events

    def on_event(self, etype: str, res: ResourceKey, obj: dict[str, Any]) -> None:
        if res == EVENTS:
            return
        meta = obj.get("metadata") or {}
        ns = meta.get("namespace", "") or ""
        name = meta.get("name", "")
        uid = meta.get("uid", "")
        refs = meta.get("ownerReferences") or ()
        owner_uids = tuple(r["uid"] for r in refs if r.get("uid"))
        orphan = res in ADOPTABLE and not any(r.get("controller") for r in refs)
        dangling = self.index.apply(etype, (res, ns, name), uid, owner_uids, orphan)
        queue = self.queue
        kind = CONTROLLED.get(res)
        if kind is not None and kind in self.handlers:
            queue.add((kind, ns, name))
        for ref in refs:
            owner_kind = ref.get("kind", "")
            if ref.get("controller") and owner_kind in self.handlers:
                queue.add((owner_kind, ns, ref.get("name", "")))
        if res == PODS and "Kubelet" in self.handlers:
            queue.add(("Kubelet", ns, name))
        if "GC" in self.handlers:
            if etype == "DELETED":
                finalizers = meta.get("finalizers") or ()
                if "orphan" in finalizers:
                    self.deleted_policy[uid] = "Orphan"
                elif "foregroundDeletion" in finalizers:
                    self.deleted_policy[uid] = "Foreground"
            if (etype == "DELETED" and self.index.dependents_of(uid)) or (
                meta.get("deletionTimestamp") and {"foregroundDeletion", "orphan"} & set(meta.get("finalizers") or ())
            ):
                queue.add(("GC", "", uid))
            elif etype == "ADDED":
                for owner in dangling:
                    queue.add(("GC", "", owner))

    # ------------------------------------------------------------------ helpers for controllers

    def owned(self, owner_uid: str, res: ResourceKey) -> list[dict[str, Any]]:
        """Committed objects of type `res` controlled by `owner_uid` (read-only references)."""
        out = []
        for r, ns, name in self.index.dependents_of(owner_uid, res):
            try:
                obj = self.store.get_ref(r, ns, name)
            except ApiError:
                continue
            for ref in obj["metadata"].get("ownerReferences") or ():
                if ref.get("controller") and ref.get("uid") == owner_uid:
                    out.append(obj)
                    break
        return out

    def adopt(self, owner: dict[str, Any], res: ResourceKey, selector: dict[str, Any]) -> int:
        """ClaimObjects' adoption half: give controller-less objects matching `selector` a controllerRef to
        `owner`. Returns how many were adopted."""
        meta = owner["metadata"]
        ns = meta.get("namespace", "")
        orphans = self.index.orphans_in(res, ns)
        if not orphans or meta.get("deletionTimestamp") or not selector:
            return 0
        wanted = label_selector_from_dict(selector)
        adopted = 0
        for name in orphans:
            obj = self.get_ref(res, ns, name)
            if obj is None or (res == PODS and not pod_is_active(obj)) or obj["metadata"].get("deletionTimestamp"):
                continue
            if any(r.get("controller") for r in obj["metadata"].get("ownerReferences") or ()):
                continue
            if not labels_match(wanted, obj["metadata"].get("labels")):
                continue
            claimed = clone(obj)
            claimed["metadata"]["ownerReferences"] = [
                *(obj["metadata"].get("ownerReferences") or []),
                controller_ref(owner),
            ]
            self.store.update(res, claimed)
            adopted += 1
        return adopted

    def get_ref(self, res: ResourceKey, ns: str, name: str) -> dict[str, Any] | None:
        try:
            return self.store.get_ref(res, ns, name)
        except ApiError as exc:
            if exc.code == 404:
                return None
            raise

    # ------------------------------------------------------------------ workers

    def _retry(self, key: Key, base: float, cap: float) -> None:
        """Rate-limited requeue; like the real controllers (maxRetries = 15) a key that keeps failing is
        dropped until its objects change again."""
        n = self._failures.get(key, 0) + 1
        if n > MAX_RETRIES:
            self._failures.pop(key, None)
            log.warning("dropping %s out of the queue after %d failed syncs", key, MAX_RETRIES)
            return
        self._failures[key] = n
        self.queue.add_after(key, min(base * 2**n, cap))

    def _run(self) -> None:
        while True:
            key = self.queue.get()
            if key is None:
                return
            try:
                handler = self.handlers.get(key[0])
                if handler is not None:
                    handler(key[1], key[2])
                self._failures.pop(key, None)
            except Requeue as rq:
                self.queue.add_after(key, rq.delay)
            except ApiError as exc:
                # Conflicts and races with other writers: retry with a short exponential back-off.
                if exc.code not in (404, 409):
                    log.warning("sync %s failed: %s %s", key, exc.code, exc.message)
                self._retry(key, 0.005, 2.0)
            except Exception:
                log.exception("sync %s crashed", key)
                self._retry(key, 0.05, 5.0)
            finally:
                self.queue.done(key)
