"""core/v1 Events the way client-go's event recorder writes them, including count aggregation."""

from __future__ import annotations

import threading
import time
from typing import Any

from sandbox.kubesim.controllers.util import EVENTS, rfc3339
from sandbox.kubesim.store import ApiError, Store


class EventRecorder:
    def __init__(self, store: Store, *, enabled: bool = True) -> None:
        self.store = store
        self.enabled = enabled
        self._lock = threading.Lock()
        # involved uid -> (fieldPath, type, reason, message) -> event name, so repeats bump `count`
        # instead of creating new objects (client-go's EventCorrelator does the same).
        self._seen: dict[str, dict[tuple[str, str, str, str], str]] = {}
        self._last_ns = 0

    def _name(self, obj_name: str) -> str:
        with self._lock:
            stamp = max(time.time_ns(), self._last_ns + 1)
            self._last_ns = stamp
        return f"{obj_name}.{stamp:x}"

    def record(
        self,
        obj: dict[str, Any],
        etype: str,
        reason: str,
        message: str,
        *,
        component: str,
        host: str = "",
        field_path: str = "",
    ) -> None:
        if not self.enabled:
            return
        meta = obj["metadata"]
        ns = meta.get("namespace") or "default"
        uid = meta.get("uid", "")
        key = (field_path, etype, reason, message)
        now = rfc3339()
        existing = self._seen.get(uid, {}).get(key)
        if existing is not None:
            try:
                ev = self.store.get(EVENTS, ns, existing)
            except ApiError:
                ev = None
            if ev is not None:
                ev["count"] = int(ev.get("count", 1)) + 1
                ev["lastTimestamp"] = now
                try:
                    self.store.update(EVENTS, ev, check_rv=False)
                    return
                except ApiError:
                    pass
        involved: dict[str, Any] = {
            "kind": obj.get("kind", ""),
            "namespace": ns,
            "name": meta.get("name", ""),
            "uid": uid,
            "apiVersion": obj.get("apiVersion", ""),
            "resourceVersion": meta.get("resourceVersion", ""),
        }
        if field_path:
            involved["fieldPath"] = field_path
        source: dict[str, str] = {"component": component}
        if host:
            source["host"] = host
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": self._name(meta.get("name", "event")), "namespace": ns},
            "involvedObject": involved,
            "reason": reason,
            "message": message,
            "source": source,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "type": etype,
            "eventTime": None,
            "reportingComponent": component,
            "reportingInstance": host,
        }
        try:
            created = self.store.create(EVENTS, event)
        except ApiError:
            return  # events are best effort, as in client-go
        self._seen.setdefault(uid, {})[key] = created["metadata"]["name"]

    def forget(self, uid: str) -> None:
        """Drop aggregation state for a deleted object."""
        self._seen.pop(uid, None)
