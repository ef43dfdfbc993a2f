"""The operation lifecycle: what one event means for one operation, as a pure state machine.

    AWAITING_APPROVAL ──(approvals reach `required`)──▶ APPROVED ──(ExecutionClaimed)──▶ ROLLING_BACK
        │   ▲                                              │                              │
        │   └───────(a ✅ withdrawn, below `required`)──────┘                              ├──▶ SUCCEEDED
        ├──▶ REJECTED   (❌ from an approver)                                               └──▶ FAILED
        ├──▶ CANCELLED  (the requester's ❌, or `/rollback cancel` by the requester or an approver)
        └──▶ EXPIRED    (ExpiryDue, or any vote arriving at/after `expires_at`: fail closed)
    PREVIEW  (a --dry-run: created there and never leaves)

`advance(operation, event, now)` returns a `Transition`: the next operation (a copy with `version + 1` and
`updated_at = now`), the effects the flow must apply, and whether anything changed. It reads no clock, talks to
nobody and never raises for a well-formed event: an event that does not apply in the current phase leaves the
operation untouched (`changed=False`), at most with an ephemeral explanation for the person who caused it.
Terminal phases absorb everything.

Only APPROVED can be claimed for execution, and only once: the flow runs a rollback only after storing the
`ExecutionClaimed` transition (compare-and-set), so of several replicas exactly one wins. If a claim comes back
with `changed=False` (withdrawn meanwhile, already claimed by a live executor), the flow must not execute.
Every claim, first or takeover, raises the operation's fencing token (`fence`) by one; the executor passes its
token with every later write and the store refuses a stale one, so a replica paused past its lease cannot
write after another took over. An approved operation whose target someone else holds (`ClaimRefused`) fails
without running, saying who holds it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from bot.core.approvals import (
    APPROVE_EMOJI,
    REJECT_EMOJI,
    ButtonAction,
    Decision,
    Verdict,
    is_eligible,
    judge_button,
    judge_reaction,
    vote_of,
)
from bot.core.batches import (
    MemberErrored,
    MemberEvent,
    MemberObserved,
    MemberReceiptRecorded,
    apply_member_event,
    batch_result,
    settle_members,
    started_members,
)
from bot.core.catalog import SlackUserId, format_duration
from bot.core.effects import Effect, PostInThread, RefreshRequestMessage, ReleaseTarget, StartExecution, TellUser
from bot.core.messages import decisions as words
from bot.core.operations import Approval, Operation, Phase
from bot.core.rollouts import RollbackReceipt, RolloutPhase, RolloutStatus

# --- events ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReactionAdded:
    user: SlackUserId
    emoji: str
    is_bot: bool = False


@dataclass(frozen=True)
class ReactionRemoved:
    user: SlackUserId
    emoji: str


@dataclass(frozen=True)
class ButtonPressed:
    user: SlackUserId
    action: ButtonAction
    is_bot: bool = False


@dataclass(frozen=True)
class CancelRequested:
    """`/rollback cancel <operation-id>`."""

    user: SlackUserId


@dataclass(frozen=True)
class ExpiryDue:
    """Sent by the flow once `now >= expires_at`; sent early, it changes nothing."""


@dataclass(frozen=True)
class ExecutionClaimed:
    """A replica wants to execute: APPROVED → ROLLING_BACK, or take over a ROLLING_BACK whose lease ran out."""

    executor: str
    lease_until: datetime


@dataclass(frozen=True)
class ClaimRefused:
    """The approved operation could not take its target (another operation holds it): it ends without running."""

    reason: str


@dataclass(frozen=True)
class LeaseRenewed:
    executor: str
    lease_until: datetime


@dataclass(frozen=True)
class RolloutObserved:
    status: RolloutStatus


@dataclass(frozen=True)
class RollbackErrored:
    """The rollback could not be applied or watched (a PermanentError, a timeout); the reason goes to the thread."""

    reason: str


@dataclass(frozen=True)
class ReceiptRecorded:
    receipt: RollbackReceipt


Gesture = ReactionAdded | ReactionRemoved | ButtonPressed | CancelRequested
Event = (
    Gesture
    | ExpiryDue
    | ExecutionClaimed
    | ClaimRefused
    | LeaseRenewed
    | RolloutObserved
    | RollbackErrored
    | ReceiptRecorded
    | MemberReceiptRecorded
    | MemberObserved
    | MemberErrored
)


def missed_votes(
    operation: Operation,
    reactions: Mapping[str, Sequence[SlackUserId]],
    *,
    group_members: frozenset[SlackUserId] = frozenset(),
) -> list[Gesture]:
    """The votes the request message shows but the operation has not recorded (events lost or reordered).

    `reactions` is what Slack's reactions.get returns for the request message (emoji → users). Only votes that
    would change something are returned, so replaying them tells nobody anything twice: rejections by the
    requester or an approver first (a rejection wins), then ✅ from eligible people not counted yet, then
    reaction approvals whose ✅ is gone. The bot's own hint reactions are never eligible.
    """
    if operation.phase not in (Phase.AWAITING_APPROVAL, Phase.APPROVED):
        return []
    voters: dict[str, set[SlackUserId]] = {"approve": set(), "reject": set()}
    for emoji, users in reactions.items():
        vote = vote_of(emoji)
        if vote is not None:
            voters[vote].update(users)
    policy = operation.target.policy
    missed: list[Gesture] = [
        ReactionAdded(user=user, emoji=REJECT_EMOJI)
        for user in sorted(voters["reject"])
        if user == operation.requester or is_eligible(operation, user, group_members)
    ]
    counted = {approval.user for approval in operation.approvals}
    missed += [
        ReactionAdded(user=user, emoji=APPROVE_EMOJI)
        for user in sorted(voters["approve"] - counted)
        if is_eligible(operation, user, group_members) and (user != operation.requester or policy.allow_self_approval)
    ]
    missed += [
        ReactionRemoved(user=approval.user, emoji=APPROVE_EMOJI)
        for approval in operation.approvals
        if approval.via == "reaction" and approval.user not in voters["approve"]
    ]
    return missed


@dataclass(frozen=True)
class Transition:
    operation: Operation
    effects: tuple[Effect, ...] = ()
    changed: bool = False
    # For the audit entry (`OperationStore.replace(actor=…, note=…)`): who caused it and the thread line, if any.
    actor: SlackUserId | None = None
    note: str | None = None


# --- the state machine -----------------------------------------------------------------------------------------


def advance(
    operation: Operation,
    event: Event,
    now: datetime,
    *,
    group_members: frozenset[SlackUserId] = frozenset(),
) -> Transition:
    """Decide what `event` means for `operation` at `now`. Pure: no Slack, no Redis, no clock reads.

    `group_members` are the users of the target's `approver_groups`, resolved by the flow.
    """
    if operation.phase.is_terminal:
        return _absorb(operation, event)
    match event:
        case ReactionAdded() | ReactionRemoved() | ButtonPressed() | CancelRequested():
            return _on_gesture(operation, event, now, group_members)
        case ExpiryDue():
            if operation.phase is Phase.AWAITING_APPROVAL and now >= operation.expires_at:
                return _expire(operation, operation.approvals, now)
            return Transition(operation)
        case ExecutionClaimed():
            return _on_claim(operation, event, now)
        case MemberReceiptRecorded() | MemberObserved() | MemberErrored():
            return _on_member(operation, event, now)
        case ClaimRefused():
            if operation.phase is not Phase.APPROVED:
                return Transition(operation)
            return _finish(operation, Phase.FAILED, words.not_run_outcome(event.reason), now)
        case LeaseRenewed():
            if operation.phase is not Phase.ROLLING_BACK or event.executor != operation.executor:
                return Transition(operation)
            if event.lease_until == operation.lease_until:
                return Transition(operation)
            return Transition(_next(operation, now, lease_until=event.lease_until), changed=True)
        case RolloutObserved():
            if operation.is_batch:
                return Transition(operation)  # a batch hears from its members, never as a whole
            return _on_status(operation, event.status, now)
        case RollbackErrored():
            if operation.phase is not Phase.ROLLING_BACK:
                return Transition(operation)
            return _finish(operation, Phase.FAILED, words.failed_outcome(event.reason), now)
        case _:
            if operation.phase is not Phase.ROLLING_BACK or operation.is_batch or event.receipt == operation.receipt:
                return Transition(operation)
            return Transition(_next(operation, now, receipt=event.receipt), changed=True)


@dataclass(frozen=True)
class _Judged:
    user: SlackUserId
    verdict: Verdict
    via: str
    is_bot: bool


def _judge(operation: Operation, event: Gesture, group_members: frozenset[SlackUserId]) -> _Judged:
    match event:
        case ReactionAdded():
            verdict = judge_reaction(
                operation, event.user, event.emoji, added=True, is_bot=event.is_bot, group_members=group_members
            )
            return _Judged(event.user, verdict, "reaction", event.is_bot)
        case ReactionRemoved():
            verdict = judge_reaction(
                operation, event.user, event.emoji, added=False, is_bot=False, group_members=group_members
            )
            return _Judged(event.user, verdict, "reaction", False)
        case ButtonPressed():
            verdict = judge_button(
                operation, event.user, event.action, is_bot=event.is_bot, group_members=group_members
            )
            return _Judged(event.user, verdict, "button", event.is_bot)
        case _:
            if event.user == operation.requester or is_eligible(operation, event.user, group_members):
                return _Judged(event.user, Verdict(Decision.CANCEL), "command", False)
            refusal = words.only_requester_or_approver_cancels(operation)
            return _Judged(event.user, Verdict(Decision.REFUSE, refusal), "command", False)


def _on_gesture(
    operation: Operation, event: Gesture, now: datetime, group_members: frozenset[SlackUserId]
) -> Transition:
    judged = _judge(operation, event, group_members)
    user, decision = judged.user, judged.verdict.decision
    if decision is Decision.IGNORE:
        return Transition(operation)
    if operation.phase is Phase.AWAITING_APPROVAL and now >= operation.expires_at:
        # Fail closed: the vote arrived too late, whatever the expiry timer of the flow says.
        expired = _expire(operation, operation.approvals, now)
        if decision is Decision.WITHDRAW or judged.is_bot:
            return expired
        tell = TellUser(user, _closed_text(expired.operation))
        return Transition(expired.operation, (*expired.effects, tell), True, user, expired.note)
    if decision is Decision.REFUSE:
        return _tell(operation, user, judged.verdict.reason or "")
    if operation.phase is Phase.ROLLING_BACK:
        return _too_late_running(operation, user, decision)
    if decision is Decision.WITHDRAW:
        return _withdraw(operation, user, now)
    if operation.phase is Phase.APPROVED:
        if decision is Decision.APPROVE:
            return Transition(operation)  # enough approvals already; extra ones change nothing
        return _tell(operation, user, words.too_late_approved())
    if decision is Decision.APPROVE:
        return _approve(operation, user, judged.via, now)
    phase, line = (
        (Phase.REJECTED, words.rejected_line(user))
        if decision is Decision.REJECT
        else (Phase.CANCELLED, words.cancelled_line(user))
    )
    new = _next(operation, now, phase=phase, decided_by=user, finished_at=now)
    return _changed(new, (RefreshRequestMessage(), PostInThread(line), ReleaseTarget(new.target.lock_key)), user)


def _approve(operation: Operation, user: SlackUserId, via: str, now: datetime) -> Transition:
    if user in operation.approvers:
        return Transition(operation)  # the same person twice (✅ again, or ✅ and the button) counts once
    approvals = (*operation.approvals, Approval(user=user, at=now, via="button" if via == "button" else "reaction"))
    required = operation.required_approvals
    line = PostInThread(words.approved_line(user, len(approvals), required))
    if len(approvals) < required:
        return _changed(_next(operation, now, approvals=approvals), (RefreshRequestMessage(), line), user)
    new = _next(operation, now, approvals=approvals, phase=Phase.APPROVED)
    return _changed(new, (RefreshRequestMessage(), line, StartExecution(new.id)), user)


def _withdraw(operation: Operation, user: SlackUserId, now: datetime) -> Transition:
    approvals = tuple(a for a in operation.approvals if not (a.user == user and a.via == "reaction"))
    required = operation.required_approvals
    line = words.withdrawn_line(user, len(approvals), required, waiting_again=False)
    phase = operation.phase
    if phase is Phase.APPROVED and len(approvals) < required:
        if now >= operation.expires_at:
            expired = _expire(operation, approvals, now)
            effects = (PostInThread(line), *expired.effects)
            return Transition(expired.operation, effects, True, user, line)
        phase = Phase.AWAITING_APPROVAL
        line = words.withdrawn_line(user, len(approvals), required, waiting_again=True)
    new = _next(operation, now, approvals=approvals, phase=phase)
    return _changed(new, (RefreshRequestMessage(), PostInThread(line)), user)


def _too_late_running(operation: Operation, user: SlackUserId, decision: Decision) -> Transition:
    if decision is Decision.APPROVE:
        return Transition(operation)
    started = operation.started_at or operation.updated_at
    return _tell(operation, user, words.too_late_running(started, withdrawing=decision is Decision.WITHDRAW))


def _expire(operation: Operation, approvals: tuple[Approval, ...], now: datetime) -> Transition:
    window = format_duration(operation.expires_at - operation.created_at)
    line = words.expired_line(len(approvals), operation.required_approvals, window)
    new = _next(operation, now, approvals=approvals, phase=Phase.EXPIRED, finished_at=now)
    return _changed(new, (RefreshRequestMessage(), PostInThread(line), ReleaseTarget(new.target.lock_key)), None)


def _on_claim(operation: Operation, event: ExecutionClaimed, now: datetime) -> Transition:
    if operation.phase is Phase.APPROVED:
        if len(operation.approvals) < operation.required_approvals:
            return Transition(operation)  # never execute on a record that does not carry its approvals
        new = _next(
            operation,
            now,
            phase=Phase.ROLLING_BACK,
            executor=event.executor,
            lease_until=event.lease_until,
            started_at=now,
            fence=operation.fence + 1,
        )
        plan = operation.plan
        line = PostInThread(words.rolling_back_line(plan.from_revision, plan.to_revision))
        if operation.is_resume_sync and operation.gitops is not None:
            line = PostInThread(words.resuming_sync_line(operation.gitops.reconciler.ref.display))
        if operation.is_batch:
            new = new.model_copy(update={"members": started_members(operation.members)})
            arrows = [(m.name, m.plan.from_revision, m.plan.to_revision) for m in operation.members]
            line = PostInThread(words.batch_rolling_back_line(arrows))
        return _changed(new, (RefreshRequestMessage(), line), None)
    if operation.phase is Phase.ROLLING_BACK:
        is_lease_over = operation.lease_until is None or now >= operation.lease_until
        if event.executor == operation.executor or is_lease_over:
            # The same replica again (restarted), or a takeover after the previous executor went silent.
            # A new fencing token either way: whatever the previous claimant still does is refused by the store.
            new = _next(
                operation, now, executor=event.executor, lease_until=event.lease_until, fence=operation.fence + 1
            )
            return Transition(new, changed=True)
    return Transition(operation)


def _on_status(operation: Operation, status: RolloutStatus, now: datetime) -> Transition:
    if operation.phase is not Phase.ROLLING_BACK or status == operation.last_status:
        return Transition(operation)
    if status.phase is RolloutPhase.PROGRESSING:
        return Transition(_next(operation, now, last_status=status), changed=True)
    if status.phase is RolloutPhase.SUCCEEDED:
        outcome = (
            status.summary
            if operation.is_resume_sync
            else words.rolled_back_outcome(operation.plan.to_revision, status.summary)
        )
        return _finish(operation, Phase.SUCCEEDED, outcome, now, last_status=status)
    return _finish(operation, Phase.FAILED, words.failed_outcome(status.reason or status.summary), now, status)


def _on_member(operation: Operation, event: MemberEvent, now: datetime) -> Transition:
    """A member of a running batch moved; when its last member ends, the batch ends with the truth."""
    if operation.phase is not Phase.ROLLING_BACK:
        return Transition(operation)
    change = apply_member_event(operation, event)
    if change is None:
        return Transition(operation)
    member_line = () if change.line is None else (PostInThread(change.line),)
    if not change.is_batch_over:
        new = _next(operation, now, members=change.members)
        return _changed(new, member_line, None) if member_line else Transition(new, changed=True)
    phase, outcome = batch_result(change.members)
    finished = _finish(operation.model_copy(update={"members": change.members}), phase, outcome, now)
    return Transition(finished.operation, (*member_line, *finished.effects), True, None, change.line)


def _finish(
    operation: Operation, phase: Phase, outcome: str, now: datetime, last_status: RolloutStatus | None = None
) -> Transition:
    if operation.is_batch and not all(member.phase.is_terminal for member in operation.members):
        # The batch ends before some members did (refused, errored): they did not roll back, and say why.
        operation = operation.model_copy(update={"members": settle_members(operation.members, phase, outcome)})
    new = _next(
        operation,
        now,
        phase=phase,
        outcome=outcome,
        finished_at=now,
        last_status=last_status or operation.last_status,
    )
    line = PostInThread(words.finished_line(phase is Phase.SUCCEEDED, outcome))
    effects = (RefreshRequestMessage(), line, ReleaseTarget(new.target.lock_key))
    return _changed(new, effects, None)


def _absorb(operation: Operation, event: Event) -> Transition:
    """A terminal operation changes no more; a person who still votes on it is told why nothing happens."""
    voter = _voter(event)
    if voter is None:
        return Transition(operation)
    return _tell(operation, voter, _closed_text(operation))


def _voter(event: Event) -> SlackUserId | None:
    """The person behind a vote-like event (✅/❌ added, a button, a cancel); None for everything else."""
    match event:
        case ReactionAdded(is_bot=False) if vote_of(event.emoji) is not None:
            return event.user
        case ButtonPressed(is_bot=False) | CancelRequested():
            return event.user
    return None


def _closed_text(operation: Operation) -> str:
    return words.closed(operation)


# --- helpers ---------------------------------------------------------------------------------------------------


def _next(operation: Operation, now: datetime, **update: object) -> Operation:
    phase = update.get("phase")
    if operation.is_batch and isinstance(phase, Phase) and phase.is_terminal and "members" not in update:
        # Rejected, expired or cancelled: the members never ran, and show the batch's phase.
        update["members"] = settle_members(operation.members, phase)
    return operation.model_copy(update={**update, "version": operation.version + 1, "updated_at": now})


def _changed(operation: Operation, effects: tuple[Effect, ...], actor: SlackUserId | None) -> Transition:
    note = next((effect.text for effect in effects if isinstance(effect, PostInThread)), None)
    return Transition(operation, effects, True, actor, note)


def _tell(operation: Operation, user: SlackUserId, text: str) -> Transition:
    return Transition(operation, (TellUser(user, text),), False, user)
