"""ReplicaSet controller (pkg/controller/replicaset/replica_set.go): keeps spec.replicas active pods and
reports replicas / fullyLabeledReplicas / readyReplicas / availableReplicas."""

from __future__ import annotations

from typing import Any

from sandbox.kubesim.controllers.events import EventRecorder
from sandbox.kubesim.controllers.runtime import Runtime
from sandbox.kubesim.controllers.util import (
    PODS,
    REPLICASETS,
    controller_ref,
    now,
    pod_available_at,
    pod_is_active,
    pod_is_ready,
)
from sandbox.kubesim.store import ApiError

Obj = dict[str, Any]
# replica_set.go BurstReplicas: at most this many creations/deletions per sync.
BURST_REPLICAS = 500

_PHASE_RANK = {"Pending": 0, "Unknown": 1, "Running": 2}


def pod_from_template(template: Obj, owner: Obj, *, name: str | None = None) -> Obj:
    """controller.GetPodFromTemplate: labels, annotations and spec of the template, owned by `owner`."""
    tmeta = template.get("metadata") or {}
    meta: Obj = {"namespace": owner["metadata"]["namespace"], "ownerReferences": [controller_ref(owner)]}
    if name:
        meta["name"] = name
    else:
        meta["generateName"] = owner["metadata"]["name"] + "-"
    if tmeta.get("labels"):
        meta["labels"] = dict(tmeta["labels"])
    if tmeta.get("annotations"):
        meta["annotations"] = dict(tmeta["annotations"])
    if tmeta.get("finalizers"):
        meta["finalizers"] = list(tmeta["finalizers"])
    # No deep copy: the store copies what it stores, and callers that edit the spec pass a copy.
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": template.get("spec") or {}}


def deletion_rank(pod: Obj) -> tuple[int, int, int, str]:
    """controller.ActivePods ordering: the pods to delete first sort first (unscheduled, pending,
    not ready, then the most recently created)."""
    status = pod.get("status") or {}
    scheduled = 1 if pod.get("spec", {}).get("nodeName") else 0
    phase = _PHASE_RANK.get(status.get("phase", "Pending"), 0)
    ready = 1 if pod_is_ready(pod) else 0
    created = pod["metadata"].get("creationTimestamp", "")
    # Newer pods first: invert the timestamp ordering by negating each character.
    return (scheduled, phase, ready, "".join(chr(0x10FFFF - ord(c)) for c in created))


class ReplicaSetController:
    def __init__(self, rt: Runtime, events: EventRecorder) -> None:
        self.rt = rt
        self.store = rt.store
        self.events = events
        rt.register("ReplicaSet", self.sync)

    def sync(self, namespace: str, name: str) -> None:
        rs = self.rt.get_ref(REPLICASETS, namespace, name)
        if rs is None:
            return
        uid = rs["metadata"]["uid"]
        self.rt.adopt(rs, PODS, rs["spec"].get("selector") or {})
        pods = [p for p in self.rt.owned(uid, PODS) if pod_is_active(p)]
        want = rs["spec"].get("replicas")
        want = 1 if want is None else int(want)
        if not rs["metadata"].get("deletionTimestamp"):
            diff = len(pods) - want
            if diff < 0:
                for _ in range(min(-diff, BURST_REPLICAS)):
                    pod = self.store.create(PODS, pod_from_template(rs["spec"].get("template") or {}, rs))
                    self.events.record(
                        rs,
                        "Normal",
                        "SuccessfulCreate",
                        f"Created pod: {pod['metadata']['name']}",
                        component="replicaset-controller",
                    )
            elif diff > 0:
                for pod in sorted(pods, key=deletion_rank)[: min(diff, BURST_REPLICAS)]:
                    try:
                        self.store.delete(PODS, namespace, pod["metadata"]["name"])
                    except ApiError as exc:
                        if exc.code != 404:
                            raise
                        continue
                    self.events.record(
                        rs,
                        "Normal",
                        "SuccessfulDelete",
                        f"Deleted pod: {pod['metadata']['name']}",
                        component="replicaset-controller",
                    )
            if diff != 0:
                pods = [p for p in self.rt.owned(uid, PODS) if pod_is_active(p)]
        self._update_status(rs, pods)

    def _update_status(self, rs: Obj, pods: list[Obj]) -> None:
        min_ready = int(rs["spec"].get("minReadySeconds") or 0)
        template_labels = ((rs["spec"].get("template") or {}).get("metadata") or {}).get("labels") or {}
        current = now()
        ready = available = labelled = 0
        next_check = None
        for pod in pods:
            labels = pod["metadata"].get("labels") or {}
            if all(labels.get(k) == v for k, v in template_labels.items()):
                labelled += 1
            if pod_is_ready(pod):
                ready += 1
                at = pod_available_at(pod, min_ready)
                if at is not None and (min_ready == 0 or at < current):
                    available += 1
                elif at is not None and (next_check is None or at < next_check):
                    next_check = at
        status: Obj = dict(rs.get("status") or {})
        status["replicas"] = len(pods)
        status["fullyLabeledReplicas"] = labelled
        status["readyReplicas"] = ready
        status["availableReplicas"] = available
        status["observedGeneration"] = int(rs["metadata"].get("generation") or 0)
        for key in ("fullyLabeledReplicas", "readyReplicas", "availableReplicas"):
            if not status[key]:
                del status[key]
        if status != rs.get("status"):
            # A /status write only reads metadata and status from the body, so no copy of the spec.
            self.store.update(REPLICASETS, {"metadata": rs["metadata"], "status": status}, subresource="status")
        if next_check is not None:
            delay = (next_check - current).total_seconds() + 1.0
            self.rt.queue.add_after(("ReplicaSet", rs["metadata"]["namespace"], rs["metadata"]["name"]), delay)
