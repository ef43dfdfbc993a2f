"""Socket Mode (SLACK_APP_TOKEN set): the same listeners and flow, reached over the fake's WebSocket."""

from __future__ import annotations

import json
import urllib.request

from sandbox.slack.seed import ALICE, APP_TOKEN, BOB, INCIDENT, TEAM_ID
from tests.e2e_slack.conftest import WAIT, Request, request_messages, wait_for_phase


def test_a_rollback_requested_and_approved_over_socket_mode_succeeds(fake_slack, make_bot) -> None:
    bot = make_bot(slack_app_token=APP_TOKEN, slack_signing_secret="")
    fake_slack.wait_for_socket()
    with urllib.request.urlopen(f"{bot.url}/healthz", timeout=5) as response:  # noqa: S310 - http to loopback
        assert response.status == 200

    ack = fake_slack.push_envelope(
        "slash_commands",
        {
            "command": "/rollback",
            "text": "workshop 1",
            "user_id": ALICE,
            "user_name": "alice",
            "channel_id": INCIDENT,
            "channel_name": "incident",
            "team_id": TEAM_ID,
            "response_url": fake_slack.issue_response_url("commands", INCIDENT, ALICE),
            "trigger_id": fake_slack.issue_trigger_id(ALICE),
        },
    )
    assert ack.acked
    assert "Working on" in json.dumps(ack.payload)
    posted = fake_slack.wait_for(lambda: request_messages(fake_slack), WAIT, description="the request message")
    operation = bot.store.get(posted[-1].metadata["event_payload"]["operation_id"])
    request = Request(message=posted[-1], operation=operation)

    fake_slack.apply_reaction(INCIDENT, request.ts, "white_check_mark", BOB)
    event = {
        "type": "event_callback",
        "team_id": TEAM_ID,
        "event_id": "EvSOCKET1",
        "event_time": 1_700_000_000,
        "event": {
            "type": "reaction_added",
            "user": BOB,
            "reaction": "white_check_mark",
            "item": {"type": "message", "channel": INCIDENT, "ts": request.ts},
            "event_ts": "1700000000.000100",
        },
        "authorizations": [{"team_id": TEAM_ID, "user_id": "UBOT", "is_bot": True}],
    }
    assert fake_slack.push_envelope("events_api", event).acked
    wait_for_phase(fake_slack, request, "succeeded")
    fake_slack.close_sockets()
