"""Batches in the pure core: the grammar, the strictest policy, the member events and the metadata contract."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.core.batches import MemberErrored, MemberObserved, MemberReceiptRecorded, member_outcome
from bot.core.catalog import SlackUserId
from bot.core.catalog_approvals import ApprovalPolicy, strictest_policy
from bot.core.commands import RollbackCommand, TargetRef, parse_command, render_command
from bot.core.errors import CommandSyntaxError
from bot.core.lifecycle import ClaimRefused, ExecutionClaimed, RollbackErrored, advance
from bot.core.messages.batch import batch_progress_message
from bot.core.operations import Approval, Phase
from bot.core.rollouts import RollbackReceipt, RolloutPhase, RolloutStatus
from tests.fakes.clock import DEFAULT_START
from tests.fakes.operations import APPROVER, make_batch, make_operation

KNOWN = ("bootcamp", "workshop", "api", "shop")
NOW = DEFAULT_START + timedelta(minutes=1)


# --- grammar ---------------------------------------------------------------------------------------------------


def test_several_known_names_make_a_batch_that_renders_back() -> None:
    command = parse_command("bootcamp workshop api --dry-run", known_names=KNOWN)
    assert isinstance(command, RollbackCommand)
    assert [ref.name for ref in command.targets] == ["bootcamp", "workshop", "api"]
    assert command.dry_run
    assert parse_command(render_command(command), known_names=KNOWN) == command


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("bootcamp workshop 2", "a batch rolls every target back to its previous revision — drop `2`"),
        ("bootcamp 2 workshop", "a batch rolls every target back to its previous revision — drop `2`"),
        ("bootcamp workshop bootcamp", "`bootcamp` is named twice — name each target once"),
        ("workshop latest", "revision must be a whole number like `3`, not `latest`"),
    ],
    ids=["revision-after", "revision-between", "twice", "unknown-word-is-still-a-bad-revision"],
)
def test_batch_grammar_errors_say_what_to_do(text: str, message: str) -> None:
    with pytest.raises(CommandSyntaxError) as raised:
        parse_command(text, known_names=KNOWN)
    assert str(raised.value).startswith(message)


def test_a_single_target_parses_exactly_as_before() -> None:
    assert parse_command("workshop 1", known_names=KNOWN) == RollbackCommand(
        target=TargetRef.catalog("workshop"), to_revision=1
    )


# --- the strictest policy --------------------------------------------------------------------------------------

ANN, BEN, CAT = SlackUserId("U0ANN"), SlackUserId("U0BEN"), SlackUserId("U0CAT")


def test_the_strictest_policy_takes_the_most_approvals_common_approvers_and_shortest_expiry() -> None:
    policy = strictest_policy(
        [
            ApprovalPolicy(required=1, approvers=(ANN, BEN, CAT), approver_groups=("S0SRE",), allow_self_approval=True),
            ApprovalPolicy(required=2, approvers=(BEN, CAT), expires_after=timedelta(minutes=5)),
        ]
    )
    assert policy == ApprovalPolicy(
        required=2,
        approvers=(BEN, CAT),
        approver_groups=(),
        allow_self_approval=False,
        expires_after=timedelta(minutes=5),
    )


def test_a_batch_nobody_could_approve_is_refused() -> None:
    with pytest.raises(ValueError, match="nobody could approve the batch"):
        strictest_policy([ApprovalPolicy(approvers=(ANN,)), ApprovalPolicy(approvers=(BEN,))])


# --- the lifecycle ---------------------------------------------------------------------------------------------


def running_batch():
    batch = make_batch(phase=Phase.APPROVED, approvals=(Approval(user=APPROVER, at=NOW),))
    return advance(batch, ExecutionClaimed(executor="replica-a", lease_until=NOW + timedelta(seconds=30)), NOW)


def succeeded(summary: str = "3/3 ready") -> RolloutStatus:
    return RolloutStatus(phase=RolloutPhase.SUCCEEDED, summary=summary)


def test_claiming_a_batch_starts_every_member() -> None:
    transition = running_batch()
    assert transition.operation.phase is Phase.ROLLING_BACK
    assert [m.phase for m in transition.operation.members] == [Phase.ROLLING_BACK] * 3
    assert transition.note == "⏪ rolling back 3 targets: bootcamp 3 → 2, workshop 3 → 2, api 3 → 2"


def test_the_batch_ends_with_its_last_member_and_fails_unless_all_succeeded() -> None:
    operation = running_batch().operation
    receipt = advance(operation, MemberReceiptRecorded("api", RollbackReceipt(message="ok")), NOW)
    assert receipt.changed
    assert receipt.effects == ()
    operation = receipt.operation
    first = advance(operation, MemberObserved("bootcamp", succeeded()), NOW)
    assert first.operation.phase is Phase.ROLLING_BACK
    assert first.note == "✅ bootcamp: rolled back to revision 2 — 3/3 ready"
    second = advance(first.operation, MemberErrored("api", "service not found"), NOW)
    assert second.operation.phase is Phase.ROLLING_BACK
    last = advance(second.operation, MemberObserved("workshop", succeeded()), NOW)

    done = last.operation
    assert done.phase is Phase.FAILED
    assert [m.phase for m in done.members] == [Phase.SUCCEEDED, Phase.SUCCEEDED, Phase.FAILED]
    assert done.outcome == "2 of 3 rolled back (bootcamp, workshop); not rolled back: api"
    assert done.version == operation.version + 3
    lines = [effect.text for effect in last.effects if hasattr(effect, "text")]
    assert lines == ["✅ workshop: rolled back to revision 2 — 3/3 ready", f"❌ {done.outcome}"]
    # What a mass failure's member incidents hear: how the batch ended for their own target.
    assert member_outcome(done, "bootcamp") == (Phase.SUCCEEDED, "rolled back to revision 2 — 3/3 ready")
    assert member_outcome(done, "api") == (Phase.FAILED, "rollback failed: service not found")
    assert member_outcome(make_operation(phase=Phase.REJECTED, outcome="no"), "bootcamp") == (Phase.REJECTED, "no")


def test_the_progress_message_of_an_ended_batch_says_how_it_ended() -> None:
    running = advance(running_batch().operation, MemberObserved("bootcamp", succeeded()), NOW).operation
    assert batch_progress_message(running).blocks[0]["text"]["text"] == (
        ":arrows_counterclockwise: *Batch rollout* 1/3 finished"
    )
    failed = advance(running, MemberErrored("api", "service not found"), NOW).operation
    done = advance(failed, MemberObserved("workshop", succeeded()), NOW).operation
    assert batch_progress_message(done).blocks[0]["text"]["text"] == ":red_circle: *Batch rollout* 3/3 finished"
    rows = batch_progress_message(done).blocks[1]["text"]["text"].splitlines()
    assert rows[2] == ":red_circle: *api* → revision 2: rollback failed: service not found"


def test_events_for_a_finished_member_change_nothing() -> None:
    operation = advance(running_batch().operation, MemberErrored("api", "gone"), NOW).operation
    assert not advance(operation, MemberObserved("api", succeeded()), NOW).changed
    assert not advance(operation, MemberObserved("nosuch", succeeded()), NOW).changed


@pytest.mark.parametrize(
    "event",
    [RollbackErrored(reason="internal error"), ClaimRefused(reason="api is locked")],
    ids=["errored", "refused"],
)
def test_a_batch_ended_early_fails_every_unfinished_member(event) -> None:
    operation = advance(running_batch().operation, MemberObserved("bootcamp", succeeded()), NOW).operation
    if isinstance(event, ClaimRefused):
        operation = make_batch(phase=Phase.APPROVED)
    ended = advance(operation, event, NOW).operation
    assert ended.phase is Phase.FAILED
    assert all(m.phase.is_terminal for m in ended.members)
    assert all(m.outcome for m in ended.members if m.phase is Phase.FAILED)


def test_a_single_target_payload_is_unchanged() -> None:
    assert set(make_operation().metadata_payload()) == {
        "operation_id",
        "phase",
        "target",
        "backend",
        "from_revision",
        "to_revision",
        "source",
    }
