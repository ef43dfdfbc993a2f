"""Deployment controller, following pkg/controller/deployment/{sync,rolling,recreate,progress}.go and
util/deployment_util.go: one ReplicaSet per pod template, revision annotations with roll-forward on
rollback, rolling updates within maxSurge/maxUnavailable, progress deadline and the status conditions
`kubectl rollout status` and kstatus read."""

from __future__ import annotations

import datetime as _dt
import functools
from typing import Any

from sandbox.kubesim.controllers.events import EventRecorder
from sandbox.kubesim.controllers.runtime import Requeue, Runtime
from sandbox.kubesim.controllers.util import (
    DEPLOYMENTS,
    REPLICASETS,
    compute_hash,
    controller_ref,
    equal_ignore_hash,
    get_condition,
    now,
    parse_time,
    rfc3339,
    scaled_value,
    semantic,
    template_without_hash,
)
from sandbox.kubesim.store import ApiError, clone

REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
HASH_LABEL = "pod-template-hash"
# deploymentutil.annotationsToSkip: never copied from the Deployment onto its ReplicaSets.
ANNOTATIONS_TO_SKIP = frozenset(
    {
        "kubectl.kubernetes.io/last-applied-configuration",
        REVISION,
        REVISION_HISTORY,
        DESIRED_REPLICAS,
        MAX_REPLICAS,
        "deprecated.deployment.rollback.to",
    }
)
MAX_REV_HISTORY_CHARS = 2000
MAX_INT32 = 2**31 - 1

# Condition reasons (deploymentutil).
NEW_RS_REASON = "NewReplicaSetCreated"
FOUND_NEW_RS_REASON = "FoundNewReplicaSet"
RS_UPDATED_REASON = "ReplicaSetUpdated"
NEW_RS_AVAILABLE_REASON = "NewReplicaSetAvailable"
TIMED_OUT_REASON = "ProgressDeadlineExceeded"
PAUSED_REASON = "DeploymentPaused"
RESUMED_REASON = "DeploymentResumed"
FAILED_RS_CREATE_REASON = "ReplicaSetCreateError"

Obj = dict[str, Any]


# --------------------------------------------------------------------------- deploymentutil


def revision_of(rs: Obj) -> int:
    text = (rs["metadata"].get("annotations") or {}).get(REVISION, "")
    try:
        return int(text) if text else 0
    except ValueError:
        return 0


def max_revision(rss: list[Obj]) -> int:
    return max((revision_of(rs) for rs in rss), default=0)


def replicas(obj: Obj) -> int:
    value = (obj.get("spec") or {}).get("replicas")
    return 1 if value is None else int(value)


def _status(obj: Obj, field: str) -> int:
    return int((obj.get("status") or {}).get(field) or 0)


def _by_creation(rs: Obj) -> tuple[str, str]:
    return (rs["metadata"].get("creationTimestamp", ""), rs["metadata"]["name"])


_TEMPLATE_CACHE: dict[tuple[str, int], Any] = {}


def _template_key(obj: Obj) -> Any:
    """semantic(template without pod-template-hash), memoised per (uid, generation): templates only change
    with the generation, and every Deployment sync compares its template with each of its ReplicaSets'."""
    meta = obj["metadata"]
    key = (meta.get("uid", ""), int(meta.get("generation") or 0))
    cached = _TEMPLATE_CACHE.get(key)
    if cached is None:
        if len(_TEMPLATE_CACHE) > 100_000:
            _TEMPLATE_CACHE.clear()
        cached = semantic(template_without_hash(obj["spec"].get("template") or {}))
        _TEMPLATE_CACHE[key] = cached
    return cached


def find_new_rs(d: Obj, rss: list[Obj]) -> Obj | None:
    """deploymentutil.FindNewReplicaSet: the oldest RS whose template equals the Deployment's
    (EqualIgnoreHash)."""
    template = _template_key(d)
    for rs in sorted(rss, key=_by_creation):
        if _template_key(rs) == template:
            return rs
    return None


def is_rolling(d: Obj) -> bool:
    return ((d["spec"].get("strategy") or {}).get("type") or "RollingUpdate") == "RollingUpdate"


def resolve_fenceposts(d: Obj) -> tuple[int, int]:
    rolling = (d["spec"].get("strategy") or {}).get("rollingUpdate") or {}
    desired = replicas(d)
    surge = scaled_value(rolling.get("maxSurge", "25%"), desired, True)
    unavailable = scaled_value(rolling.get("maxUnavailable", "25%"), desired, False)
    if surge == 0 and unavailable == 0:
        # Validation forbids both being zero; the controller still guards against it.
        unavailable = 1
    return surge, unavailable


def max_surge(d: Obj) -> int:
    if not is_rolling(d):
        return 0
    return resolve_fenceposts(d)[0]


def max_unavailable(d: Obj) -> int:
    if not is_rolling(d) or replicas(d) == 0:
        return 0
    return min(resolve_fenceposts(d)[1], replicas(d))


def has_progress_deadline(d: Obj) -> bool:
    value = d["spec"].get("progressDeadlineSeconds")
    return value is not None and int(value) != MAX_INT32


def spec_replica_sum(rss: list[Obj]) -> int:
    return sum(replicas(rs) for rs in rss if rs is not None)


def active(rss: list[Obj]) -> list[Obj]:
    return [rs for rs in rss if rs is not None and replicas(rs) > 0]


def new_condition(ctype: str, status: str, reason: str, message: str) -> Obj:
    stamp = rfc3339()
    return {
        "type": ctype,
        "status": status,
        "lastUpdateTime": stamp,
        "lastTransitionTime": stamp,
        "reason": reason,
        "message": message,
    }


def set_condition(status: Obj, cond: Obj) -> None:
    """deploymentutil.SetDeploymentCondition: same status+reason is a no-op; same status keeps the
    transition time; a changed condition moves to the end of the list."""
    current = get_condition(status, cond["type"])
    if current is not None and current["status"] == cond["status"] and current.get("reason") == cond["reason"]:
        return
    if current is not None and current["status"] == cond["status"]:
        cond["lastTransitionTime"] = current.get("lastTransitionTime", cond["lastTransitionTime"])
    status["conditions"] = [c for c in status.get("conditions") or [] if c.get("type") != cond["type"]] + [cond]


def remove_condition(status: Obj, ctype: str) -> None:
    conds = [c for c in status.get("conditions") or [] if c.get("type") != ctype]
    if conds:
        status["conditions"] = conds
    else:
        status.pop("conditions", None)


def set_replicas_annotations(rs: Obj, desired: int, max_replicas: int) -> bool:
    ann = rs["metadata"].setdefault("annotations", {})
    changed = False
    for key, value in ((DESIRED_REPLICAS, str(desired)), (MAX_REPLICAS, str(max_replicas))):
        if ann.get(key) != value:
            ann[key] = value
            changed = True
    return changed


def replicas_annotations_need_update(rs: Obj, desired: int, max_replicas: int) -> bool:
    ann = rs["metadata"].get("annotations") or {}
    return ann.get(DESIRED_REPLICAS) != str(desired) or ann.get(MAX_REPLICAS) != str(max_replicas)


def set_new_rs_annotations(d: Obj, rs: Obj, new_revision: int, exists: bool) -> bool:
    """deploymentutil.SetNewReplicaSetAnnotations, including the revision-history bookkeeping."""
    ann = rs["metadata"].setdefault("annotations", {})
    changed = False
    for key, value in (d["metadata"].get("annotations") or {}).items():
        if key in ANNOTATIONS_TO_SKIP or ann.get(key) == value:
            continue
        ann[key] = value
        changed = True
    had_revision = REVISION in ann
    old_text = ann.get(REVISION, "")
    try:
        old_revision = int(old_text) if old_text else 0
    except ValueError:
        return False
    if old_revision < new_revision:
        ann[REVISION] = str(new_revision)
        changed = True
        if had_revision:
            # Rolling back to this ReplicaSet: remember the numbers it had before.
            history = ann.get(REVISION_HISTORY, "")
            if not history:
                ann[REVISION_HISTORY] = old_text
            else:
                parts = history.split(",")
                total = len(history) + len(old_text) + 1
                start = 0
                while total > MAX_REV_HISTORY_CHARS and start < len(parts):
                    total -= len(parts[start]) + 1
                    start += 1
                if total <= MAX_REV_HISTORY_CHARS:
                    ann[REVISION_HISTORY] = ",".join([*parts[start:], old_text])
    if not exists and set_replicas_annotations(rs, replicas(d), replicas(d) + max_surge(d)):
        changed = True
    return changed


def new_rs_new_replicas(d: Obj, all_rss: list[Obj], new_rs: Obj) -> int:
    if not is_rolling(d):
        return replicas(d)
    surge = max_surge(d)
    current = spec_replica_sum(all_rss)
    max_total = replicas(d) + surge
    if current >= max_total:
        return replicas(new_rs)
    scale_up = min(max_total - current, replicas(d) - replicas(new_rs))
    return replicas(new_rs) + scale_up


def deployment_complete(d: Obj, status: Obj) -> bool:
    want = replicas(d)
    return (
        int(status.get("updatedReplicas") or 0) == want
        and int(status.get("replicas") or 0) == want
        and int(status.get("availableReplicas") or 0) == want
        and int(status.get("observedGeneration") or 0) >= int(d["metadata"].get("generation") or 0)
    )


def deployment_progressing(d: Obj, new: Obj) -> bool:
    old = d.get("status") or {}

    def g(s: Obj, k: str) -> int:
        return int(s.get(k) or 0)

    old_old = g(old, "replicas") - g(old, "updatedReplicas")
    new_old = g(new, "replicas") - g(new, "updatedReplicas")
    return (
        g(new, "updatedReplicas") > g(old, "updatedReplicas")
        or new_old < old_old
        or g(new, "readyReplicas") > g(old, "readyReplicas")
        or g(new, "availableReplicas") > g(old, "availableReplicas")
    )


def progress_deadline_at(d: Obj, status: Obj) -> _dt.datetime | None:
    """When the current Progressing condition times out, if it can."""
    if not has_progress_deadline(d):
        return None
    cond = get_condition(status, "Progressing")
    if cond is None or cond.get("reason") in (NEW_RS_AVAILABLE_REASON, TIMED_OUT_REASON):
        return None
    since = parse_time(cond.get("lastUpdateTime"))
    if since is None:
        return None
    return since + _dt.timedelta(seconds=int(d["spec"]["progressDeadlineSeconds"]))


def deployment_timed_out(d: Obj, status: Obj) -> bool:
    if not has_progress_deadline(d):
        return False
    cond = get_condition(status, "Progressing")
    if cond is None or cond.get("reason") == NEW_RS_AVAILABLE_REASON:
        return False
    if cond.get("reason") == TIMED_OUT_REASON:
        return True
    deadline = progress_deadline_at(d, status)
    return deadline is not None and deadline < now()


# --------------------------------------------------------------------------- controller


class DeploymentController:
    def __init__(self, rt: Runtime, events: EventRecorder) -> None:
        self.rt = rt
        self.store = rt.store
        self.events = events
        rt.register("Deployment", self.sync)

    # ------------------------------------------------------------------ writes

    def _event(self, d: Obj, reason: str, message: str, etype: str = "Normal") -> None:
        self.events.record(d, etype, reason, message, component="deployment-controller")

    def _write_status(self, d: Obj, *, annotations_changed: bool = False) -> Obj:
        """UpdateStatus. kubesim's /status write ignores metadata, so the revision annotation goes through a
        main-resource write first (spec unchanged, so the generation does not move)."""
        if annotations_changed:
            status = d.get("status")
            d = self.store.update(DEPLOYMENTS, d)
            if status is not None:
                d["status"] = status
        return self.store.update(DEPLOYMENTS, d, subresource="status")

    def _scale_rs(self, rs: Obj, new_scale: int, d: Obj, operation: str | None = None) -> tuple[bool, Obj]:
        old_scale = replicas(rs)
        size_changed = old_scale != new_scale
        desired, max_total = replicas(d), replicas(d) + max_surge(d)
        if not size_changed and not replicas_annotations_need_update(rs, desired, max_total):
            return False, rs
        # Shallow copy of what changes; the store deep-copies on write.
        rs = {
            **rs,
            "metadata": {**rs["metadata"], "annotations": dict(rs["metadata"].get("annotations") or {})},
            "spec": {**rs["spec"], "replicas": new_scale},
        }
        set_replicas_annotations(rs, desired, max_total)
        rs = self.store.update(REPLICASETS, rs)
        if size_changed:
            op = operation or ("up" if old_scale < new_scale else "down")
            self._event(
                d,
                "ScalingReplicaSet",
                f"Scaled {op} replica set {rs['metadata']['name']} from {old_scale} to {new_scale}",
            )
        return size_changed, rs

    # ------------------------------------------------------------------ sync

    def sync(self, namespace: str, name: str) -> None:
        ref = self.rt.get_ref(DEPLOYMENTS, namespace, name)
        if ref is None:
            return
        # Working copy: status and metadata are edited below, spec is only read.
        d = dict(ref)
        d["metadata"] = dict(ref["metadata"])
        if "annotations" in ref["metadata"]:
            d["metadata"]["annotations"] = dict(ref["metadata"]["annotations"])
        d["status"] = clone(ref.get("status") or {})
        selector = d["spec"].get("selector") or {}
        if not selector.get("matchLabels") and not selector.get("matchExpressions"):
            return  # an empty selector would match every pod; the real controller refuses too
        # Adopt orphaned ReplicaSets (e.g. left by `kubectl delete --cascade=orphan`) before looking for ours.
        self.rt.adopt(d, REPLICASETS, selector)
        rss = self.rt.owned(d["metadata"]["uid"], REPLICASETS)
        if d["metadata"].get("deletionTimestamp"):
            self._sync_status_only(d, rss)
            return
        d = self._check_paused_conditions(d)
        if d["spec"].get("paused"):
            self._sync_scale(d, rss)
            return
        if self._is_scaling_event(d, rss):
            self._sync_scale(d, rss)
            return
        if is_rolling(d):
            self._rollout_rolling(d, rss)
        else:
            self._rollout_recreate(d, rss)

    def _check_paused_conditions(self, d: Obj) -> Obj:
        if not has_progress_deadline(d):
            return d
        cond = get_condition(d["status"], "Progressing")
        if cond is not None and cond.get("reason") == TIMED_OUT_REASON:
            return d
        paused_cond = cond is not None and cond.get("reason") == PAUSED_REASON
        if d["spec"].get("paused") and not paused_cond:
            set_condition(d["status"], new_condition("Progressing", "Unknown", PAUSED_REASON, "Deployment is paused"))
        elif not d["spec"].get("paused") and paused_cond:
            set_condition(d["status"], new_condition("Progressing", "Unknown", RESUMED_REASON, "Deployment is resumed"))
        else:
            return d
        return self._write_status(d)

    def _get_all_rss_and_sync_revision(self, d: Obj, rss: list[Obj], create: bool) -> tuple[Obj | None, list[Obj], Obj]:
        """getAllReplicaSetsAndSyncRevision: returns (newRS, allOldRSs, deployment)."""
        existing = find_new_rs(d, rss)
        old = [rs for rs in rss if rs is not existing]
        new_revision = max_revision(old) + 1
        if existing is not None:
            rs = clone(existing)
            ann_changed = set_new_rs_annotations(d, rs, new_revision, exists=True)
            min_ready = d["spec"].get("minReadySeconds") or 0
            if ann_changed or (rs["spec"].get("minReadySeconds") or 0) != min_ready:
                if min_ready:
                    rs["spec"]["minReadySeconds"] = min_ready
                else:
                    rs["spec"].pop("minReadySeconds", None)
                rs = self.store.update(REPLICASETS, rs)
                # The real controller returns here and syncs the Deployment revision on the next pass,
                # which our own RS update event triggers.
                return rs, old, d
            needs_update = self._set_deployment_revision(d, rs["metadata"]["annotations"].get(REVISION, ""))
            ann_changed = needs_update
            if has_progress_deadline(d) and get_condition(d["status"], "Progressing") is None:
                set_condition(
                    d["status"],
                    new_condition(
                        "Progressing", "True", FOUND_NEW_RS_REASON, f'Found new replica set "{rs["metadata"]["name"]}"'
                    ),
                )
                needs_update = True
            if needs_update:
                d = self._write_status(d, annotations_changed=ann_changed)
            return rs, old, d
        if not create:
            return None, old, d
        return self._create_new_rs(d, old, new_revision)

    def _set_deployment_revision(self, d: Obj, revision: str) -> bool:
        ann = d["metadata"].setdefault("annotations", {})
        if ann.get(REVISION) != revision:
            ann[REVISION] = revision
            return True
        return False

    def _create_new_rs(self, d: Obj, old: list[Obj], new_revision: int) -> tuple[Obj | None, list[Obj], Obj]:
        collision = (d.get("status") or {}).get("collisionCount")
        template = clone(d["spec"].get("template") or {})
        pod_hash = compute_hash(template, collision)
        tmeta = template.setdefault("metadata", {})
        labels = dict(tmeta.get("labels") or {})
        labels[HASH_LABEL] = pod_hash
        tmeta["labels"] = labels
        selector = clone(d["spec"]["selector"])
        selector.setdefault("matchLabels", {})[HASH_LABEL] = pod_hash
        rs_name = f"{d['metadata']['name']}-{pod_hash}"
        spec: Obj = {"replicas": 0, "selector": selector, "template": template}
        if d["spec"].get("minReadySeconds"):
            spec["minReadySeconds"] = d["spec"]["minReadySeconds"]
        rs: Obj = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": rs_name,
                "namespace": d["metadata"]["namespace"],
                "labels": dict(labels),
                "ownerReferences": [controller_ref(d)],
            },
            "spec": spec,
        }
        count = new_rs_new_replicas(d, [*old, rs], rs)
        spec["replicas"] = count
        set_new_rs_annotations(d, rs, new_revision, exists=False)
        already_exists = False
        try:
            created = self.store.create(REPLICASETS, rs)
        except ApiError as exc:
            if exc.code != 409:
                if has_progress_deadline(d):
                    msg = f'Failed to create new replica set "{rs_name}": {exc.message}'
                    set_condition(d["status"], new_condition("Progressing", "False", FAILED_RS_CREATE_REASON, msg))
                    self._write_status(d)
                raise
            found = self.rt.get_ref(REPLICASETS, d["metadata"]["namespace"], rs_name)
            owner = next(
                (r for r in (found or {}).get("metadata", {}).get("ownerReferences") or [] if r.get("controller")),
                None,
            )
            if (
                found is not None
                and owner is not None
                and owner.get("uid") == d["metadata"]["uid"]
                and equal_ignore_hash(d["spec"]["template"], found["spec"]["template"])
            ):
                created = clone(found)
                already_exists = True
            else:
                # Hash collision with a ReplicaSet we do not own: bump collisionCount and retry.
                d["status"]["collisionCount"] = int(d["status"].get("collisionCount") or 0) + 1
                self._write_status(d)
                raise Requeue(0) from exc
        if not already_exists and count > 0:
            self._event(d, "ScalingReplicaSet", f"Scaled up replica set {rs_name} from 0 to {count}")
        needs_update = self._set_deployment_revision(d, str(new_revision))
        ann_changed = needs_update
        if not already_exists and has_progress_deadline(d):
            set_condition(
                d["status"],
                new_condition("Progressing", "True", NEW_RS_REASON, f'Created new replica set "{rs_name}"'),
            )
            needs_update = True
        if needs_update:
            d = self._write_status(d, annotations_changed=ann_changed)
        return created, old, d

    def _is_scaling_event(self, d: Obj, rss: list[Obj]) -> bool:
        new_rs = find_new_rs(d, rss)
        old = [rs for rs in rss if rs is not new_rs]
        for rs in active([*old, new_rs] if new_rs is not None else old):
            text = (rs["metadata"].get("annotations") or {}).get(DESIRED_REPLICAS)
            if text is None:
                continue
            try:
                desired = int(text)
            except ValueError:
                continue
            if desired != replicas(d):
                return True
        return False

    # ------------------------------------------------------------------ scaling (sync.go)

    def _sync_scale(self, d: Obj, rss: list[Obj]) -> None:
        new_rs, old, d = self._get_all_rss_and_sync_revision(d, rss, create=False)
        new_rs, old = self._scale(d, new_rs, old)
        if d["spec"].get("paused"):
            self._cleanup(d, old)
        all_rss = [*old, new_rs] if new_rs is not None else old
        self._sync_status_only(d, all_rss, new_rs)

    def _scale(self, d: Obj, new_rs: Obj | None, old: list[Obj]) -> tuple[Obj | None, list[Obj]]:
        def replace(rs: Obj, updated: Obj) -> None:
            nonlocal new_rs
            if new_rs is rs:
                new_rs = updated
            else:
                old[old.index(rs)] = updated

        target = self._active_or_latest(new_rs, old)
        if target is not None:
            if replicas(target) != replicas(d):
                _, updated = self._scale_rs(target, replicas(d), d)
                replace(target, updated)
            return new_rs, old
        if self._is_saturated(d, new_rs):
            for rs in active(list(old)):
                _, updated = self._scale_rs(rs, 0, d)
                replace(rs, updated)
            return new_rs, old
        if not is_rolling(d):
            return new_rs, old
        all_active = active([*old, new_rs] if new_rs is not None else list(old))
        allowed = replicas(d) + max_surge(d) if replicas(d) > 0 else 0
        to_add = allowed - spec_replica_sum(all_active)
        operation = ""
        if to_add > 0:
            # ReplicaSetsBySizeNewer: larger first, newer first on ties.
            all_active.sort(key=lambda r: (replicas(r), _by_creation(r)), reverse=True)
            operation = "up"
        elif to_add < 0:
            # ReplicaSetsBySizeOlder: larger first, older first on ties.
            all_active.sort(key=functools.cmp_to_key(_cmp_size_older))
            operation = "down"
        added = 0
        sizes: dict[str, int] = {}
        for rs in all_active:
            if to_add != 0:
                proportion = self._proportion(rs, d, to_add, added)
                sizes[rs["metadata"]["name"]] = replicas(rs) + proportion
                added += proportion
            else:
                sizes[rs["metadata"]["name"]] = replicas(rs)
        for i, rs in enumerate(all_active):
            name = rs["metadata"]["name"]
            if i == 0 and to_add != 0:
                sizes[name] = max(0, sizes[name] + to_add - added)
            _, updated = self._scale_rs(rs, sizes[name], d, operation or None)
            replace(rs, updated)
        return new_rs, old

    @staticmethod
    def _active_or_latest(new_rs: Obj | None, old: list[Obj]) -> Obj | None:
        if new_rs is None and not old:
            return None
        newest_first = sorted(old, key=_by_creation, reverse=True)
        candidates = active([*newest_first, new_rs] if new_rs is not None else newest_first)
        if not candidates:
            return new_rs if new_rs is not None else newest_first[0]
        if len(candidates) == 1:
            return candidates[0]
        return None

    @staticmethod
    def _is_saturated(d: Obj, rs: Obj | None) -> bool:
        if rs is None:
            return False
        desired = (rs["metadata"].get("annotations") or {}).get(DESIRED_REPLICAS)
        return (
            desired == str(replicas(d))
            and replicas(rs) == replicas(d)
            and _status(rs, "availableReplicas") == replicas(d)
        )

    @staticmethod
    def _proportion(rs: Obj, d: Obj, to_add: int, added: int) -> int:
        if replicas(rs) == 0 or to_add == 0 or to_add == added:
            return 0
        if replicas(d) == 0:
            fraction = -replicas(rs)
        else:
            max_now = replicas(d) + max_surge(d)
            try:
                before = int((rs["metadata"].get("annotations") or {}).get(MAX_REPLICAS, "0"))
            except ValueError:
                before = 0
            if before == 0:
                before = _status(d, "replicas")
            fraction = round(replicas(rs) * max_now / before) - replicas(rs) if before else 0
        allowed = to_add - added
        return min(fraction, allowed) if to_add > 0 else max(fraction, allowed)

    # ------------------------------------------------------------------ rolling (rolling.go)

    def _rollout_rolling(self, d: Obj, rss: list[Obj]) -> None:
        new_rs, old, d = self._get_all_rss_and_sync_revision(d, rss, create=True)
        if new_rs is None:
            return
        all_rss = [*old, new_rs]
        scaled_up, new_rs = self._reconcile_new_rs(all_rss, new_rs, d)
        all_rss = [*old, new_rs]
        if scaled_up:
            self._sync_rollout_status(all_rss, new_rs, d)
            return
        scaled_down, old = self._reconcile_old_rss(all_rss, active(old), old, new_rs, d)
        all_rss = [*old, new_rs]
        if scaled_down:
            self._sync_rollout_status(all_rss, new_rs, d)
            return
        if deployment_complete(d, d.get("status") or {}):
            self._cleanup(d, old)
        self._sync_rollout_status(all_rss, new_rs, d)

    def _reconcile_new_rs(self, all_rss: list[Obj], new_rs: Obj, d: Obj) -> tuple[bool, Obj]:
        if replicas(new_rs) == replicas(d):
            return False, new_rs
        if replicas(new_rs) > replicas(d):
            return self._scale_rs(new_rs, replicas(d), d)
        return self._scale_rs(new_rs, new_rs_new_replicas(d, all_rss, new_rs), d)

    def _reconcile_old_rss(
        self, all_rss: list[Obj], old_active: list[Obj], old_all: list[Obj], new_rs: Obj, d: Obj
    ) -> tuple[bool, list[Obj]]:
        old_all = list(old_all)

        def replace(rs: Obj, updated: Obj) -> None:
            for lst in (old_all, old_active, all_rss):
                for i, x in enumerate(lst):
                    if x is rs:
                        lst[i] = updated

        if spec_replica_sum(old_active) == 0:
            return False, old_all
        all_pods = spec_replica_sum(all_rss)
        min_available = replicas(d) - max_unavailable(d)
        new_unavailable = replicas(new_rs) - _status(new_rs, "availableReplicas")
        max_scaled_down = all_pods - min_available - new_unavailable
        if max_scaled_down <= 0:
            return False, old_all
        # cleanupUnhealthyReplicas: scale down old RSs' unavailable pods first; they cost no availability.
        cleaned = 0
        for rs in sorted(old_active, key=_by_creation):
            if cleaned >= max_scaled_down:
                break
            if replicas(rs) == 0:
                continue
            available = _status(rs, "availableReplicas")
            if replicas(rs) == available:
                continue
            count = min(max_scaled_down - cleaned, replicas(rs) - available)
            _, updated = self._scale_rs(rs, replicas(rs) - count, d)
            replace(rs, updated)
            cleaned += count
        # scaleDownOldReplicaSetsForRollingUpdate
        scaled = 0
        available_total = sum(_status(rs, "availableReplicas") for rs in all_rss)
        if available_total > min_available:
            budget = available_total - min_available
            for rs in sorted(old_active, key=_by_creation):
                if scaled >= budget:
                    break
                if replicas(rs) == 0:
                    continue
                count = min(replicas(rs), budget - scaled)
                _, updated = self._scale_rs(rs, replicas(rs) - count, d)
                replace(rs, updated)
                scaled += count
        return cleaned + scaled > 0, old_all

    # ------------------------------------------------------------------ recreate (recreate.go)

    def _rollout_recreate(self, d: Obj, rss: list[Obj]) -> None:
        new_rs, old, d = self._get_all_rss_and_sync_revision(d, rss, create=False)
        scaled_down = False
        for i, rs in enumerate(old):
            if replicas(rs) > 0:
                changed, old[i] = self._scale_rs(rs, 0, d)
                scaled_down = scaled_down or changed
        all_rss = [*old, new_rs] if new_rs is not None else old
        if scaled_down:
            self._sync_rollout_status(all_rss, new_rs, d)
            return
        if any(_status(rs, "replicas") > 0 for rs in old):
            self._sync_rollout_status(all_rss, new_rs, d)
            return
        if new_rs is None:
            new_rs, old, d = self._get_all_rss_and_sync_revision(d, rss, create=True)
            if new_rs is None:
                return
        _, new_rs = self._scale_rs(new_rs, replicas(d), d)
        all_rss = [*old, new_rs]
        if deployment_complete(d, d.get("status") or {}):
            self._cleanup(d, old)
        self._sync_rollout_status(all_rss, new_rs, d)

    # ------------------------------------------------------------------ cleanup and status

    def _cleanup(self, d: Obj, old: list[Obj]) -> None:
        """cleanupDeployment: keep spec.revisionHistoryLimit old ReplicaSets, deleting the oldest first."""
        limit = d["spec"].get("revisionHistoryLimit")
        if limit is None:
            return
        candidates = [rs for rs in old if rs is not None and not rs["metadata"].get("deletionTimestamp")]
        diff = len(candidates) - int(limit)
        if diff <= 0:
            return
        candidates.sort(key=lambda r: (revision_of(r), _by_creation(r)))
        for rs in candidates[:diff]:
            if (
                _status(rs, "replicas") != 0
                or replicas(rs) != 0
                or int(rs["metadata"].get("generation") or 0) > _status(rs, "observedGeneration")
            ):
                continue
            try:
                self.store.delete(REPLICASETS, rs["metadata"]["namespace"], rs["metadata"]["name"])
            except ApiError as exc:
                if exc.code != 404:
                    raise

    def _calculate_status(self, all_rss: list[Obj], new_rs: Obj | None, d: Obj) -> Obj:
        rss = [rs for rs in all_rss if rs is not None]
        available = sum(_status(rs, "availableReplicas") for rs in rss)
        total = spec_replica_sum(rss)
        status: Obj = {
            "observedGeneration": int(d["metadata"].get("generation") or 0),
            "replicas": sum(_status(rs, "replicas") for rs in rss),
            "updatedReplicas": _status(new_rs, "replicas") if new_rs is not None else 0,
            "readyReplicas": sum(_status(rs, "readyReplicas") for rs in rss),
            "availableReplicas": available,
            "unavailableReplicas": max(0, total - available),
        }
        old = d.get("status") or {}
        if old.get("collisionCount") is not None:
            status["collisionCount"] = old["collisionCount"]
        if old.get("conditions"):
            status["conditions"] = [dict(c) for c in old["conditions"]]
        if available >= replicas(d) - max_unavailable(d):
            cond = new_condition(
                "Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability."
            )
        else:
            cond = new_condition(
                "Available", "False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability."
            )
        set_condition(status, cond)
        # The API omits zero-valued counters (omitempty), and clients rely on absent == 0.
        for key in ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas", "unavailableReplicas"):
            if not status[key]:
                del status[key]
        return status

    def _sync_status_only(self, d: Obj, all_rss: list[Obj], new_rs: Obj | None = None) -> None:
        if new_rs is None:
            new_rs = find_new_rs(d, all_rss)
        status = self._calculate_status(all_rss, new_rs, d)
        if status != d.get("status"):
            d["status"] = status
            self._write_status(d)

    def _sync_rollout_status(self, all_rss: list[Obj], new_rs: Obj | None, d: Obj) -> None:
        """progress.go syncRolloutStatus."""
        status = self._calculate_status(all_rss, new_rs, d)
        if not has_progress_deadline(d):
            remove_condition(status, "Progressing")
        current = get_condition(d.get("status") or {}, "Progressing")
        complete_already = (
            int(status.get("replicas") or 0) == int(status.get("updatedReplicas") or 0)
            and current is not None
            and current.get("reason") == NEW_RS_AVAILABLE_REASON
        )
        rs_name = new_rs["metadata"]["name"] if new_rs is not None else None
        if has_progress_deadline(d) and not complete_already:
            if deployment_complete(d, status):
                msg = (
                    f'ReplicaSet "{rs_name}" has successfully progressed.'
                    if rs_name
                    else f'Deployment "{d["metadata"]["name"]}" has successfully progressed.'
                )
                set_condition(status, new_condition("Progressing", "True", NEW_RS_AVAILABLE_REASON, msg))
            elif deployment_progressing(d, status):
                msg = (
                    f'ReplicaSet "{rs_name}" is progressing.'
                    if rs_name
                    else f'Deployment "{d["metadata"]["name"]}" is progressing.'
                )
                cond = new_condition("Progressing", "True", RS_UPDATED_REASON, msg)
                if current is not None:
                    if current.get("status") == "True":
                        cond["lastTransitionTime"] = current.get("lastTransitionTime", cond["lastTransitionTime"])
                    remove_condition(status, "Progressing")
                set_condition(status, cond)
            elif deployment_timed_out(d, status):
                msg = (
                    f'ReplicaSet "{rs_name}" has timed out progressing.'
                    if rs_name
                    else f'Deployment "{d["metadata"]["name"]}" has timed out progressing.'
                )
                set_condition(status, new_condition("Progressing", "False", TIMED_OUT_REASON, msg))
        if status != d.get("status"):
            d["status"] = status
            d = self._write_status(d)
        # requeueStuckDeployment: come back when the progress deadline would expire.
        deadline = progress_deadline_at(d, d.get("status") or {})
        if deadline is not None and not deployment_complete(d, d.get("status") or {}):
            delay = (deadline - now()).total_seconds() + 1.0
            ns, name = d["metadata"]["namespace"], d["metadata"]["name"]
            self.rt.queue.add_after(("Deployment", ns, name), max(delay, 0.05))


def _cmp_size_older(a: Obj, b: Obj) -> int:
    if replicas(a) != replicas(b):
        return -1 if replicas(a) > replicas(b) else 1
    ka, kb = _by_creation(a), _by_creation(b)
    return -1 if ka < kb else (1 if ka > kb else 0)
