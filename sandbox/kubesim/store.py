"""In-memory object store with Kubernetes API semantics (resourceVersion, generation, watches).

Stored objects are never mutated in place: every write builds a fresh dict, so watch events and the ring
buffer can share the committed dict, and readers only pay for a copy of what they return.
"""

from __future__ import annotations

import datetime as _dt
import itertools
import queue
import random
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from sandbox.kubesim import defaults
from sandbox.kubesim.resources import Catalog, ResourceInfo, ResourceKey
from sandbox.kubesim.selectors import (
    FieldSelector,
    LabelSelector,
    SelectorError,
    fields_match,
    labels_match,
    parse_field_selector,
    parse_label_selector,
)

__all__ = ["ApiError", "ResourceKey", "Store", "Watch", "clone", "now_rfc3339"]

Listener = Callable[[str, ResourceKey, dict[str, Any]], None]

# Alphabet and length of apimachinery's rand.String, used for generateName suffixes.
_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_EVENT_WINDOW = 20_000


def clone(value: Any) -> Any:
    """Deep copy of JSON-shaped data; several times faster than copy.deepcopy."""
    t = type(value)
    if t is dict:
        return {k: clone(v) for k, v in value.items()}
    if t is list:
        return [clone(v) for v in value]
    return value


def now_rfc3339() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def random_suffix(length: int = 5) -> str:
    return "".join(random.choice(_NAME_ALPHABET) for _ in range(length))


class ApiError(Exception):
    """An API failure carrying the fields of a metav1.Status."""

    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
        }
        if self.details:
            body["details"] = self.details
        body["code"] = self.code
        return body

    @classmethod
    def not_found(cls, info: ResourceInfo, name: str) -> ApiError:
        return cls(
            404,
            "NotFound",
            f'{info.group_resource} "{name}" not found',
            {"name": name, "group": info.group, "kind": info.plural},
        )

    @classmethod
    def namespace_not_found(cls, namespace: str) -> ApiError:
        return cls(404, "NotFound", f'namespaces "{namespace}" not found', {"name": namespace, "kind": "namespaces"})

    @classmethod
    def already_exists(cls, info: ResourceInfo, name: str) -> ApiError:
        return cls(
            409,
            "AlreadyExists",
            f'{info.group_resource} "{name}" already exists',
            {"name": name, "group": info.group, "kind": info.plural},
        )

    @classmethod
    def conflict(cls, info: ResourceInfo, name: str, why: str) -> ApiError:
        return cls(
            409,
            "Conflict",
            f'Operation cannot be fulfilled on {info.group_resource} "{name}": {why}',
            {"name": name, "group": info.group, "kind": info.plural},
        )

    @classmethod
    def invalid(cls, info: ResourceInfo, name: str, causes: list[tuple[str, str]]) -> ApiError:
        """causes: (field, message) pairs, e.g. ("metadata.name", 'Required value: name is required')."""
        kind_str = f"{info.kind}.{info.group}" if info.group else info.kind
        text = ", ".join(f"{f}: {m}" for f, m in causes)
        if len(causes) > 1:
            text = "[" + text + "]"
        return cls(
            422,
            "Invalid",
            f'{kind_str} "{name}" is invalid: {text}',
            {
                "name": name,
                "group": info.group,
                "kind": info.kind,
                "causes": [{"reason": "FieldValueInvalid", "message": m, "field": f} for f, m in causes],
            },
        )

    @classmethod
    def bad_request(cls, message: str) -> ApiError:
        return cls(400, "BadRequest", message)


def _unknown_resource(res: ResourceKey) -> ApiError:
    group, version, plural = res
    gv = f"{group}/{version}" if group else version
    return ApiError(404, "NotFound", f"the server could not find the requested resource ({plural} {gv})")


@dataclass(slots=True)
class _Event:
    rv: int
    type: str
    res: ResourceKey
    namespace: str
    old: dict[str, Any] | None
    new: dict[str, Any]


_STOP = object()


class Watch:
    """A live event stream for one resource type, filtered by namespace and selectors.

    Iterate it for (type, object copy) pairs; `next_raw(timeout)` is the server's non-copying variant.
    BOOKMARK pairs carry only kind, apiVersion and metadata.resourceVersion (plus annotations for the
    initial-events-end marker).
    """

    def __init__(
        self,
        store: Store,
        info: ResourceInfo,
        namespace: str | None,
        label_selector: LabelSelector,
        field_selector: FieldSelector,
    ) -> None:
        self._store = store
        self.info = info
        self.res = info.key
        self.namespace = namespace
        self._labels = label_selector
        self._fields = field_selector
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.stopped = False

    def _matches(self, obj: dict[str, Any] | None) -> bool:
        if obj is None:
            return False
        meta = obj.get("metadata") or {}
        if self.namespace and meta.get("namespace", "") != self.namespace:
            return False
        if self._labels and not labels_match(self._labels, meta.get("labels")):
            return False
        return not self._fields or fields_match(self._fields, obj)

    def _offer(self, event: _Event) -> None:
        """Translate a committed change into what this watcher sees (called under the store lock)."""
        if self.namespace and event.namespace != self.namespace:
            return
        if event.type == "ADDED":
            if self._matches(event.new):
                self._queue.put(("ADDED", event.new))
        elif event.type == "DELETED":
            if self._matches(event.new):
                self._queue.put(("DELETED", event.new))
        else:
            # Selectors are evaluated before and after the change, so an object leaving the selection
            # is seen as DELETED and one entering it as ADDED, as on a real API server.
            was = self._matches(event.old) if (self._labels or self._fields) else True
            now = self._matches(event.new)
            if was and now:
                self._queue.put(("MODIFIED", event.new))
            elif now:
                self._queue.put(("ADDED", event.new))
            elif was:
                self._queue.put(("DELETED", event.new))

    def _put_raw(self, item: tuple[str, dict[str, Any]]) -> None:
        self._queue.put(item)

    def bookmark(self, resource_version: str, *, initial_events_end: bool = False) -> dict[str, Any]:
        meta: dict[str, Any] = {"resourceVersion": resource_version}
        if initial_events_end:
            meta["annotations"] = {"k8s.io/initial-events-end": "true"}
        return {"kind": self.info.kind, "apiVersion": self.info.api_version, "metadata": meta}

    def next_raw(self, timeout: float | None = None) -> tuple[str, dict[str, Any]] | None:
        """The next (type, shared object) pair; None on timeout or once stopped. Do not mutate the object."""
        if self.stopped and self._queue.empty():
            return None
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        if item is _STOP:
            self.stopped = True
            return None
        return item

    def __iter__(self) -> Iterator[tuple[str, dict[str, Any]]]:
        return self

    def __next__(self) -> tuple[str, dict[str, Any]]:
        while True:
            item = self.next_raw(timeout=None)
            if item is not None:
                return item[0], clone(item[1])
            if self.stopped:
                raise StopIteration

    def stop(self) -> None:
        if not self.stopped:
            self._store._remove_watch(self)
            self._queue.put(_STOP)


class Store:
    """All cluster state. Thread-safe; every mutation happens under `lock`."""

    def __init__(self, *, event_window: int = _EVENT_WINDOW) -> None:
        self.lock = threading.RLock()
        # res -> namespace ("" for cluster-scoped) -> name -> committed object
        self._data: dict[ResourceKey, dict[str, dict[str, dict[str, Any]]]] = {}
        self._rv = itertools.count(1)
        self._current_rv = 0
        self._events: deque[_Event] = deque()
        self._event_window = event_window
        # Events with rv <= _floor_rv have been dropped from the ring; resuming before it is 410 Expired.
        self._floor_rv = 0
        self._watchers: dict[ResourceKey, set[Watch]] = {}
        self._listeners: list[Listener] = []
        # Per-object side data kept by the server (server-side apply bookkeeping); dropped on delete.
        self.side: dict[tuple[ResourceKey, str, str], dict[str, Any]] = {}
        # The types served: built-ins plus what this cluster's CRDs declare.
        self.catalog = Catalog()
        from sandbox.kubesim.crds import CustomResourceServing  # local: crds reads store helpers lazily

        self.add_listener(CustomResourceServing(self))

    # ----------------------------------------------------------------- helpers

    def _info(self, res: ResourceKey) -> ResourceInfo:
        info = self.catalog.lookup(res)
        if info is None:
            raise _unknown_resource(res)
        return info

    @staticmethod
    def _ns(info: ResourceInfo, namespace: str | None) -> str:
        return (namespace or "") if info.namespaced else ""

    def _next_rv(self) -> int:
        self._current_rv = next(self._rv)
        return self._current_rv

    @property
    def resource_version(self) -> str:
        return str(self._current_rv)

    def _namespace_exists(self, namespace: str) -> bool:
        return namespace in self._data.get(("", "v1", "namespaces"), {}).get("", {})

    def _commit(
        self, etype: str, info: ResourceInfo, namespace: str, old: dict[str, Any] | None, new: dict[str, Any]
    ) -> None:
        rv = int(new["metadata"]["resourceVersion"])
        event = _Event(rv, etype, info.key, namespace, old, new)
        events = self._events
        events.append(event)
        if len(events) > self._event_window:
            self._floor_rv = events.popleft().rv
        for w in self._watchers.get(info.key, ()):
            w._offer(event)
        for fn in self._listeners:
            fn(etype, info.key, clone(new))

    # ----------------------------------------------------------------- reads

    def get(self, res: ResourceKey, namespace: str | None, name: str) -> dict[str, Any]:
        obj = self.get_ref(res, namespace, name)
        return clone(obj)

    def get_ref(self, res: ResourceKey, namespace: str | None, name: str) -> dict[str, Any]:
        """The committed object itself (read-only!); raises 404."""
        info = self._info(res)
        obj = self._data.get(res, {}).get(self._ns(info, namespace), {}).get(name)
        if obj is None:
            raise ApiError.not_found(info, name)
        return obj

    def try_get(self, res: ResourceKey, namespace: str | None, name: str) -> dict[str, Any] | None:
        info = self._info(res)
        obj = self._data.get(res, {}).get(self._ns(info, namespace), {}).get(name)
        return None if obj is None else clone(obj)

    def list_refs(
        self,
        res: ResourceKey,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> tuple[list[dict[str, Any]], str]:
        """Committed objects (read-only!) sorted by namespace/name, and the RV they were read at."""
        info = self._info(res)
        try:
            labels = parse_label_selector(label_selector or None)
            fields = parse_field_selector(field_selector or None)
        except SelectorError as exc:
            raise ApiError.bad_request(str(exc)) from exc
        with self.lock:
            by_ns = self._data.get(res, {})
            if info.namespaced and namespace:
                buckets = [(namespace, by_ns.get(namespace, {}))]
            else:
                buckets = sorted(by_ns.items())
            out: list[dict[str, Any]] = []
            for _ns, objs in buckets:
                for name in sorted(objs):
                    obj = objs[name]
                    if labels and not labels_match(labels, obj["metadata"].get("labels")):
                        continue
                    if fields and not fields_match(fields, obj):
                        continue
                    out.append(obj)
            return out, str(self._current_rv)

    def list(
        self,
        res: ResourceKey,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> tuple[list[dict[str, Any]], str]:
        items, rv = self.list_refs(res, namespace, label_selector, field_selector)
        return [clone(o) for o in items], rv

    # ----------------------------------------------------------------- writes

    def create(self, res: ResourceKey, obj: dict[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        info = self._info(res)
        new = clone(obj)
        meta = new.get("metadata")
        if not isinstance(meta, dict):
            meta = new["metadata"] = {}
        namespace = self._ns(info, meta.get("namespace"))
        if info.namespaced:
            if not namespace:
                raise ApiError.bad_request("the namespace of the object is required")
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        new["apiVersion"] = info.api_version
        new["kind"] = info.kind
        with self.lock:
            name = meta.get("name")
            if not name:
                generate = meta.get("generateName")
                if not generate:
                    raise ApiError.invalid(
                        info, "", [("metadata.name", "Required value: name or generateName is required")]
                    )
                bucket = self._data.get(res, {}).get(namespace, {})
                name = generate + random_suffix()
                while name in bucket:
                    name = generate + random_suffix()
                meta["name"] = name
            from sandbox.kubesim.validation import validate  # local: validation imports store helpers

            validate(info, new, None)
            if info.namespaced and res != ("", "v1", "namespaces") and not self._namespace_exists(namespace):
                raise ApiError.namespace_not_found(namespace)
            bucket = self._data.setdefault(res, {}).setdefault(namespace, {})
            if name in bucket:
                raise ApiError.already_exists(info, name)
            for transient in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "managedFields"):
                meta.pop(transient, None)
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = now_rfc3339()
            if info.has_generation:
                meta["generation"] = 1
            else:
                meta.pop("generation", None)
            defaults.apply_defaults(res, new)
            defaults.on_create(res, new)
            if dry_run:
                return new
            meta["resourceVersion"] = str(self._next_rv())
            bucket[name] = new
            self.side.pop((res, namespace, name), None)
            self._commit("ADDED", info, namespace, None, new)
            return clone(new)

    def update(
        self,
        res: ResourceKey,
        obj: dict[str, Any],
        *,
        subresource: str | None = None,
        check_rv: bool = True,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        info = self._info(res)
        if subresource not in (None, "status"):
            raise ApiError(404, "NotFound", f"subresource {subresource} is not handled by the store")
        in_meta = obj.get("metadata") or {}
        namespace = self._ns(info, in_meta.get("namespace"))
        name = in_meta.get("name") or ""
        with self.lock:
            cur = self._data.get(res, {}).get(namespace, {}).get(name)
            if cur is None:
                raise ApiError.not_found(info, name)
            cur_meta = cur["metadata"]
            sent_rv = in_meta.get("resourceVersion")
            if check_rv and sent_rv and sent_rv != cur_meta["resourceVersion"]:
                raise ApiError.conflict(
                    info,
                    name,
                    "the object has been modified; please apply your changes to the latest version and try again",
                )
            if subresource == "status":
                # /status writes change only status (the status strategies reset everything else).
                new = {k: clone(v) for k, v in cur.items() if k != "status"}
                if "status" in obj:
                    new["status"] = clone(obj["status"])
            else:
                new = clone(obj)
                if info.has_status:
                    if "status" in cur:
                        new["status"] = clone(cur["status"])
                    else:
                        new.pop("status", None)
            new["apiVersion"] = info.api_version
            new["kind"] = info.kind
            meta = new.get("metadata")
            if not isinstance(meta, dict):
                meta = new["metadata"] = {}
            meta.pop("managedFields", None)
            # Identity and lifecycle fields are owned by the server.
            meta["name"] = name
            if info.namespaced:
                meta["namespace"] = namespace
            else:
                meta.pop("namespace", None)
            meta["uid"] = cur_meta["uid"]
            meta["creationTimestamp"] = cur_meta["creationTimestamp"]
            meta.pop("generateName", None)
            if "generateName" in cur_meta:
                meta["generateName"] = cur_meta["generateName"]
            for lifecycle in ("deletionTimestamp", "deletionGracePeriodSeconds"):
                if lifecycle in cur_meta:
                    meta[lifecycle] = cur_meta[lifecycle]
                else:
                    meta.pop(lifecycle, None)
            meta["resourceVersion"] = cur_meta["resourceVersion"]
            defaults.apply_defaults(res, new)
            if info.has_generation:
                generation = cur_meta.get("generation", 1)
                if new.get("spec") != cur.get("spec"):
                    generation += 1
                meta["generation"] = generation
            else:
                meta.pop("generation", None)
            if subresource is None:
                from sandbox.kubesim.validation import validate

                validate(info, new, cur)
            if new == cur:
                # A no-op write does not bump the resourceVersion, as on a real server.
                return clone(cur)
            if dry_run:
                return new
            if meta.get("deletionTimestamp") and not meta.get("finalizers"):
                return self._remove(info, namespace, name, new)
            meta["resourceVersion"] = str(self._next_rv())
            self._data[res][namespace][name] = new
            self._commit("MODIFIED", info, namespace, cur, new)
            return clone(new)

    def _remove(
        self, info: ResourceInfo, namespace: str, name: str, last: dict[str, Any], propagation: str = ""
    ) -> dict[str, Any]:
        bucket = self._data[info.key][namespace]
        old = bucket.pop(name)
        gone = {k: v for k, v in last.items() if k != "metadata"}
        gone_meta = dict(last["metadata"])
        gone_meta["resourceVersion"] = str(self._next_rv())
        # The garbage collector (a controller) learns the propagation policy the way the real GC does:
        # from the orphan/foregroundDeletion finalizers on the deleted object.
        if propagation == "Orphan":
            gone_meta["finalizers"] = [*gone_meta.get("finalizers", []), "orphan"]
        elif propagation == "Foreground":
            gone_meta["finalizers"] = [*gone_meta.get("finalizers", []), "foregroundDeletion"]
        gone["metadata"] = gone_meta
        self.side.pop((info.key, namespace, name), None)
        self._commit("DELETED", info, namespace, old, gone)
        return clone(gone)

    def delete(
        self,
        res: ResourceKey,
        namespace: str | None,
        name: str,
        *,
        propagation: str = "Background",
        dry_run: bool = False,
        preconditions: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        info = self._info(res)
        ns = self._ns(info, namespace)
        with self.lock:
            cur = self._data.get(res, {}).get(ns, {}).get(name)
            if cur is None:
                raise ApiError.not_found(info, name)
            if preconditions:
                want_uid = preconditions.get("uid")
                if want_uid and want_uid != cur["metadata"]["uid"]:
                    raise ApiError.conflict(
                        info,
                        name,
                        f"Precondition failed: UID in precondition: {want_uid}, UID in object meta: "
                        f"{cur['metadata']['uid']}",
                    )
                want_rv = preconditions.get("resourceVersion")
                if want_rv and want_rv != cur["metadata"]["resourceVersion"]:
                    raise ApiError.conflict(
                        info,
                        name,
                        f"Precondition failed: ResourceVersion in precondition: {want_rv}, "
                        f"ResourceVersion in object meta: {cur['metadata']['resourceVersion']}",
                    )
            if dry_run:
                return clone(cur)
            if cur["metadata"].get("finalizers"):
                if cur["metadata"].get("deletionTimestamp"):
                    return clone(cur)
                new = dict(cur)
                new_meta = dict(cur["metadata"])
                new_meta["deletionTimestamp"] = now_rfc3339()
                new_meta["deletionGracePeriodSeconds"] = 0
                new_meta["resourceVersion"] = str(self._next_rv())
                new["metadata"] = new_meta
                self._data[res][ns][name] = new
                self._commit("MODIFIED", info, ns, cur, new)
                return clone(new)
            if res == ("", "v1", "namespaces"):
                self._purge_namespace(name)
            return self._remove(info, ns, name, cur, propagation)

    def _purge_namespace(self, namespace: str) -> None:
        """Delete everything in a namespace (what the namespace controller does while it is Terminating)."""
        for res, by_ns in list(self._data.items()):
            objs = by_ns.get(namespace)
            if not objs or res == ("", "v1", "namespaces"):
                continue
            info = self._info(res)
            for name in list(objs):
                self._remove(info, namespace, name, objs[name])

    def purge_resource(self, res: ResourceKey) -> None:
        """Delete every object of one type (what the API server does when a CRD goes away)."""
        info = self._info(res)
        with self.lock:
            for namespace, objs in list(self._data.get(res, {}).items()):
                for name in list(objs):
                    self._remove(info, namespace, name, objs[name])
            self._data.pop(res, None)

    # ----------------------------------------------------------------- watches

    def watch(
        self,
        res: ResourceKey,
        namespace: str | None = None,
        *,
        since_rv: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        send_initial_events: bool | None = None,
    ) -> Watch:
        """Start a watch.

        since_rv None/""/"0": synthetic ADDED events for the current matching objects, then live events.
        since_rv N: every event after N (replayed from the ring buffer), then live; 410 Expired if too old.
        send_initial_events=True (watch-list): ADDED for current objects, then a BOOKMARK annotated
        `k8s.io/initial-events-end`, then live events.
        """
        info = self._info(res)
        try:
            labels = parse_label_selector(label_selector or None)
            fields = parse_field_selector(field_selector or None)
        except SelectorError as exc:
            raise ApiError.bad_request(str(exc)) from exc
        ns = self._ns(info, namespace) or None
        w = Watch(self, info, ns, labels, fields)
        with self.lock:
            initial = send_initial_events or (send_initial_events is None and since_rv in (None, "", "0"))
            if initial:
                items, rv = self.list_refs(res, ns, label_selector, field_selector)
                for obj in items:
                    w._put_raw(("ADDED", obj))
                if send_initial_events:
                    w._put_raw(("BOOKMARK", w.bookmark(rv, initial_events_end=True)))
            elif since_rv not in (None, "", "0"):
                try:
                    start = int(since_rv)
                except ValueError as exc:
                    raise ApiError.bad_request(f"invalid resource version: {since_rv}") from exc
                if start < self._floor_rv:
                    raise ApiError(410, "Expired", f"too old resource version: {start} ({self._floor_rv + 1})")
                replay: list[_Event] = []
                for event in reversed(self._events):
                    if event.rv <= start:
                        break
                    if event.res == res:
                        replay.append(event)
                for event in reversed(replay):
                    w._offer(event)
            self._watchers.setdefault(res, set()).add(w)
        return w

    def _remove_watch(self, w: Watch) -> None:
        with self.lock:
            watchers = self._watchers.get(w.res)
            if watchers is not None:
                watchers.discard(w)

    def add_listener(self, fn: Listener) -> None:
        with self.lock:
            self._listeners.append(fn)

    def remove_listener(self, fn: Listener) -> None:
        with self.lock:
            if fn in self._listeners:
                self._listeners.remove(fn)

    def stop_all_watches(self) -> None:
        with self.lock:
            watchers = [w for ws in self._watchers.values() for w in ws]
        for w in watchers:
            w.stop()
