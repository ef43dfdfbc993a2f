"""Batch requests: `/rollback shop` or `/rollback bootcamp workshop api`, up to the one operation to store.

Every member is resolved, checked and planned (in parallel, bounded: a mass outage may name a hundred
targets) before anything is stored; a member that cannot be planned refuses the whole batch with a message
naming it, so nobody approves a batch that would silently skip a target. Explicit revisions are refused: each
member rolls back to its own previous revision. Storing the operation (all locks or none) and posting the
request message are the same as for one target (`requests`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Final

from bot.core.batches import BATCH_PLAN, batch_target
from bot.core.catalog import Catalog, ChannelId, SlackUserId, Target
from bot.core.commands import RollbackCommand, TargetRef, validate_options
from bot.core.errors import NothingToDo, RevisionNotFound, UserError
from bot.core.operations import BatchMember, Operation, OperationId, Phase
from bot.core.rollouts import RevisionNumber, RollbackPlan
from bot.core.targets import resolve_target
from bot.ports import Backend

# How many members are planned (and later rolled back) at once: enough to be quick for dozens of targets,
# few enough not to hammer one API server or exhaust a small replica's threads.
BATCH_CONCURRENCY: Final = 6


def is_batch(command: RollbackCommand, catalog: Catalog) -> bool:
    return bool(command.more_targets) or (
        not command.target.is_ad_hoc and catalog.group(command.target.name) is not None
    )


def plan_batch(
    command: RollbackCommand,
    *,
    catalog: Catalog,
    backend_of: Callable[[Target], Backend],
    user: SlackUserId,
    channel: ChannelId,
    operation_id: OperationId,
    now: datetime,
) -> Operation:
    """The batch operation `command` asks for. Raises UserError naming the member (or the rule) at fault."""
    if command.to_revision is not None:
        raise UserError(
            f"a batch rolls every target back to its previous revision — drop `{command.to_revision}`, "
            "or roll one target back on its own to pick a revision"
        )
    group = None if command.more_targets else command.target.name
    targets = [resolve_target(ref, catalog) for ref in _expanded(command.targets, catalog)]
    with ThreadPoolExecutor(max_workers=min(BATCH_CONCURRENCY, len(targets))) as pool:
        plans = list(pool.map(lambda target: _plan(command, target, backend_of(target)), targets))
    try:
        batch = batch_target(targets, group)
    except ValueError as exc:
        raise UserError(f"nobody could approve this batch: {exc}") from exc
    phase = Phase.PREVIEW if command.dry_run else Phase.AWAITING_APPROVAL
    members = tuple(
        BatchMember(target=target, plan=plan, phase=phase) for target, plan in zip(targets, plans, strict=True)
    )
    return Operation(
        id=operation_id,
        phase=phase,
        target=batch,
        requester=user,
        channel=channel,
        created_at=now,
        updated_at=now,
        expires_at=now + batch.policy.expires_after,
        plan=BATCH_PLAN,
        reason=command.reason,
        is_dry_run=command.dry_run,
        members=members,
    )


def plan_incident_batch(
    members: Sequence[tuple[Target, RevisionNumber]],
    *,
    backend_of: Callable[[Target], Backend],
    user: SlackUserId,
    channel: ChannelId,
    operation_id: OperationId,
    group_id: str,
    now: datetime,
) -> Operation | None:
    """The batch a mass failure's "Roll back all" asks for: each member back to its incident's last good revision.

    A member already at that revision is left out; any other member that cannot be planned refuses the batch
    with a message naming it. None when nothing is left to roll back.
    """

    def plan(member: tuple[Target, RevisionNumber]) -> tuple[Target, RollbackPlan] | None:
        target, revision = member
        backend = backend_of(target)
        try:
            backend.check_target(target)
            return target, backend.plan_rollback(target, revision, {})
        except NothingToDo:
            return None
        except UserError as exc:
            raise UserError(f"{target.name}: {exc}") from exc

    with ThreadPoolExecutor(max_workers=max(1, min(BATCH_CONCURRENCY, len(members)))) as pool:
        planned = [each for each in pool.map(plan, members) if each is not None]
    if not planned:
        return None
    try:
        batch = batch_target([target for target, _ in planned], f"mass failure {group_id}")
    except ValueError as exc:
        raise UserError(f"nobody could approve this batch: {exc}") from exc
    return Operation(
        id=operation_id,
        phase=Phase.AWAITING_APPROVAL,
        target=batch,
        requester=user,
        channel=channel,
        created_at=now,
        updated_at=now,
        expires_at=now + batch.policy.expires_after,
        plan=BATCH_PLAN,
        members=tuple(BatchMember(target=t, plan=p, phase=Phase.AWAITING_APPROVAL) for t, p in planned),
        source="detected",
        incident_id=group_id,
    )


def _expanded(refs: Sequence[TargetRef], catalog: Catalog) -> list[TargetRef]:
    """Groups replaced by their members; a target named twice (directly and through a group) counts once."""
    expanded: list[TargetRef] = []
    for ref in refs:
        members = None if ref.is_ad_hoc else catalog.group(ref.name)
        for each in [TargetRef.catalog(name) for name in members] if members else [ref]:
            if each not in expanded:
                expanded.append(each)
    if len(expanded) < 2:
        raise UserError("a batch needs at least two different targets")
    return expanded


def _plan(command: RollbackCommand, target: Target, backend: Backend) -> RollbackPlan:
    try:
        backend.check_target(target)
        validate_options(command, backend.options())
        return backend.plan_rollback(target, None, command.options)
    except NothingToDo as exc:
        raise UserError(f"{target.name}: nothing to roll back ({exc}) — leave it out of the batch") from exc
    except RevisionNotFound as exc:
        raise UserError(f"{target.name}: {exc or 'no previous revision'} — leave it out of the batch") from exc
    except UserError as exc:
        raise UserError(f"{target.name}: {exc}") from exc
