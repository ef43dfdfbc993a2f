"""DaemonSet controller (pkg/controller/daemon/{daemon_controller,update}.go): one pod per simulated node,
ControllerRevision history with roll-forward, RollingUpdate with maxUnavailable/maxSurge."""

from __future__ import annotations

from typing import Any

from sandbox.kubesim.controllers import history
from sandbox.kubesim.controllers.events import EventRecorder
from sandbox.kubesim.controllers.replicaset import pod_from_template
from sandbox.kubesim.controllers.runtime import Requeue, Runtime
from sandbox.kubesim.controllers.util import (
    CONTROLLERREVISIONS,
    DAEMONSETS,
    PODS,
    compute_hash,
    go_json,
    is_controlled_by,
    now,
    pod_available_at,
    pod_is_active,
    pod_is_ready,
    revision_patch,
    scaled_value,
)
from sandbox.kubesim.kubelet import affinity_node, node_matches
from sandbox.kubesim.store import ApiError, clone

Obj = dict[str, Any]
HASH_LABEL = "controller-revision-hash"
GENERATION_LABEL = "pod-template-generation"

# daemon/util AddOrUpdateDaemonPodTolerations: daemons keep running through node trouble.
_DAEMON_TOLERATIONS = [
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
]


def pod_node(pod: Obj) -> str | None:
    return (pod.get("spec") or {}).get("nodeName") or affinity_node(pod)


def _created(pod: Obj) -> tuple[str, str]:
    return (pod["metadata"].get("creationTimestamp", ""), pod["metadata"]["name"])


class DaemonSetController:
    def __init__(self, rt: Runtime, events: EventRecorder, nodes: list[str]) -> None:
        self.rt = rt
        self.store = rt.store
        self.events = events
        self.nodes = nodes
        rt.register("DaemonSet", self.sync)

    # ------------------------------------------------------------------ history (update.go)

    def _construct_history(self, ds: Obj) -> tuple[Obj, list[Obj]]:
        patch = revision_patch(ds["spec"].get("template") or {})
        patch_bytes = go_json(patch)
        crs = history.owned_revisions(self.rt, ds)
        cur = [cr for cr in crs if history.data_bytes(cr) == patch_bytes]
        old = [cr for cr in crs if history.data_bytes(cr) != patch_bytes]
        next_revision = max((history.revision_number(cr) for cr in old), default=0) + 1
        if not cur:
            return self._snapshot(ds, patch, patch_bytes, next_revision), old
        # dedupCurHistories: keep the highest revision among identical snapshots.
        keep = max(cur, key=history.revision_number)
        for dup in cur:
            if dup is not keep:
                history.delete_revision(self.rt, dup)
        if history.revision_number(keep) < next_revision:
            # Roll forward: an old template came back, so its revision becomes the newest.
            keep = history.set_revision(self.rt, keep, next_revision)
        return keep, old

    def _snapshot(self, ds: Obj, patch: Obj, patch_bytes: str, revision: int) -> Obj:
        collision = (ds.get("status") or {}).get("collisionCount")
        template = ds["spec"].get("template") or {}
        pod_hash = compute_hash(template, collision)
        name = f"{ds['metadata']['name']}-{pod_hash}"
        labels = (template.get("metadata") or {}).get("labels") or {}
        cr = history.new_revision(ds, labels, patch, revision, name, {HASH_LABEL: pod_hash})
        try:
            return self.store.create(CONTROLLERREVISIONS, cr)
        except ApiError as exc:
            if exc.code != 409:
                raise
            existing = self.rt.get_ref(CONTROLLERREVISIONS, ds["metadata"]["namespace"], name)
            if (
                existing is not None
                and history.data_bytes(existing) == patch_bytes
                and is_controlled_by(existing, ds["metadata"]["uid"])
            ):
                found: Obj = clone(existing)
                return found
            updated = clone(ds)
            updated.setdefault("status", {})["collisionCount"] = int(collision or 0) + 1
            self.store.update(DAEMONSETS, updated, subresource="status")
            raise Requeue(0) from exc

    def _cleanup_history(self, ds: Obj, old: list[Obj], pods: list[Obj]) -> None:
        limit = ds["spec"].get("revisionHistoryLimit")
        limit = 10 if limit is None else int(limit)
        to_kill = len(old) - limit
        if to_kill <= 0:
            return
        live = {(p["metadata"].get("labels") or {}).get(HASH_LABEL) for p in pods}
        for cr in history.sort_revisions(old):
            if to_kill <= 0:
                break
            if (cr["metadata"].get("labels") or {}).get(HASH_LABEL) in live:
                continue
            history.delete_revision(self.rt, cr)
            to_kill -= 1

    # ------------------------------------------------------------------ sync

    def sync(self, namespace: str, name: str) -> None:
        ds = self.rt.get_ref(DAEMONSETS, namespace, name)
        if ds is None or ds["metadata"].get("deletionTimestamp"):
            return
        ds = clone(ds)
        cur, old = self._construct_history(ds)
        pod_hash = cur["metadata"]["labels"][HASH_LABEL]
        pods = [p for p in self.rt.owned(ds["metadata"]["uid"], PODS) if pod_is_active(p)]
        pod_spec = (ds["spec"].get("template") or {}).get("spec") or {}
        nodes = [n for n in self.nodes if node_matches(pod_spec, n)]
        rolling = ((ds["spec"].get("updateStrategy") or {}).get("type") or "RollingUpdate") == "RollingUpdate"
        # Like the real controller, roll only once the per-node pod set is settled (expectations met).
        changed = self._manage(ds, nodes, pods, pod_hash) or (
            rolling and self._rolling_update(ds, nodes, pods, pod_hash)
        )
        if changed:
            pods = [p for p in self.rt.owned(ds["metadata"]["uid"], PODS) if pod_is_active(p)]
        self._cleanup_history(ds, old, pods)
        self._update_status(ds, nodes, pods, pod_hash)

    @staticmethod
    def _by_node(nodes: list[str], pods: list[Obj]) -> dict[str, list[Obj]]:
        out: dict[str, list[Obj]] = {n: [] for n in nodes}
        for pod in pods:
            node = pod_node(pod)
            out.setdefault(node or "", []).append(pod)
        for lst in out.values():
            lst.sort(key=_created)
        return out

    @staticmethod
    def _fences(ds: Obj, desired: int) -> tuple[int, int]:
        rolling = (ds["spec"].get("updateStrategy") or {}).get("rollingUpdate") or {}
        surge = scaled_value(rolling.get("maxSurge", 0), desired, True)
        unavailable = scaled_value(rolling.get("maxUnavailable", 1), desired, True)
        if surge == 0 and unavailable == 0:
            unavailable = 1
        return surge, unavailable

    def _create_pod(self, ds: Obj, node: str, pod_hash: str) -> None:
        template = clone(ds["spec"].get("template") or {})
        tmeta = template.setdefault("metadata", {})
        labels = dict(tmeta.get("labels") or {})
        labels[HASH_LABEL] = pod_hash
        labels[GENERATION_LABEL] = str(ds["metadata"].get("generation") or 1)
        tmeta["labels"] = labels
        pod = pod_from_template(template, ds)
        spec = pod["spec"]
        affinity = spec.setdefault("affinity", {})
        affinity["nodeAffinity"] = {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}]
            }
        }
        tolerations = list(spec.get("tolerations") or [])
        present = {(t.get("key"), t.get("effect")) for t in tolerations}
        tolerations += [t for t in _DAEMON_TOLERATIONS if (t["key"], t["effect"]) not in present]
        spec["tolerations"] = tolerations
        created = self.store.create(PODS, pod)
        self.events.record(
            ds,
            "Normal",
            "SuccessfulCreate",
            f"Created pod: {created['metadata']['name']}",
            component="daemonset-controller",
        )

    def _delete_pod(self, ds: Obj, pod: Obj) -> None:
        try:
            self.store.delete(PODS, pod["metadata"]["namespace"], pod["metadata"]["name"])
        except ApiError as exc:
            if exc.code != 404:
                raise
            return
        self.events.record(
            ds,
            "Normal",
            "SuccessfulDelete",
            f"Deleted pod: {pod['metadata']['name']}",
            component="daemonset-controller",
        )

    def _manage(self, ds: Obj, nodes: list[str], pods: list[Obj], pod_hash: str) -> bool:
        """Create missing daemon pods, delete surplus and misscheduled ones."""
        surge, _ = self._fences(ds, len(nodes))
        changed = False
        for node, node_pods in self._by_node(nodes, pods).items():
            if node not in nodes:
                for pod in node_pods:
                    self._delete_pod(ds, pod)
                    changed = True
                continue
            if not node_pods:
                self._create_pod(ds, node, pod_hash)
                changed = True
                continue
            if len(node_pods) > 1:
                if surge > 0:
                    # At most one old and one new pod may coexist while surging.
                    old = [p for p in node_pods if (p["metadata"].get("labels") or {}).get(HASH_LABEL) != pod_hash]
                    new = [p for p in node_pods if p not in old]
                    extra = old[1:] + new[:-1]
                else:
                    extra = node_pods[1:]
                for pod in extra:
                    self._delete_pod(ds, pod)
                    changed = True
        return changed

    def _available(self, ds: Obj, pod: Obj) -> bool:
        min_ready = int(ds["spec"].get("minReadySeconds") or 0)
        at = pod_available_at(pod, min_ready)
        return at is not None and (min_ready == 0 or at < now())

    def _rolling_update(self, ds: Obj, nodes: list[str], pods: list[Obj], pod_hash: str) -> bool:
        surge, max_unavailable = self._fences(ds, len(nodes))
        to_delete: list[Obj] = []
        new_nodes: list[str] = []
        if surge == 0:
            unavailable = 0
            replacements: list[Obj] = []
            candidates: list[Obj] = []
            for node, node_pods in self._by_node(nodes, pods).items():
                if node not in nodes:
                    continue
                new_pod, old_pod, ok = self._split(node_pods, pod_hash)
                if not ok or (new_pod is None) == (old_pod is None):
                    unavailable += 1
                elif new_pod is not None:
                    if not self._available(ds, new_pod):
                        unavailable += 1
                elif old_pod is not None:
                    if not self._available(ds, old_pod):
                        replacements.append(old_pod)
                    elif unavailable < max_unavailable:
                        candidates.append(old_pod)
            budget = min(max(0, max_unavailable - unavailable), len(candidates))
            to_delete = replacements + candidates[:budget]
        else:
            surged = 0
            allowed: list[str] = []
            candidate_nodes: list[str] = []
            for node, node_pods in self._by_node(nodes, pods).items():
                if node not in nodes:
                    continue
                new_pod, old_pod, ok = self._split(node_pods, pod_hash)
                if not ok:
                    surged += 1
                elif old_pod is None:
                    continue
                elif new_pod is None:
                    if not self._available(ds, old_pod):
                        allowed.append(node)
                    elif surged < surge:
                        candidate_nodes.append(node)
                elif not self._available(ds, new_pod):
                    surged += 1
                else:
                    to_delete.append(old_pod)
            new_nodes = allowed + candidate_nodes[: max(0, surge - surged)]
        for pod in to_delete:
            self._delete_pod(ds, pod)
        for node in new_nodes:
            self._create_pod(ds, node, pod_hash)
        return bool(to_delete or new_nodes)

    @staticmethod
    def _split(node_pods: list[Obj], pod_hash: str) -> tuple[Obj | None, Obj | None, bool]:
        """findUpdatedPodsOnNode: (new pod, old pod, ok) where ok is False for duplicates."""
        new_pod = old_pod = None
        for pod in node_pods:
            if (pod["metadata"].get("labels") or {}).get(HASH_LABEL) == pod_hash:
                if new_pod is not None:
                    return None, None, False
                new_pod = pod
            else:
                if old_pod is not None:
                    return None, None, False
                old_pod = pod
        return new_pod, old_pod, True

    def _update_status(self, ds: Obj, nodes: list[str], pods: list[Obj], pod_hash: str) -> None:
        desired = current = ready = available = updated = misscheduled = 0
        for node, node_pods in self._by_node(nodes, pods).items():
            if node not in nodes:
                misscheduled += 1 if node_pods else 0
                continue
            desired += 1
            if not node_pods:
                continue
            current += 1
            pod = node_pods[0]
            if pod_is_ready(pod):
                ready += 1
                if self._available(ds, pod):
                    available += 1
            if (pod["metadata"].get("labels") or {}).get(HASH_LABEL) == pod_hash:
                updated += 1
        status: Obj = dict(ds.get("status") or {})
        status.update(
            {
                "currentNumberScheduled": current,
                "numberMisscheduled": misscheduled,
                "desiredNumberScheduled": desired,
                "numberReady": ready,
                "observedGeneration": int(ds["metadata"].get("generation") or 0),
                "updatedNumberScheduled": updated,
                "numberAvailable": available,
                "numberUnavailable": desired - available,
            }
        )
        for key in ("updatedNumberScheduled", "numberAvailable", "numberUnavailable"):
            if not status[key]:
                del status[key]
        if status != ds.get("status"):
            self.store.update(DAEMONSETS, {"metadata": ds["metadata"], "status": status}, subresource="status")
        min_ready = int(ds["spec"].get("minReadySeconds") or 0)
        if min_ready and ready > available:
            self.rt.queue.add_after(("DaemonSet", ds["metadata"]["namespace"], ds["metadata"]["name"]), 1.0)
