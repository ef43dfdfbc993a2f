"""The operation lifecycle, one event at a time: phases, thread lines, ephemeral replies and versions."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from bot.core.catalog import SlackUserId
from bot.core.effects import PostInThread, RefreshRequestMessage, ReleaseTarget, StartExecution, TellUser
from bot.core.lifecycle import (
    ButtonPressed,
    CancelRequested,
    Event,
    ExecutionClaimed,
    ExpiryDue,
    LeaseRenewed,
    ReactionAdded,
    ReactionRemoved,
    ReceiptRecorded,
    RollbackErrored,
    RolloutObserved,
    Transition,
    advance,
)
from bot.core.operations import Operation, Phase
from bot.core.rollouts import RevisionNumber, RollbackReceipt, RolloutPhase, RolloutStatus
from tests.core.factories import (
    ALICE,
    BOB,
    BOT,
    CAROL,
    EXPIRES_AFTER,
    MALLORY,
    REQUESTER,
    SRE_MEMBERS,
    T0,
    operation,
    policy,
)

NOW = T0 + timedelta(minutes=1)
LATE = T0 + EXPIRES_AFTER
LOCK = operation().target.lock_key
CHECK = "white_check_mark"
LEASE = NOW + timedelta(seconds=30)
PROGRESS = RolloutStatus(phase=RolloutPhase.PROGRESSING, summary="2/4 ready", ready=2, desired=4)
DONE = RolloutStatus(phase=RolloutPhase.SUCCEEDED, summary="4/4 ready", ready=4, desired=4)
BROKEN = RolloutStatus(phase=RolloutPhase.FAILED, summary="1/4 ready", reason="ImagePullBackOff on web-7d9")


def step(op: Operation, event: Event, at: datetime = NOW) -> Transition:
    return advance(op, event, at, group_members=SRE_MEMBERS)


def assert_changed(before: Operation, after: Transition, at: datetime = NOW) -> None:
    assert after.changed
    assert after.operation.version == before.version + 1
    assert after.operation.updated_at == at


def assert_unchanged(before: Operation, after: Transition, *effects: object) -> None:
    assert not after.changed
    assert after.operation is before
    assert after.effects == effects


def running(**fields: object) -> Operation:
    base: dict[str, object] = {
        "approvers": (ALICE,),
        "executor": "bot-a",
        "lease_until": LEASE,
        "started_at": NOW,
    }
    return operation(Phase.ROLLING_BACK, **{**base, **fields})  # type: ignore[arg-type]


# --- approving ----------------------------------------------------------------------------------------------------


def test_one_approval_of_one_required_approves_and_starts_execution() -> None:
    op = operation()
    after = step(op, ReactionAdded(ALICE, CHECK))
    assert_changed(op, after)
    assert after.operation.phase is Phase.APPROVED
    assert after.operation.approvers == (ALICE,)
    assert after.effects == (
        RefreshRequestMessage(),
        PostInThread("✅ approved by <@U0AAA> (1/1)"),
        StartExecution(op.id),
    )
    assert (after.actor, after.note) == (ALICE, "✅ approved by <@U0AAA> (1/1)")


def test_approvals_are_counted_until_the_required_number() -> None:
    op = operation(approval_policy=policy(2))
    first = step(op, ReactionAdded(ALICE, "white_check_mark::skin-tone-2"))
    assert first.operation.phase is Phase.AWAITING_APPROVAL
    assert first.effects == (RefreshRequestMessage(), PostInThread("✅ approved by <@U0AAA> (1/2)"))
    second = step(first.operation, ButtonPressed(CAROL, "approve"))
    assert second.operation.phase is Phase.APPROVED
    assert second.operation.version == op.version + 2
    assert [a.via for a in second.operation.approvals] == ["reaction", "button"]
    assert second.effects[-1] == StartExecution(op.id)


def test_the_same_approver_twice_counts_once() -> None:
    op = operation(approval_policy=policy(2), approvers=(ALICE,))
    assert_unchanged(op, step(op, ReactionAdded(ALICE, CHECK)))
    assert_unchanged(op, step(op, ButtonPressed(ALICE, "approve")))


def test_requester_cannot_approve_own_rollback() -> None:
    op = operation()
    after = step(op, ReactionAdded(REQUESTER, CHECK))
    assert_unchanged(
        op, after, TellUser(REQUESTER, "You requested this rollback; someone else must approve it (four-eyes).")
    )


def test_an_unauthorized_approval_is_ignored_and_the_person_told_why() -> None:
    op = operation()
    after = step(op, ReactionAdded(MALLORY, CHECK))
    text = "You're not an approver for `workshop`. Approvers: <@U0AAA>, <@U0BBB>, <!subteam^S0SRE>."
    assert_unchanged(op, after, TellUser(MALLORY, text))


def test_a_bot_reaction_changes_nothing() -> None:
    op = operation()
    assert_unchanged(
        op, step(op, ReactionAdded(BOT, CHECK, is_bot=True)), TellUser(BOT, "Bots can't approve rollbacks.")
    )


def test_other_emoji_are_ignored_silently() -> None:
    op = operation()
    assert_unchanged(op, step(op, ReactionAdded(ALICE, "eyes")))
    assert_unchanged(op, step(op, ReactionRemoved(ALICE, "eyes")))


def test_approvals_by_group_members_need_the_resolved_group() -> None:
    op = operation()
    assert advance(op, ReactionAdded(CAROL, CHECK), NOW).operation.phase is Phase.AWAITING_APPROVAL
    assert step(op, ReactionAdded(CAROL, CHECK)).operation.phase is Phase.APPROVED


# --- rejecting and cancelling -------------------------------------------------------------------------------------


def test_an_approvers_x_rejects() -> None:
    op = operation()
    after = step(op, ReactionAdded(BOB, "x"))
    assert_changed(op, after)
    assert after.operation.phase is Phase.REJECTED
    assert after.operation.decided_by == BOB
    assert after.operation.finished_at == NOW
    assert after.effects == (RefreshRequestMessage(), PostInThread("❌ rejected by <@U0BBB>"), ReleaseTarget(LOCK))


def test_the_reject_button_rejects() -> None:
    assert step(operation(), ButtonPressed(ALICE, "reject")).operation.phase is Phase.REJECTED


def test_the_requesters_own_x_cancels() -> None:
    op = operation()
    after = step(op, ReactionAdded(REQUESTER, "x"))
    assert after.operation.phase is Phase.CANCELLED
    assert after.operation.decided_by == REQUESTER
    assert after.effects == (RefreshRequestMessage(), PostInThread("🚫 cancelled by <@U0REQ>"), ReleaseTarget(LOCK))


@pytest.mark.parametrize("user", [REQUESTER, ALICE, CAROL], ids=["requester", "approver", "group-member"])
def test_the_requester_or_an_approver_can_cancel_with_the_command(user: SlackUserId) -> None:
    after = step(operation(), CancelRequested(user))
    assert after.operation.phase is Phase.CANCELLED
    assert after.actor == user


def test_anyone_else_cannot_cancel() -> None:
    op = operation()
    after = step(op, CancelRequested(MALLORY))
    assert_unchanged(op, after, TellUser(MALLORY, "Only <@U0REQ> or an approver can cancel this request."))


# --- withdrawing --------------------------------------------------------------------------------------------------


def test_removing_a_check_while_awaiting_withdraws_the_approval() -> None:
    op = operation(approval_policy=policy(2), approvers=(ALICE,))
    after = step(op, ReactionRemoved(ALICE, CHECK))
    assert_changed(op, after)
    assert after.operation.phase is Phase.AWAITING_APPROVAL
    assert after.operation.approvals == ()
    assert after.effects == (RefreshRequestMessage(), PostInThread("↩️ <@U0AAA> withdrew their approval (0/2)"))


def test_withdrawing_before_execution_returns_the_request_to_awaiting_approval() -> None:
    op = operation(Phase.APPROVED, approvers=(ALICE,))
    after = step(op, ReactionRemoved(ALICE, CHECK))
    assert_changed(op, after)
    assert after.operation.phase is Phase.AWAITING_APPROVAL
    assert after.effects == (
        RefreshRequestMessage(),
        PostInThread("↩️ <@U0AAA> withdrew their approval (0/1) — waiting for approval again"),
    )
    assert not any(isinstance(effect, StartExecution) for effect in after.effects)


def test_a_withdrawal_that_keeps_enough_approvals_stays_approved() -> None:
    op = operation(Phase.APPROVED, approvers=(ALICE, BOB))
    after = step(op, ReactionRemoved(ALICE, CHECK))
    assert after.operation.phase is Phase.APPROVED
    assert after.operation.approvers == (BOB,)


def test_withdrawing_after_the_deadline_expires_the_request() -> None:
    op = operation(Phase.APPROVED, approvers=(ALICE,))
    after = step(op, ReactionRemoved(ALICE, CHECK), LATE)
    assert_changed(op, after, LATE)
    assert after.operation.phase is Phase.EXPIRED
    assert after.operation.approvals == ()
    assert after.effects == (
        PostInThread("↩️ <@U0AAA> withdrew their approval (0/1)"),
        RefreshRequestMessage(),
        PostInThread("⌛ expired — nobody approved within 15m"),
        ReleaseTarget(LOCK),
    )


def test_a_withdrawal_once_rolling_back_is_too_late() -> None:
    op = running()
    after = step(op, ReactionRemoved(ALICE, CHECK))
    assert_unchanged(
        op, after, TellUser(ALICE, "Too late: execution started at 14:38 UTC; removing ✅ doesn't stop it.")
    )


@pytest.mark.parametrize(
    "event",
    [ReactionAdded(ALICE, "x"), ButtonPressed(ALICE, "reject"), CancelRequested(ALICE)],
    ids=["x", "reject-button", "cancel-command"],
)
def test_rejecting_once_rolling_back_is_too_late(event: Event) -> None:
    op = running()
    text = "Too late: execution started at 14:38 UTC; it can't be stopped from Slack."
    assert_unchanged(op, step(op, event), TellUser(ALICE, text))


@pytest.mark.parametrize(
    ("user", "event"),
    [(BOB, ReactionAdded(BOB, "x")), (REQUESTER, CancelRequested(REQUESTER))],
    ids=["approver-x", "requester-cancel"],
)
def test_rejecting_an_approved_request_is_too_late(user: SlackUserId, event: Event) -> None:
    op = operation(Phase.APPROVED, approvers=(ALICE,))
    assert_unchanged(op, step(op, event), TellUser(user, "Too late: this rollback is already approved and starting."))


@pytest.mark.parametrize("phase", [Phase.APPROVED, Phase.ROLLING_BACK])
def test_extra_approvals_after_approval_change_nothing(phase: Phase) -> None:
    op = running() if phase is Phase.ROLLING_BACK else operation(phase, approvers=(ALICE,))
    assert_unchanged(op, step(op, ReactionAdded(BOB, CHECK)))


def test_refusals_are_explained_in_every_live_phase() -> None:
    op = running()
    assert step(op, ReactionAdded(REQUESTER, CHECK)).effects == (
        TellUser(REQUESTER, "You requested this rollback; someone else must approve it (four-eyes)."),
    )


def test_execution_start_time_falls_back_to_the_last_update() -> None:
    op = running(started_at=None)
    after = step(op, ReactionRemoved(ALICE, CHECK))
    assert after.effects == (TellUser(ALICE, "Too late: execution started at 14:37 UTC; removing ✅ doesn't stop it."),)


# --- expiry -------------------------------------------------------------------------------------------------------


def test_expiry_due_expires_an_unanswered_request() -> None:
    op = operation()
    after = step(op, ExpiryDue(), LATE)
    assert_changed(op, after, LATE)
    assert after.operation.phase is Phase.EXPIRED
    assert after.operation.finished_at == LATE
    assert after.effects == (
        RefreshRequestMessage(),
        PostInThread("⌛ expired — nobody approved within 15m"),
        ReleaseTarget(LOCK),
    )
    assert after.actor is None
    assert after.note == "⌛ expired — nobody approved within 15m"


def test_expiry_with_some_approvals_says_how_many() -> None:
    op = operation(approval_policy=policy(2), approvers=(ALICE,))
    after = step(op, ExpiryDue(), LATE)
    assert PostInThread("⌛ expired — only 1/2 approvals within 15m") in after.effects


def test_expiry_due_early_changes_nothing() -> None:
    op = operation()
    assert_unchanged(op, step(op, ExpiryDue(), LATE - timedelta(seconds=1)))


def test_expiry_does_not_touch_an_approved_request() -> None:
    op = operation(Phase.APPROVED, approvers=(ALICE,))
    assert_unchanged(op, step(op, ExpiryDue(), LATE + timedelta(hours=1)))


def test_an_approval_at_the_deadline_expires_the_request_instead() -> None:
    op = operation()
    after = step(op, ReactionAdded(ALICE, CHECK), LATE)
    assert after.operation.phase is Phase.EXPIRED
    assert after.operation.approvals == ()
    assert after.effects[-1] == TellUser(ALICE, "This request expired at 14:52 UTC; run /rollback again.")
    assert not any(isinstance(effect, StartExecution) for effect in after.effects)


@pytest.mark.parametrize(
    "event",
    [ButtonPressed(ALICE, "approve"), ReactionAdded(MALLORY, CHECK), CancelRequested(REQUESTER)],
    ids=["button", "refused-vote", "cancel"],
)
def test_any_vote_after_the_deadline_expires_the_request_and_says_so(event: Event) -> None:
    after = step(operation(), event, LATE + timedelta(minutes=5))
    assert after.operation.phase is Phase.EXPIRED
    assert isinstance(after.effects[-1], TellUser)
    assert after.effects[-1].text == "This request expired at 14:52 UTC; run /rollback again."


@pytest.mark.parametrize(
    "event",
    [ReactionRemoved(ALICE, CHECK), ReactionAdded(BOT, CHECK, is_bot=True)],
    ids=["withdrawal", "bot"],
)
def test_late_withdrawals_and_bot_votes_expire_without_a_reply(event: Event) -> None:
    op = operation(approval_policy=policy(2), approvers=(ALICE,))
    after = step(op, event, LATE)
    assert after.operation.phase is Phase.EXPIRED
    assert not any(isinstance(effect, TellUser) for effect in after.effects)


def test_an_unrelated_reaction_after_the_deadline_changes_nothing() -> None:
    op = operation()
    assert_unchanged(op, step(op, ReactionAdded(ALICE, "eyes"), LATE))


# --- execution ----------------------------------------------------------------------------------------------------


def test_claiming_an_approved_operation_starts_rolling_back() -> None:
    op = operation(Phase.APPROVED, approvers=(ALICE,))
    after = step(op, ExecutionClaimed("bot-a", LEASE))
    assert_changed(op, after)
    new = after.operation
    assert (new.phase, new.executor, new.lease_until, new.started_at) == (Phase.ROLLING_BACK, "bot-a", LEASE, NOW)
    assert after.effects == (RefreshRequestMessage(), PostInThread("⏪ rolling back: revision 3 → 2"))


def test_an_approved_record_without_its_approvals_is_never_executed() -> None:
    op = operation(Phase.APPROVED)
    assert_unchanged(op, step(op, ExecutionClaimed("bot-a", LEASE)))


def test_a_request_still_awaiting_approval_cannot_be_claimed() -> None:
    op = operation()
    assert_unchanged(op, step(op, ExecutionClaimed("bot-a", LEASE)))


def test_a_second_replica_cannot_claim_while_the_lease_holds() -> None:
    op = running()
    assert_unchanged(op, step(op, ExecutionClaimed("bot-b", LEASE + timedelta(seconds=30))))


@pytest.mark.parametrize(
    ("executor", "fields", "at"),
    [
        ("bot-a", {}, NOW),
        ("bot-b", {}, LEASE),
        ("bot-b", {"lease_until": None}, NOW),
    ],
    ids=["same-executor-again", "lease-ran-out", "no-lease-recorded"],
)
def test_a_rolling_back_operation_can_be_reclaimed(executor: str, fields: dict[str, object], at: datetime) -> None:
    op = running(**fields)
    later = at + timedelta(seconds=30)
    after = step(op, ExecutionClaimed(executor, later), at)
    assert_changed(op, after, at)
    assert (after.operation.executor, after.operation.lease_until) == (executor, later)
    assert after.operation.phase is Phase.ROLLING_BACK
    assert after.effects == ()


def test_the_executor_renews_its_lease() -> None:
    op = running()
    later = LEASE + timedelta(seconds=30)
    after = step(op, LeaseRenewed("bot-a", later))
    assert_changed(op, after)
    assert after.operation.lease_until == later


@pytest.mark.parametrize(
    ("op", "event"),
    [
        (running(), LeaseRenewed("bot-b", LEASE + timedelta(seconds=30))),
        (running(), LeaseRenewed("bot-a", LEASE)),
        (operation(Phase.APPROVED, approvers=(ALICE,)), LeaseRenewed("bot-a", LEASE)),
    ],
    ids=["other-executor", "same-lease", "not-running"],
)
def test_a_lease_renewal_that_does_not_apply_changes_nothing(op: Operation, event: Event) -> None:
    assert_unchanged(op, step(op, event))


def test_progress_is_recorded_without_thread_noise() -> None:
    op = running()
    after = step(op, RolloutObserved(PROGRESS))
    assert_changed(op, after)
    assert after.operation.last_status == PROGRESS
    assert after.effects == ()
    assert_unchanged(after.operation, step(after.operation, RolloutObserved(PROGRESS)))


def test_a_finished_rollout_succeeds() -> None:
    op = running()
    after = step(op, RolloutObserved(DONE))
    assert_changed(op, after)
    new = after.operation
    assert (new.phase, new.outcome, new.finished_at, new.last_status) == (
        Phase.SUCCEEDED,
        "rolled back to revision 2 — 4/4 ready",
        NOW,
        DONE,
    )
    assert after.effects == (
        RefreshRequestMessage(),
        PostInThread("✅ rolled back to revision 2 — 4/4 ready"),
        ReleaseTarget(LOCK),
    )


def test_a_failed_rollout_fails_with_the_platforms_reason() -> None:
    after = step(running(), RolloutObserved(BROKEN))
    assert after.operation.phase is Phase.FAILED
    assert after.operation.outcome == "rollback failed: ImagePullBackOff on web-7d9"
    assert PostInThread("❌ rollback failed: ImagePullBackOff on web-7d9") in after.effects


def test_a_failed_rollout_without_a_reason_reports_its_summary() -> None:
    after = step(running(), RolloutObserved(BROKEN.model_copy(update={"reason": None})))
    assert after.operation.outcome == "rollback failed: 1/4 ready"


def test_an_error_while_rolling_back_fails_the_operation() -> None:
    op = running(last_status=PROGRESS)
    after = step(op, RollbackErrored("helm: release workshop is pending-upgrade"))
    assert_changed(op, after)
    assert after.operation.phase is Phase.FAILED
    assert after.operation.last_status == PROGRESS
    assert after.effects == (
        RefreshRequestMessage(),
        PostInThread("❌ rollback failed: helm: release workshop is pending-upgrade"),
        ReleaseTarget(LOCK),
    )


def test_the_receipt_is_recorded_once() -> None:
    op = running()
    receipt = RollbackReceipt(new_revision=RevisionNumber(5))
    after = step(op, ReceiptRecorded(receipt))
    assert_changed(op, after)
    assert after.operation.receipt == receipt
    assert_unchanged(after.operation, step(after.operation, ReceiptRecorded(receipt)))


@pytest.mark.parametrize(
    "event",
    [RolloutObserved(DONE), RollbackErrored("boom"), ReceiptRecorded(RollbackReceipt())],
    ids=["status", "error", "receipt"],
)
def test_execution_events_before_execution_change_nothing(event: Event) -> None:
    op = operation(Phase.APPROVED, approvers=(ALICE,))
    assert_unchanged(op, step(op, event))


# --- terminal phases ----------------------------------------------------------------------------------------------

TERMINAL = [
    (
        operation(Phase.PREVIEW, is_dry_run=True),
        "This is a dry-run preview; nothing will run. To request it, run /rollback again without --dry-run.",
    ),
    (operation(Phase.EXPIRED), "This request expired at 14:52 UTC; run /rollback again."),
    (
        operation(Phase.REJECTED, decided_by=BOB),
        "This request was rejected by <@U0BBB>; run /rollback again if it's still needed.",
    ),
    (operation(Phase.REJECTED), "This request was rejected; run /rollback again if it's still needed."),
    (
        operation(Phase.CANCELLED, decided_by=REQUESTER),
        "This request was cancelled by <@U0REQ>; run /rollback again if it's still needed.",
    ),
    (
        operation(Phase.SUCCEEDED, outcome="rolled back to revision 2 — 4/4 ready"),
        "This rollback is over: rolled back to revision 2 — 4/4 ready.",
    ),
    (operation(Phase.FAILED, outcome="rollback failed: boom"), "This rollback is over: rollback failed: boom."),
    (operation(Phase.FAILED), "This rollback is over: failed."),
]


@pytest.mark.parametrize(("op", "text"), TERMINAL, ids=[f"{op.phase}-{n}" for n, (op, _) in enumerate(TERMINAL)])
def test_a_vote_on_a_closed_request_is_told_why_nothing_happens(op: Operation, text: str) -> None:
    for event in (ReactionAdded(ALICE, CHECK), ButtonPressed(ALICE, "approve"), CancelRequested(ALICE)):
        assert_unchanged(op, step(op, event), TellUser(ALICE, text))


@pytest.mark.parametrize(
    "event",
    [
        ReactionAdded(ALICE, "eyes"),
        ReactionAdded(BOT, CHECK, is_bot=True),
        ButtonPressed(BOT, "approve", is_bot=True),
        ReactionRemoved(ALICE, CHECK),
        ExpiryDue(),
        ExecutionClaimed("bot-a", LEASE),
        LeaseRenewed("bot-a", LEASE),
        RolloutObserved(DONE),
        RollbackErrored("late"),
        ReceiptRecorded(RollbackReceipt()),
    ],
    ids=lambda event: type(event).__name__,
)
@pytest.mark.parametrize("phase", [phase for phase in Phase if phase.is_terminal])
def test_terminal_phases_absorb_everything_silently(phase: Phase, event: Event) -> None:
    op = operation(phase, approvers=(ALICE,))
    assert_unchanged(op, step(op, event, LATE + timedelta(days=1)))


def test_times_without_a_zone_are_read_as_utc() -> None:
    naive = operation(Phase.EXPIRED, expires_at=datetime(2026, 11, 22, 9, 5), created_at=datetime(2026, 11, 22, 8, 50))
    assert step(naive, ReactionAdded(ALICE, CHECK)).effects == (
        TellUser(ALICE, "This request expired at 09:05 UTC; run /rollback again."),
    )
