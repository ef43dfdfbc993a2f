"""Each listener through the bot's HTTP endpoint: what Slack sends in, what the bot acks, what it then does."""

from __future__ import annotations

import json
import urllib.request

from bot.core.operations import Phase
from sandbox.slack.driver import SlackDriver
from sandbox.slack.seed import ALICE, BOB, DAVE, INCIDENT, NOBOT_PRIVATE, SIGNING_SECRET
from tests.e2e_slack.conftest import WAIT, request_rollback


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - http to loopback
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_url_verification_echoes_the_challenge(slack, bot) -> None:
    ack = slack.url_verification("c-123")
    assert ack.status == 200
    assert ack.json == {"challenge": "c-123"}


def test_ssl_check_is_answered(slack, bot) -> None:
    assert slack.ssl_check().status == 200


def test_probes_and_metrics_are_served_next_to_the_slack_endpoint(slack, bot) -> None:
    slack.slash_command("help", user=DAVE, channel=INCIDENT)
    assert _get(f"{bot.url}/healthz")[0] == 200
    assert _get(f"{bot.url}/readyz") == (200, json.dumps({"status": "ready"}))
    status, metrics = _get(f"{bot.url}/metrics")
    assert status == 200
    assert 'rollbot_commands_total{verb="help"} 1.0' in metrics


def test_a_click_in_an_ephemeral_message_is_acked_and_ignored(slack, fake_slack, bot) -> None:
    request = request_rollback(slack, fake_slack, bot, "workshop")
    ack = slack.block_action(BOB, INCIDENT, request.ts, "rollbot_approve", is_ephemeral=True)
    assert ack.status == 200
    slack.reaction_added(DAVE, "white_check_mark", INCIDENT, request.ts)  # processed after the click would be
    fake_slack.wait_for(lambda: fake_slack.ephemerals(INCIDENT, DAVE), WAIT)
    assert bot.store.get(request.operation.id).phase is Phase.AWAITING_APPROVAL


def test_a_reaction_on_a_file_is_acked_and_ignored(slack, fake_slack, bot) -> None:
    inner = {
        "type": "reaction_added",
        "user": BOB,
        "reaction": "white_check_mark",
        "item": {"type": "file", "file": "F1"},
    }
    assert slack.event(inner).status == 200


def test_a_request_in_a_channel_the_bot_is_not_in_says_how_to_fix_it(slack, fake_slack, bot) -> None:
    ack = slack.slash_command("workshop", user=ALICE, channel=NOBOT_PRIVATE)
    assert ack.status == 200
    reply = fake_slack.wait_for(
        lambda: [r.text for r in fake_slack.responses("commands", user=ALICE) if "/invite" in r.text], WAIT
    )
    assert "<#G0NOBOT>" in reply[-1]
    # The abandoned request released the target at once.
    request_rollback(slack, fake_slack, bot, "workshop", user=ALICE)


def test_the_bots_own_reactions_are_dropped_by_bolt(slack, fake_slack, bot) -> None:
    request = request_rollback(slack, fake_slack, bot, "workshop")
    assert slack.reaction_added("UBOT", "white_check_mark", INCIDENT, request.ts).status == 200
    slack.reaction_added(DAVE, "white_check_mark", INCIDENT, request.ts)
    fake_slack.wait_for(lambda: fake_slack.ephemerals(INCIDENT, DAVE), WAIT)
    assert fake_slack.ephemerals(INCIDENT, "UBOT") == []
    assert bot.store.get(request.operation.id).approvals == ()


def test_the_slash_command_name_comes_from_the_settings(fake_slack, make_bot) -> None:
    bot = make_bot(slash_command="/rb")
    with SlackDriver(bot.events_url, SIGNING_SECRET, fake_slack) as slack:
        ack = slack.slash_command("help", user=DAVE, channel=INCIDENT, command="/rb")
        assert ack.status == 200
        assert "`/rb <target> [<revision>]`" in (ack.ephemeral_text or "")
        assert slack.slash_command("help", user=DAVE, channel=INCIDENT, command="/rollback").status == 404
