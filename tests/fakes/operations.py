"""Plausible `Operation`s for tests: `make_operation(phase=Phase.APPROVED)` and go.

Defaults describe `/rollback workshop` (helm release default/workshop, revision 3 → 2) requested by U0AAA in
C0INCIDENT at the ManualClock's default start. Every call gets a fresh id unless `id=` is given.
"""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import Any

from bot.core.catalog import (
    ApprovalPolicy,
    ChannelId,
    EcsTarget,
    HelmTarget,
    KubernetesTarget,
    SlackUserId,
    Target,
    TargetName,
    WorkloadKind,
)
from bot.core.operations import BatchMember, Operation, OperationId, Phase
from bot.core.rollouts import Change, RevisionNumber, RollbackPlan
from tests.fakes.clock import DEFAULT_START

_ids = itertools.count(0x1A2B)

REQUESTER = SlackUserId("U0AAA")
APPROVER = SlackUserId("U0BBB")
CHANNEL = ChannelId("C0INCIDENT")


def next_operation_id() -> OperationId:
    return OperationId(f"op-{next(_ids):04x}")


def make_policy(**overrides: Any) -> ApprovalPolicy:
    fields: dict[str, Any] = {"required": 1, "approvers": (REQUESTER, APPROVER)}
    return ApprovalPolicy(**(fields | overrides))


def make_target(name: str = "workshop", backend: str = "helm", **policy: Any) -> Target:
    """A resolved catalog entry; `backend` is helm, kubernetes or ecs; keyword arguments tune the policy."""
    specs = {
        "helm": HelmTarget(release=name, namespace="default", kube_context="sandbox"),
        "kubernetes": KubernetesTarget(kind=WorkloadKind.DEPLOYMENT, name=name, namespace="default"),
        "ecs": EcsTarget(cluster="default", service=name, region="ap-northeast-1"),
    }
    return Target(name=TargetName(name), spec=specs[backend], policy=make_policy(**policy))


def make_plan(from_revision: int = 3, to_revision: int = 2) -> RollbackPlan:
    return RollbackPlan(
        from_revision=RevisionNumber(from_revision),
        to_revision=RevisionNumber(to_revision),
        changes=(
            Change(
                scope="container workshop",
                field="image",
                before=f"ghcr.io/acme/workshop:1.{from_revision}.0",
                after=f"ghcr.io/acme/workshop:1.{to_revision}.0",
            ),
        ),
        notes=(f"chart workshop-0.{to_revision}.0",),
    )


def make_operation(*, now: datetime = DEFAULT_START, **overrides: Any) -> Operation:
    """An AWAITING_APPROVAL rollback of `workshop`; any `Operation` field can be overridden."""
    target = overrides.pop("target", None) or make_target()
    phase = overrides.get("phase", Phase.AWAITING_APPROVAL)
    fields: dict[str, Any] = {
        "id": next_operation_id(),
        "version": 1,
        "phase": phase,
        "target": target,
        "requester": REQUESTER,
        "channel": CHANNEL,
        "created_at": now,
        "updated_at": now,
        "expires_at": now + target.policy.expires_after,
        "requested_revision": RevisionNumber(2),
        "plan": make_plan(),
        "reason": "500s after deploy",
        "is_dry_run": phase is Phase.PREVIEW,
    }
    return Operation(**(fields | overrides))


def advanced(operation: Operation, **update: Any) -> Operation:
    """The next version of `operation` (what a transition produces), e.g. `advanced(op, phase=Phase.APPROVED)`."""
    return operation.model_copy(update={"version": operation.version + 1} | update)


def make_batch(
    names: tuple[str, ...] = ("bootcamp", "workshop", "api"),
    backends: tuple[str, ...] = ("kubernetes", "helm", "ecs"),
    **overrides: Any,
) -> Operation:
    """An AWAITING_APPROVAL batch (`/rollback bootcamp workshop api`), one member per name, each 3 → 2."""
    from bot.core.batches import BATCH_PLAN, batch_target

    phase = overrides.get("phase", Phase.AWAITING_APPROVAL)
    targets = [make_target(name, backend) for name, backend in zip(names, backends, strict=True)]
    members = tuple(BatchMember(target=target, plan=make_plan(), phase=phase) for target in targets)
    fields: dict[str, Any] = {"target": batch_target(targets), "plan": BATCH_PLAN, "members": members}
    return make_operation(**(fields | overrides))
