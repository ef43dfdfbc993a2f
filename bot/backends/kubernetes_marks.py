"""How a Kubernetes rollback recognises its own work: the operation's mark on the workload it patched.

`roll_back` may be called again for the same operation (a replica took over after the first one crashed). The
pod template alone cannot tell "this operation already rolled back" from "someone deployed since": both leave
the workload off the plan's starting point. So the rollback patch also writes, in the same request, two
annotations on the workload's own metadata (never on the pod template, which would make a new revision):

    rollbot.dev/operation: op-1a2b3c       the operation that last rolled this workload back
    rollbot.dev/rolled-back-to: "5"        the revision it rolled back to, for people reading the object

`decide_rollback` then reads the workload as it is now and answers, without I/O:

- our mark and the target template: already applied, return the receipt and change nothing;
- our mark and any other template: someone changed it after our rollback; refuse, never roll back over it;
- no mark of ours, the target template: already there (someone ran `kubectl rollout undo`); nothing to do;
- no mark of ours, the plan's starting template: apply the rollback;
- no mark of ours, any other template: someone deployed since the plan was approved; refuse.

Other changes to the workload (a `kubectl set image`, a `kubectl apply`) leave annotations they do not own in
place, so a mark outlives later deploys; that is why it is always read together with the template.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from enum import StrEnum

from bot.backends import kubernetes_interpret as rules
from bot.core.catalog import WorkloadKind
from bot.core.errors import RollbackRefused
from bot.core.rollouts import RollbackPlan

OPERATION_ANNOTATION = "rollbot.dev/operation"
ROLLED_BACK_TO_ANNOTATION = "rollbot.dev/rolled-back-to"
# The plan's `backend_data` key holding the fingerprint of the template the rollback starts from.
FROM_TEMPLATE_KEY = "from_template"


class RollbackDecision(StrEnum):
    APPLY = "apply"
    # This operation's patch is already in place (a takeover): return the receipt, patch nothing.
    APPLIED_BY_THIS_OPERATION = "applied-by-this-operation"
    # The workload already runs the target template, put there by someone else: patch nothing.
    ALREADY_THERE = "already-there"


def rollback_mark(operation_id: str, to_revision: int) -> dict[str, str]:
    """The annotations a rollback writes on the workload's metadata, in the same patch as the template."""
    return {OPERATION_ANNOTATION: operation_id, ROLLED_BACK_TO_ANNOTATION: str(to_revision)}


def template_fingerprint(template: rules.Obj) -> str:
    """A short digest of a pod template, equal exactly when kubectl's EqualIgnoreHash says so."""
    canonical = json.dumps(rules.normalized(rules.template_without_hash(template)), sort_keys=True)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:32]


def decide_rollback(
    workload: rules.Obj,
    kind: WorkloadKind,
    history: Sequence[rules.HistoryEntry],
    chosen: rules.HistoryEntry,
    plan: RollbackPlan,
    operation_id: str,
) -> RollbackDecision:
    """Whether to patch now; raises RollbackRefused when the workload moved under the approved plan."""
    template = rules.workload_template(workload)
    is_marked_by_us = rules.annotations_of(workload).get(OPERATION_ANNOTATION) == operation_id
    if rules.templates_equal(chosen.template, template):
        return RollbackDecision.APPLIED_BY_THIS_OPERATION if is_marked_by_us else RollbackDecision.ALREADY_THERE
    label = f"{rules.KIND_WORDS[kind][1]}/{rules.metadata(workload).get('name', '?')}"
    now = _describe_current(workload, history)
    if is_marked_by_us:
        raise RollbackRefused(
            f"this operation already rolled {label} back to revision {plan.to_revision}, but it has changed "
            f"since: {now}. Not rolling back over it; request the rollback again if it is still needed"
        )
    if not _is_at_plan_start(workload, history, plan):
        raise RollbackRefused(
            f"{label} changed since this rollback was approved: {now}, not revision {plan.from_revision}. "
            "Not rolling back over it; request the rollback again if it is still needed"
        )
    return RollbackDecision.APPLY


def _is_at_plan_start(workload: rules.Obj, history: Sequence[rules.HistoryEntry], plan: RollbackPlan) -> bool:
    planned = plan.backend_data.get(FROM_TEMPLATE_KEY)
    if planned:
        return template_fingerprint(rules.workload_template(workload)) == planned
    # A plan made before plans carried the fingerprint: the revision number is the next best evidence.
    current = rules.current_entry(workload, history)
    return current is not None and current.revision == plan.from_revision


def _describe_current(workload: rules.Obj, history: Sequence[rules.HistoryEntry]) -> str:
    current = rules.current_entry(workload, history)
    where = f"now at revision {current.revision}" if current else "now running a template not in its history yet"
    images = ", ".join(f"image {found.image}" for found in rules.images_of(rules.workload_template(workload))[:3])
    return f"{where} ({images})" if images else where
