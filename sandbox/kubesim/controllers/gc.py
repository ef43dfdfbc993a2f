"""Garbage collector: when an owner disappears, delete (or, for the `orphan` policy, release) the objects
whose ownerReferences point at its uid (pkg/controller/garbagecollector, much simplified).

kubesim's store removes a deleted object at once and marks the DELETED event's object with an `orphan` or
`foregroundDeletion` finalizer to carry the propagation policy, as the real GC learns it from finalizers.
Objects that do carry user finalizers stay with a deletionTimestamp; for those the GC handles the
`foregroundDeletion`/`orphan` finalizers itself and removes them once it is done.
"""

from __future__ import annotations

from typing import Any

from sandbox.kubesim.controllers.runtime import Requeue, Runtime
from sandbox.kubesim.store import ApiError, clone

Obj = dict[str, Any]


class GarbageCollector:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.store = rt.store
        rt.register("GC", self.sync)

    def sync(self, _namespace: str, uid: str) -> None:
        if not uid:
            return
        owner_key = self.rt.index.live.get(uid)
        if owner_key is not None:
            owner = self.rt.get_ref(*owner_key)
            if owner is None:
                raise Requeue(0.05)
            self._finalize(owner)
            return
        policy = self.rt.deleted_policy.pop(uid, "Background")
        for res, ns, name in self.rt.index.dependents_of(uid):
            obj = self.rt.get_ref(res, ns, name)
            if obj is None:
                continue
            refs = obj["metadata"].get("ownerReferences") or []
            if not any(r.get("uid") == uid for r in refs):
                continue
            remaining = [r for r in refs if r.get("uid") != uid]
            if policy == "Orphan" or any(self.rt.index.is_live(r.get("uid", "")) for r in remaining):
                self._release(res, obj, uid)
                continue
            try:
                self.store.delete(res, ns, name, propagation="Foreground" if policy == "Foreground" else "Background")
            except ApiError as exc:
                if exc.code != 404:
                    raise

    def _release(self, res: Any, obj: Obj, owner_uid: str) -> None:
        updated = clone(obj)
        refs = [r for r in updated["metadata"].get("ownerReferences") or [] if r.get("uid") != owner_uid]
        if refs:
            updated["metadata"]["ownerReferences"] = refs
        else:
            updated["metadata"].pop("ownerReferences", None)
        self.store.update(res, updated, check_rv=False)

    def _finalize(self, owner: Obj) -> None:
        """An owner still present with deletionTimestamp and a GC finalizer (it also has user finalizers)."""
        meta = owner["metadata"]
        finalizers = list(meta.get("finalizers") or [])
        if not meta.get("deletionTimestamp"):
            return
        uid = meta["uid"]
        dependents = self.rt.index.dependents_of(uid)
        if "orphan" in finalizers:
            for res, ns, name in dependents:
                obj = self.rt.get_ref(res, ns, name)
                if obj is not None:
                    self._release(res, obj, uid)
            finalizers.remove("orphan")
        elif "foregroundDeletion" in finalizers:
            live = [d for d in dependents if self.rt.get_ref(*d) is not None]
            if live:
                for res, ns, name in live:
                    try:
                        self.store.delete(res, ns, name, propagation="Foreground")
                    except ApiError as exc:
                        if exc.code != 404:
                            raise
                raise Requeue(0.1)
            finalizers.remove("foregroundDeletion")
        else:
            return
        updated = clone(owner)
        updated["metadata"]["finalizers"] = finalizers
        self.store.update(self.rt.index.live[uid][0], updated, check_rv=False)
