"""The spine: /rollback → request message → one ✅ → executed once → progress in the thread → SUCCEEDED."""

from __future__ import annotations

from bot.core.operations import METADATA_EVENT_TYPE
from sandbox.slack.seed import ALICE, BOB, INCIDENT
from tests.e2e_slack.conftest import WAIT, request_rollback, thread_texts, wait_for_phase


def test_approved_rollback_runs_once_and_reports_success_in_the_thread(slack, fake_slack, bot, backend) -> None:
    request = request_rollback(slack, fake_slack, bot, 'workshop 1 --reason "500s after deploy"')
    assert "workshop" in request.message.all_text()
    assert "revision 2 → 1" in request.message.all_text()
    assert "ghcr.io/acme/workshop:1.1.0" in request.message.all_text()
    assert request.operation.phase.value == "awaiting_approval"

    ack = slack.reaction_added(BOB, "white_check_mark", INCIDENT, request.ts)
    assert ack.status == 200

    final = wait_for_phase(fake_slack, request, "succeeded")
    target = bot.flow.catalog.get("workshop")
    assert target is not None
    assert backend.rollbacks_applied(target) == 1
    assert backend.current_revision(target) == 1
    assert "Rolled back" in final.all_text()

    thread = fake_slack.wait_for(
        lambda: (
            (lines := thread_texts(fake_slack, request))
            and any("rolled back to revision 1" in x for x in lines)
            and lines
        ),
        WAIT,
    )
    assert any("approved by" in line for line in thread)
    assert any("pods" in line for line in thread), thread
    assert any("rolled back to revision 1" in line for line in thread), thread
    # Every message about the operation carries its metadata, in the channel and in the thread.
    for message in fake_slack.thread(INCIDENT, request.ts):
        assert message.metadata is not None, message.text
        assert message.metadata["event_type"] == METADATA_EVENT_TYPE
        assert message.metadata["event_payload"]["operation_id"] == request.operation.id
    fake_slack.assert_no_errors()


def test_requester_sees_an_immediate_ephemeral_ack(slack, bot) -> None:
    ack = slack.slash_command("workshop", user=ALICE, channel=INCIDENT)
    assert ack.status == 200
    assert ack.latency < WAIT
    assert ack.ephemeral_text
