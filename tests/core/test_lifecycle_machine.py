"""Random event sequences against `advance`, checking the lifecycle's invariants after every step."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import event as event_note
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

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
    advance,
)
from bot.core.operations import Operation, Phase
from bot.core.rollouts import RevisionNumber, RollbackReceipt, RolloutPhase, RolloutStatus
from tests.core.factories import ALICE, BOB, BOT, CAROL, MALLORY, REQUESTER, SRE_MEMBERS, T0, operation, policy

USERS = st.sampled_from([REQUESTER, ALICE, BOB, CAROL, MALLORY, BOT])
EMOJI = st.sampled_from(["white_check_mark", "white_check_mark::skin-tone-4", "x", "eyes", "heavy_check_mark"])
APPROVERS = st.sampled_from([ALICE, BOB, CAROL, REQUESTER])
EXECUTORS = st.sampled_from(["bot-a", "bot-b"])
STATUSES = st.sampled_from(
    [
        RolloutStatus(phase=RolloutPhase.PROGRESSING, summary="1/4 ready"),
        RolloutStatus(phase=RolloutPhase.PROGRESSING, summary="3/4 ready"),
        RolloutStatus(phase=RolloutPhase.SUCCEEDED, summary="4/4 ready"),
        RolloutStatus(phase=RolloutPhase.FAILED, summary="0/4 ready", reason="CrashLoopBackOff"),
    ]
)

# Every phase change the lifecycle may make; anything else is a bug.
ALLOWED = {
    Phase.AWAITING_APPROVAL: {Phase.APPROVED, Phase.REJECTED, Phase.EXPIRED, Phase.CANCELLED},
    Phase.APPROVED: {Phase.AWAITING_APPROVAL, Phase.ROLLING_BACK, Phase.EXPIRED},
    Phase.ROLLING_BACK: {Phase.SUCCEEDED, Phase.FAILED},
}


class Lifecycle(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.op = operation()
        self.now = T0
        self.changes = 0

    @initialize(
        required=st.integers(1, 3),
        allow_self_approval=st.booleans(),
        requester_is_approver=st.booleans(),
        is_dry_run=st.sampled_from([False] * 9 + [True]),
    )
    def open_request(
        self, required: int, allow_self_approval: bool, requester_is_approver: bool, is_dry_run: bool
    ) -> None:
        approvers = (ALICE, BOB, REQUESTER) if requester_is_approver else (ALICE, BOB)
        approval_policy = policy(required, allow_self_approval=allow_self_approval, approvers=approvers)
        phase = Phase.PREVIEW if is_dry_run else Phase.AWAITING_APPROVAL
        self.op = operation(phase, approval_policy=approval_policy, is_dry_run=is_dry_run)
        self.initial_version = self.op.version

    # --- events ---

    @rule(user=USERS, emoji=EMOJI)
    def react(self, user: SlackUserId, emoji: str) -> None:
        self.apply(ReactionAdded(user, emoji, is_bot=user == BOT))

    @rule(user=APPROVERS, use_button=st.booleans())
    def approve(self, user: SlackUserId, use_button: bool) -> None:
        # The common path, drawn on purpose so that random runs get past approval into execution.
        self.apply(ButtonPressed(user, "approve") if use_button else ReactionAdded(user, "white_check_mark"))

    @rule(status=STATUSES)
    def happy_path(self, status: RolloutStatus) -> None:
        """The next event of a rollback that goes well, so random runs reach execution and its end often."""
        if self.op.phase is Phase.AWAITING_APPROVAL:
            user = next((u for u in (ALICE, BOB, CAROL) if u not in self.op.approvers), ALICE)
            self.apply(ReactionAdded(user, "white_check_mark"))
        elif self.op.phase is Phase.APPROVED:
            self.apply(ExecutionClaimed("bot-a", self.now + timedelta(seconds=30)))
        else:
            self.apply(RolloutObserved(status))

    @rule(user=USERS, emoji=EMOJI)
    def unreact(self, user: SlackUserId, emoji: str) -> None:
        self.apply(ReactionRemoved(user, emoji))

    @rule(user=USERS, approve=st.booleans())
    def press(self, user: SlackUserId, approve: bool) -> None:
        self.apply(ButtonPressed(user, "approve" if approve else "reject", is_bot=user == BOT))

    @rule(user=USERS)
    def cancel(self, user: SlackUserId) -> None:
        self.apply(CancelRequested(user))

    @rule()
    def expiry_due(self) -> None:
        self.apply(ExpiryDue())

    @rule(executor=EXECUTORS, seconds=st.integers(0, 120))
    def claim(self, executor: str, seconds: int) -> None:
        self.apply(ExecutionClaimed(executor, self.now + timedelta(seconds=seconds)))

    @rule(executor=EXECUTORS, seconds=st.integers(0, 120))
    def renew(self, executor: str, seconds: int) -> None:
        self.apply(LeaseRenewed(executor, self.now + timedelta(seconds=seconds)))

    @rule(status=STATUSES)
    def observe(self, status: RolloutStatus) -> None:
        self.apply(RolloutObserved(status))

    @rule()
    def error(self) -> None:
        self.apply(RollbackErrored("helm exited 1"))

    @rule(revision=st.integers(1, 9))
    def receipt(self, revision: int) -> None:
        self.apply(ReceiptRecorded(RollbackReceipt(new_revision=RevisionNumber(revision))))

    @rule(seconds=st.integers(0, 600))
    def time_passes(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)

    # --- per-step checks ---

    def apply(self, event: Event) -> None:
        before = self.op
        transition = advance(before, event, self.now, group_members=SRE_MEMBERS)  # must never raise
        after = transition.operation
        if not transition.changed:
            assert after is before
            assert all(isinstance(effect, TellUser) for effect in transition.effects)
        else:
            self.changes += 1
            assert after.version == before.version + 1
            assert after.updated_at == self.now
        if before.phase.is_terminal:
            assert not transition.changed, "terminal phases absorb everything"
        moved = after.phase is not before.phase
        if moved:
            assert after.phase in ALLOWED[before.phase], f"{before.phase} → {after.phase}"
            assert RefreshRequestMessage() in transition.effects
            assert any(isinstance(effect, PostInThread) for effect in transition.effects)
        starts = [effect for effect in transition.effects if isinstance(effect, StartExecution)]
        assert bool(starts) == (moved and after.phase is Phase.APPROVED)
        releases = [effect for effect in transition.effects if isinstance(effect, ReleaseTarget)]
        assert bool(releases) == (moved and after.phase.is_terminal)
        if moved and after.phase is Phase.EXPIRED:
            assert self.now >= before.expires_at, "expired early"
        if moved and before.phase is Phase.AWAITING_APPROVAL and after.phase is Phase.APPROVED:
            assert self.now < before.expires_at, "approved after the deadline"
        if moved and after.phase is Phase.ROLLING_BACK:
            self.assert_properly_approved(after)
        event_note(f"reached {after.phase.value}")
        self.op = after

    def assert_properly_approved(self, op: Operation) -> None:
        policy_ = op.target.policy
        users = [approval.user for approval in op.approvals]
        assert len(users) == len(set(users)), "one approval per person"
        assert len(users) >= policy_.required
        for user in users:
            assert user in policy_.approvers or user in SRE_MEMBERS
            assert user != op.requester or policy_.allow_self_approval

    # --- invariants ---

    @invariant()
    def approvals_are_always_eligible_and_distinct(self) -> None:
        users = [approval.user for approval in self.op.approvals]
        assert len(users) == len(set(users))
        for user in users:
            assert user in self.op.target.policy.approvers or user in SRE_MEMBERS
            assert user not in (BOT, MALLORY)
            assert user != self.op.requester or self.op.target.policy.allow_self_approval

    @invariant()
    def executing_or_done_means_enough_approvals(self) -> None:
        if self.op.phase in {Phase.APPROVED, Phase.ROLLING_BACK, Phase.SUCCEEDED, Phase.FAILED}:
            self.assert_properly_approved(self.op)
        if self.op.phase is Phase.AWAITING_APPROVAL:
            assert len(self.op.approvals) < self.op.required_approvals

    @invariant()
    def a_dry_run_never_leaves_preview(self) -> None:
        assert (self.op.phase is Phase.PREVIEW) == self.op.is_dry_run

    @invariant()
    def version_counts_the_changes(self) -> None:
        assert self.op.version == self.initial_version + self.changes

    @invariant()
    def finished_operations_have_an_outcome(self) -> None:
        if self.op.phase in {Phase.SUCCEEDED, Phase.FAILED}:
            assert self.op.outcome
            assert self.op.started_at is not None
            assert self.op.finished_at is not None


Lifecycle.TestCase.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)
TestLifecycle = Lifecycle.TestCase
