"""StatefulSet controller (pkg/controller/statefulset/stateful_set_{control,utils}.go): ordinal pods
`<sts>-0..N-1`, OrderedReady (or Parallel) management, RollingUpdate with partition in reverse ordinal order,
and ControllerRevision history with roll-forward."""

from __future__ import annotations

import re
from typing import Any

from sandbox.kubesim.controllers import history
from sandbox.kubesim.controllers.events import EventRecorder
from sandbox.kubesim.controllers.replicaset import pod_from_template
from sandbox.kubesim.controllers.runtime import Runtime
from sandbox.kubesim.controllers.util import (
    CONTROLLERREVISIONS,
    PODS,
    STATEFULSETS,
    go_json,
    hash_controller_revision,
    now,
    pod_available_at,
    pod_is_ready,
    revision_patch,
)
from sandbox.kubesim.store import ApiError, clone

Obj = dict[str, Any]
REVISION_LABEL = "controller-revision-hash"
CR_HASH_LABEL = "controller.kubernetes.io/hash"
POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"


def _template_from_revision(cr: Obj) -> Obj:
    """ApplyRevision for a `$patch: replace` template: the revision's template itself."""
    template: Obj = clone(((cr.get("data") or {}).get("spec") or {}).get("template") or {})
    template.pop("$patch", None)
    return template


class StatefulSetController:
    def __init__(self, rt: Runtime, events: EventRecorder) -> None:
        self.rt = rt
        self.store = rt.store
        self.events = events
        rt.register("StatefulSet", self.sync)

    # ------------------------------------------------------------------ history

    def _revisions(self, sts: Obj) -> tuple[Obj, Obj, int, list[Obj]]:
        """getStatefulSetRevisions: (current, update, collisionCount, all revisions)."""
        crs = history.sort_revisions(history.owned_revisions(self.rt, sts))
        collision = int((sts.get("status") or {}).get("collisionCount") or 0)
        data = revision_patch(sts["spec"].get("template") or {})
        data_bytes = go_json(data)
        next_revision = (history.revision_number(crs[-1]) if crs else 0) + 1
        equal = [cr for cr in crs if history.data_bytes(cr) == data_bytes]
        if equal and crs[-1] is equal[-1]:
            update = crs[-1]
        elif equal:
            # Roll forward: the template matches an older revision, which becomes the newest.
            update = history.set_revision(self.rt, equal[-1], next_revision)
            crs = history.sort_revisions(history.owned_revisions(self.rt, sts))
        else:
            update, collision = self._create_revision(sts, data, data_bytes, next_revision, collision)
            crs = history.sort_revisions([*crs, update])
        current_name = (sts.get("status") or {}).get("currentRevision")
        current = next((cr for cr in crs if cr["metadata"]["name"] == current_name), None) or update
        return current, update, collision, crs

    def _create_revision(self, sts: Obj, data: Obj, data_bytes: str, revision: int, collision: int) -> tuple[Obj, int]:
        labels = ((sts["spec"].get("template") or {}).get("metadata") or {}).get("labels") or {}
        while True:
            cr_hash = hash_controller_revision(data, collision)
            name = f"{sts['metadata']['name'][:223]}-{cr_hash}"
            cr = history.new_revision(sts, labels, data, revision, name, {CR_HASH_LABEL: cr_hash})
            try:
                return self.store.create(CONTROLLERREVISIONS, cr), collision
            except ApiError as exc:
                if exc.code != 409:
                    raise
                existing = self.rt.get_ref(CONTROLLERREVISIONS, sts["metadata"]["namespace"], name)
                if existing is not None and history.data_bytes(existing) == data_bytes:
                    return clone(existing), collision
                collision += 1

    def _truncate_history(self, sts: Obj, crs: list[Obj], pods: list[Obj], current: Obj, update: Obj) -> None:
        live = {current["metadata"]["name"], update["metadata"]["name"]}
        live |= {(p["metadata"].get("labels") or {}).get(REVISION_LABEL) for p in pods}
        old = [cr for cr in crs if cr["metadata"]["name"] not in live]
        limit = sts["spec"].get("revisionHistoryLimit")
        limit = 10 if limit is None else int(limit)
        for cr in old[: max(0, len(old) - limit)]:
            history.delete_revision(self.rt, cr)

    # ------------------------------------------------------------------ pods

    def _ordinal(self, sts: Obj, pod: Obj) -> int | None:
        match = re.fullmatch(re.escape(sts["metadata"]["name"]) + r"-(\d+)", pod["metadata"]["name"])
        return int(match.group(1)) if match else None

    def _new_pod(self, sts: Obj, revision: Obj, ordinal: int) -> Obj:
        name = f"{sts['metadata']['name']}-{ordinal}"
        template = _template_from_revision(revision)
        tmeta = template.setdefault("metadata", {})
        labels = dict(tmeta.get("labels") or {})
        labels[REVISION_LABEL] = revision["metadata"]["name"]
        labels[POD_NAME_LABEL] = name
        labels[POD_INDEX_LABEL] = str(ordinal)
        tmeta["labels"] = labels
        pod = pod_from_template(template, sts, name=name)
        pod["spec"]["hostname"] = name
        if sts["spec"].get("serviceName"):
            pod["spec"]["subdomain"] = sts["spec"]["serviceName"]
        return pod

    def _running_and_ready(self, pod: Obj) -> bool:
        return (pod.get("status") or {}).get("phase") == "Running" and pod_is_ready(pod)

    def _available(self, sts: Obj, pod: Obj) -> bool:
        if not self._running_and_ready(pod):
            return False
        min_ready = int(sts["spec"].get("minReadySeconds") or 0)
        at = pod_available_at(pod, min_ready)
        return at is not None and (min_ready == 0 or at < now())

    def _create(self, sts: Obj, pod: Obj) -> None:
        self.store.create(PODS, pod)
        name = pod["metadata"]["name"]
        self.events.record(
            sts,
            "Normal",
            "SuccessfulCreate",
            f"create Pod {name} in StatefulSet {sts['metadata']['name']} successful",
            component="statefulset-controller",
        )

    def _delete(self, sts: Obj, pod: Obj) -> None:
        try:
            self.store.delete(PODS, pod["metadata"]["namespace"], pod["metadata"]["name"])
        except ApiError as exc:
            if exc.code != 404:
                raise
            return
        self.events.record(
            sts,
            "Normal",
            "SuccessfulDelete",
            f"delete Pod {pod['metadata']['name']} in StatefulSet {sts['metadata']['name']} successful",
            component="statefulset-controller",
        )

    # ------------------------------------------------------------------ sync

    def sync(self, namespace: str, name: str) -> None:
        ref = self.rt.get_ref(STATEFULSETS, namespace, name)
        if ref is None or ref["metadata"].get("deletionTimestamp"):
            return
        sts = clone(ref)
        current, update, collision, crs = self._revisions(sts)
        self._update_replicas(sts, current, update)
        pods = self.rt.owned(sts["metadata"]["uid"], PODS)
        self._update_status(sts, pods, current, update, collision)
        self._truncate_history(sts, crs, pods, current, update)

    def _update_replicas(self, sts: Obj, current: Obj, update: Obj) -> None:
        spec = sts["spec"]
        want = 1 if spec.get("replicas") is None else int(spec["replicas"])
        monotonic = (spec.get("podManagementPolicy") or "OrderedReady") != "Parallel"
        strategy = spec.get("updateStrategy") or {}
        rolling = strategy.get("rollingUpdate")
        partition = int((rolling or {}).get("partition") or 0)
        current_replicas = int((sts.get("status") or {}).get("currentReplicas") or 0)
        pods = self.rt.owned(sts["metadata"]["uid"], PODS)
        by_ordinal: dict[int, Obj] = {}
        condemned: list[Obj] = []
        for owned in pods:
            ordinal = self._ordinal(sts, owned)
            if ordinal is None:
                continue
            if ordinal < want:
                by_ordinal[ordinal] = owned
            else:
                condemned.append(owned)
        condemned.sort(key=lambda p: self._ordinal(sts, p) or 0)

        def versioned(ordinal: int) -> Obj:
            use_current = strategy.get("type", "RollingUpdate") == "RollingUpdate" and (
                (rolling is None and ordinal < current_replicas) or (rolling is not None and ordinal < partition)
            )
            return self._new_pod(sts, current if use_current else update, ordinal)

        pod: Obj | None
        for ordinal in range(want):
            pod = by_ordinal.get(ordinal)
            if pod is not None and (pod.get("status") or {}).get("phase") == "Failed":
                self._delete(sts, pod)
                pod = None
            if pod is None:
                self._create(sts, versioned(ordinal))
                if monotonic:
                    return
                continue
            if monotonic and not self._available(sts, pod):
                return
        for doomed in reversed(condemned):
            self._delete(sts, doomed)
            if monotonic:
                return
        if strategy.get("type", "RollingUpdate") == "OnDelete":
            return
        for ordinal in range(want - 1, partition - 1, -1):
            pod = by_ordinal.get(ordinal)
            if pod is None:
                return
            if (pod["metadata"].get("labels") or {}).get(REVISION_LABEL) != update["metadata"]["name"]:
                self._delete(sts, pod)
                return
            if not self._available(sts, pod):
                return

    def _update_status(self, sts: Obj, pods: list[Obj], current: Obj, update: Obj, collision: int) -> None:
        count = ready = available = cur = upd = 0
        for pod in pods:
            if self._ordinal(sts, pod) is None:
                continue
            count += 1
            if self._running_and_ready(pod):
                ready += 1
                if self._available(sts, pod):
                    available += 1
            revision = (pod["metadata"].get("labels") or {}).get(REVISION_LABEL)
            if revision == current["metadata"]["name"]:
                cur += 1
            if revision == update["metadata"]["name"]:
                upd += 1
        status: Obj = dict(sts.get("status") or {})
        status.update(
            {
                "observedGeneration": int(sts["metadata"].get("generation") or 0),
                "replicas": count,
                "readyReplicas": ready,
                "currentReplicas": cur,
                "updatedReplicas": upd,
                "availableReplicas": available,
                "currentRevision": current["metadata"]["name"],
                "updateRevision": update["metadata"]["name"],
                "collisionCount": collision,
            }
        )
        strategy = sts["spec"].get("updateStrategy") or {}
        # completeRollingUpdate: once every pod runs the update revision it becomes the current one.
        if strategy.get("type", "RollingUpdate") == "RollingUpdate" and upd == count and ready == count:
            status["currentReplicas"] = upd
            status["currentRevision"] = status["updateRevision"]
        for key in ("readyReplicas", "currentReplicas", "updatedReplicas"):
            if not status[key]:
                del status[key]
        if status != sts.get("status"):
            self.store.update(STATEFULSETS, {"metadata": sts["metadata"], "status": status}, subresource="status")
        min_ready = int(sts["spec"].get("minReadySeconds") or 0)
        if min_ready and ready > available:
            self.rt.queue.add_after(("StatefulSet", sts["metadata"]["namespace"], sts["metadata"]["name"]), 1.0)
