"""Who may approve, and what every other gesture on a request message does, through the HTTP endpoint."""

from __future__ import annotations

from datetime import timedelta

from bot.core.operations import Phase
from sandbox.slack.seed import ALICE, BOB, CAROL, DAVE, INCIDENT
from tests.e2e_slack.conftest import (
    WAIT,
    eventually,
    request_messages,
    request_rollback,
    thread_texts,
    wait_for_phase,
    wait_for_thread_line,
)
from tests.fakes.clock import ManualClock


def _ephemeral_to(fake, user: str, containing: str):
    return fake.wait_for(
        lambda: [e for e in fake.ephemerals(INCIDENT, user) if containing in e.all_text()],
        WAIT,
        description=f"an ephemeral to {user} containing {containing!r}",
    )


def _operation(bot, request):
    operation = bot.store.get(request.operation.id)
    assert operation is not None
    return operation


def test_requesters_own_approval_does_not_count_and_they_are_told_why(slack, fake_slack, bot, backend) -> None:
    request = request_rollback(slack, fake_slack, bot, "workshop", user=ALICE)
    slack.reaction_added(ALICE, "white_check_mark", INCIDENT, request.ts)
    told = _ephemeral_to(fake_slack, ALICE, "someone else must approve")
    assert told
    operation = _operation(bot, request)
    assert operation.phase is Phase.AWAITING_APPROVAL
    assert operation.approvals == ()


def test_approval_from_someone_not_allowed_is_ignored_and_they_are_told_why(slack, fake_slack, bot) -> None:
    request = request_rollback(slack, fake_slack, bot, "workshop")
    slack.reaction_added(DAVE, "white_check_mark", INCIDENT, request.ts)
    told = _ephemeral_to(fake_slack, DAVE, "not an approver")
    assert "U0BOB" in told[-1].all_text()
    assert _operation(bot, request).phase is Phase.AWAITING_APPROVAL
    assert _operation(bot, request).approvals == ()


def test_an_approver_in_the_user_group_counts(slack, fake_slack, make_bot, backend, catalog) -> None:
    # Only the group is listed: CAROL approves through S0SRE membership (usergroups.users.list).
    bot = make_bot()
    request = request_rollback(slack, fake_slack, bot, "workshop")
    slack.reaction_added(CAROL, "white_check_mark::skin-tone-3", INCIDENT, request.ts)
    wait_for_phase(fake_slack, request, "succeeded")


def test_reject_reaction_from_an_approver_rejects_and_releases_the_target(slack, fake_slack, bot, backend) -> None:
    request = request_rollback(slack, fake_slack, bot, "workshop")
    slack.reaction_added(BOB, "x", INCIDENT, request.ts)
    message = wait_for_phase(fake_slack, request, "rejected")
    assert "Rejected" in message.all_text()
    assert not any(block.get("type") == "actions" for block in message.blocks or [])
    assert bot.store.lock_holder(request.operation.target.lock_key) is None
    target = bot.flow.catalog.get("workshop")
    assert backend.rollbacks_applied(target) == 0
    # The target is free again: a new request goes through.
    request_rollback(slack, fake_slack, bot, "workshop")


def test_requesters_own_reject_cancels_the_request(slack, fake_slack, bot) -> None:
    request = request_rollback(slack, fake_slack, bot, "workshop", user=ALICE)
    slack.reaction_added(ALICE, "x", INCIDENT, request.ts)
    wait_for_phase(fake_slack, request, "cancelled")


def test_withdrawn_approval_before_execution_no_longer_counts(slack, fake_slack, bot, backend) -> None:
    request = request_rollback(slack, fake_slack, bot, "fluentd")  # needs 2 approvals
    slack.reaction_added(BOB, "white_check_mark", INCIDENT, request.ts)
    eventually(lambda: len(_operation(bot, request).approvals) == 1)
    slack.reaction_removed(BOB, "white_check_mark", INCIDENT, request.ts)
    wait_for_thread_line(fake_slack, request, "withdrew")
    slack.reaction_added(CAROL, "white_check_mark", INCIDENT, request.ts)
    eventually(lambda: _operation(bot, request).approvers == ("U0CAROL",))
    assert _operation(bot, request).phase is Phase.AWAITING_APPROVAL
    assert backend.rollbacks_applied(bot.flow.catalog.get("fluentd")) == 0
    fake_slack.wait_for(
        lambda: "approvals 1/2 (<@U0CAROL>)" in fake_slack.message(INCIDENT, request.ts).all_text(), WAIT
    )


def test_the_same_event_delivered_three_times_counts_once(slack, fake_slack, bot) -> None:
    request = request_rollback(slack, fake_slack, bot, "fluentd")  # needs 2 approvals
    event_id = slack.new_event_id()
    for retry in (None, 1, 2):
        ack = slack.reaction_added(BOB, "white_check_mark", INCIDENT, request.ts, event_id, retry_num=retry)
        assert ack.status == 200
    eventually(lambda: len(_operation(bot, request).approvals) == 1)
    wait_for_thread_line(fake_slack, request, "approved by")
    # A later, different event is handed to the executor after the three deliveries, so by the time it is
    # answered they have all been processed (and two of them dropped).
    slack.reaction_added(DAVE, "white_check_mark", INCIDENT, request.ts)
    _ephemeral_to(fake_slack, DAVE, "not an approver")
    operation = _operation(bot, request)
    assert operation.approvers == ("U0BOB",)
    assert operation.phase is Phase.AWAITING_APPROVAL
    approved_lines = [line for line in thread_texts(fake_slack, request) if "approved by" in line]
    assert len(approved_lines) == 1


def test_reactions_on_other_messages_are_ignored_silently(slack, fake_slack, bot) -> None:
    request = request_rollback(slack, fake_slack, bot, "workshop")
    other_ts = fake_slack.post_as_user(INCIDENT, DAVE, "unrelated chatter")
    slack.reaction_added(BOB, "white_check_mark", INCIDENT, other_ts)
    slack.reaction_added(DAVE, "x", INCIDENT, other_ts)
    slack.reaction_added(BOB, "tada", INCIDENT, request.ts)
    # The next vote on the request is processed after those, so by then they have been ignored.
    slack.reaction_added(DAVE, "white_check_mark", INCIDENT, request.ts)
    _ephemeral_to(fake_slack, DAVE, "not an approver")
    assert [e.user for e in fake_slack.ephemerals(INCIDENT)].count(BOB) == 0
    assert _operation(bot, request).phase is Phase.AWAITING_APPROVAL


def test_approve_button_approves_like_the_reaction(slack, fake_slack, bot, backend) -> None:
    request = request_rollback(slack, fake_slack, bot, "workshop")
    ack = slack.block_action(DAVE, INCIDENT, request.ts, "rollbot_approve")
    assert ack.status == 200
    _ephemeral_to(fake_slack, DAVE, "not an approver")
    ack = slack.block_action(BOB, INCIDENT, request.ts, "rollbot_approve")
    assert ack.status == 200
    wait_for_phase(fake_slack, request, "succeeded")
    assert backend.rollbacks_applied(bot.flow.catalog.get("workshop")) == 1


def test_reject_button_rejects(slack, fake_slack, bot) -> None:
    request = request_rollback(slack, fake_slack, bot, "workshop")
    slack.block_action(CAROL, INCIDENT, request.ts, "rollbot_reject")
    wait_for_phase(fake_slack, request, "rejected")


def test_unanswered_request_expires_and_frees_the_target(fake_slack, make_bot, backend) -> None:
    clock = ManualClock()
    bot = make_bot(clock=clock)
    from sandbox.slack.driver import SlackDriver
    from sandbox.slack.seed import SIGNING_SECRET

    with SlackDriver(bot.events_url, SIGNING_SECRET, fake_slack) as slack:
        request = request_rollback(slack, fake_slack, bot, "workshop")
        clock.advance(timedelta(minutes=15))
        message = wait_for_phase(fake_slack, request, "expired")
        assert "Expired" in message.all_text()
        wait_for_thread_line(fake_slack, request, "expired")
        assert bot.store.lock_holder(request.operation.target.lock_key) is None
        # Fail closed: a vote after expiry changes nothing and the voter hears why.
        slack.reaction_added(BOB, "white_check_mark", INCIDENT, request.ts)
        _ephemeral_to(fake_slack, BOB, "expired")
        assert backend.rollbacks_applied(bot.flow.catalog.get("workshop")) == 0


def test_cancel_command_by_the_requester_cancels(slack, fake_slack, bot) -> None:
    request = request_rollback(slack, fake_slack, bot, "workshop", user=ALICE)
    ack = slack.slash_command(f"cancel {request.operation.id}", user=ALICE, channel=INCIDENT)
    assert ack.status == 200
    wait_for_phase(fake_slack, request, "cancelled")


def test_a_deleted_request_message_is_posted_again_and_votes_on_the_new_one_count(slack, fake_slack, bot) -> None:
    request = request_rollback(slack, fake_slack, bot, "fluentd")  # needs 2 approvals
    fake_slack.delete_message(fake_slack.find_message(INCIDENT, request.ts), by=DAVE)
    slack.block_action(BOB, INCIDENT, request.ts, "rollbot_approve")  # a stale client still shows the buttons
    reposted = fake_slack.wait_for(
        lambda: [m for m in request_messages(fake_slack) if m.ts != request.ts], WAIT, description="the re-post"
    )[-1]
    assert "approvals 1/2 (<@U0BOB>)" in reposted.all_text()
    slack.reaction_added(CAROL, "white_check_mark", INCIDENT, reposted.ts)
    eventually(lambda: _operation(bot, request).phase is Phase.SUCCEEDED)
