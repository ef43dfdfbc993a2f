"""Batches: one request that rolls several targets back together (`/rollback shop`, `/rollback a b c`).

A batch is an ordinary `Operation` whose `members` carry each target's plan, phase and outcome, so votes,
expiry, fencing, the store's compare-and-set and the request message all work as for one target. What differs
lives here, as pure functions the lifecycle calls:

- `batch_target`: the batch's own `Target` — named after the group (or the members joined by `+`), guarded by
  the strictest policy of its members (`catalog.strictest_policy`);
- member events (`MemberReceiptRecorded`, `MemberObserved`, `MemberErrored`), which the one executor that owns
  the batch's lease stores as its members' rollouts progress;
- `settle_members`: what a batch that ends (or never runs) leaves its unfinished members at.

The batch's own phase is SUCCEEDED only when every member succeeded, else FAILED; it ends when its last member
does. This module deliberately knows nothing about threads or backends: running members in parallel is
`bot.flows.batch`'s job.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from bot.core.catalog import Target, TargetName
from bot.core.catalog_approvals import strictest_policy
from bot.core.messages import decisions as words
from bot.core.operations import BatchMember, Operation, Phase
from bot.core.rollouts import RevisionNumber, RollbackPlan, RollbackReceipt, RolloutPhase, RolloutStatus

# A batch's own plan says nothing (every member has its own); revision 0 is helm's "previous", never shown.
BATCH_PLAN: Final = RollbackPlan(from_revision=RevisionNumber(0), to_revision=RevisionNumber(0))


@dataclass(frozen=True)
class MemberReceiptRecorded:
    """A member's backend accepted its rollback."""

    target: str
    receipt: RollbackReceipt


@dataclass(frozen=True)
class MemberObserved:
    """A member's rollout status; a finished one ends the member."""

    target: str
    status: RolloutStatus


@dataclass(frozen=True)
class MemberErrored:
    """A member could not be rolled back or watched; the others go on."""

    target: str
    reason: str


MemberEvent = MemberReceiptRecorded | MemberObserved | MemberErrored


def batch_name(names: Sequence[str], group: str | None = None) -> TargetName:
    """How the batch is called in messages: its group's name, else its members joined (`bootcamp+api`)."""
    return TargetName(group if group is not None else "+".join(names))


def batch_target(members: Sequence[Target], group: str | None = None) -> Target:
    """The batch's own target: its name and the strictest policy of its members. Raises ValueError when nobody
    could approve every member (the message says why)."""
    policy = strictest_policy([member.policy for member in members])
    return Target(name=batch_name([m.name for m in members], group), spec=members[0].spec, policy=policy)


@dataclass(frozen=True)
class MemberChange:
    """What a member event did: the new members, the thread line for a member that ended, if any."""

    members: tuple[BatchMember, ...]
    line: str | None = None

    @property
    def is_batch_over(self) -> bool:
        return all(member.phase.is_terminal for member in self.members)


def apply_member_event(operation: Operation, event: MemberEvent) -> MemberChange | None:
    """The members after `event`, or None when it changes nothing (unknown, already finished, same status)."""
    member = operation.member(event.target)
    if member is None or member.phase.is_terminal:
        return None
    match event:
        case MemberReceiptRecorded():
            if member.receipt == event.receipt:
                return None
            return MemberChange(_replaced(operation, member.model_copy(update={"receipt": event.receipt})))
        case MemberObserved(status=status):
            if status == member.last_status:
                return None
            if status.phase is RolloutPhase.PROGRESSING:
                return MemberChange(_replaced(operation, member.model_copy(update={"last_status": status})))
            if status.phase is RolloutPhase.SUCCEEDED:
                outcome = words.rolled_back_outcome(member.plan.to_revision, status.summary)
                return _ended(operation, member, Phase.SUCCEEDED, outcome, status)
            return _ended(
                operation, member, Phase.FAILED, words.failed_outcome(status.reason or status.summary), status
            )
        case _:
            return _ended(operation, member, Phase.FAILED, words.failed_outcome(event.reason), member.last_status)


def member_outcome(operation: Operation, name: str) -> tuple[Phase, str | None]:
    """How an ended operation ended for one target: its member's phase and outcome in a batch, else its own."""
    member = operation.member(name)
    return (member.phase, member.outcome) if member is not None else (operation.phase, operation.outcome)


def settle_members(members: Sequence[BatchMember], phase: Phase, outcome: str | None = None) -> tuple[BatchMember, ...]:
    """Members not finished yet take `phase` (with `outcome`): a batch that ends takes its unfinished members."""
    return tuple(
        member
        if member.phase.is_terminal
        else member.model_copy(update={"phase": phase, "outcome": outcome or member.outcome})
        for member in members
    )


def started_members(members: Sequence[BatchMember]) -> tuple[BatchMember, ...]:
    """Execution starts: every member that has not ended is rolling back."""
    return tuple(
        member if member.phase.is_terminal else member.model_copy(update={"phase": Phase.ROLLING_BACK})
        for member in members
    )


def batch_result(members: Sequence[BatchMember]) -> tuple[Phase, str]:
    """The batch's own phase and outcome once every member has ended: SUCCEEDED only if all did."""
    succeeded = [member.name for member in members if member.phase is Phase.SUCCEEDED]
    failed = [member.name for member in members if member.phase is not Phase.SUCCEEDED]
    phase = Phase.SUCCEEDED if not failed else Phase.FAILED
    return phase, words.batch_outcome(succeeded, failed)


def _ended(
    operation: Operation, member: BatchMember, phase: Phase, outcome: str, status: RolloutStatus | None
) -> MemberChange:
    ended = member.model_copy(update={"phase": phase, "outcome": outcome, "last_status": status})
    line = words.member_finished_line(member.name, phase is Phase.SUCCEEDED, outcome)
    return MemberChange(_replaced(operation, ended), line)


def _replaced(operation: Operation, new: BatchMember) -> tuple[BatchMember, ...]:
    return tuple(new if member.target.name == new.target.name else member for member in operation.members)
