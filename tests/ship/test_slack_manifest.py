"""slack-app-manifest.yaml matches what the bot registers and calls.

- Listeners: the real Bolt app from `bot.app.build_app` is probed with Slack-shaped payloads. Every event a
  specific listener handles is subscribed (and nothing else is), the slash command is the one the bot listens
  to, and the buttons' action ids have listeners, so interactivity must be on.
- Scopes: the fake Slack grants the bot token exactly the manifest's scopes, then real flows run (help, status,
  history, a reaction-approved rollback, a button-approved one, a two-approval one, a withdrawn vote, a
  rejection, a cancellation). No call may fail with `missing_scope`, and every manifest scope must have been
  needed by a call, an event subscription or the slash command: enough, and no more.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from slack_bolt.listener import Listener
from slack_bolt.request import BoltRequest
from slack_bolt.response import BoltResponse

from bot.app import RollbotApp, build_app
from bot.core.catalog import BackendKind, parse_catalog
from sandbox.slack.driver import SlackDriver
from sandbox.slack.seed import ALICE, BOB, BOT_TOKEN, CAROL, DAVE, INCIDENT, SIGNING_SECRET
from sandbox.slack.server import FakeSlack
from sandbox.slack.webapi import METHODS
from tests.e2e_slack.conftest import CATALOG, arrange_all, bot_settings, request_rollback, wait_for_phase
from tests.fakes.memory_backend import MemoryBackend

MANIFEST_PATH = Path(__file__).resolve().parents[2] / "slack-app-manifest.yaml"

# Slack's Events API: the scope a bot needs to receive each event (docs.slack.dev/reference/events).
EVENT_SCOPES = {"reaction_added": "reactions:read", "reaction_removed": "reactions:read"}
# Event types a bot commonly receives; with the manifest's own they are the probes for the event listeners.
COMMON_EVENTS = (
    "message",
    "app_mention",
    "app_home_opened",
    "member_joined_channel",
    "member_left_channel",
    "channel_created",
    "channel_archive",
    "pin_added",
    "star_added",
    "team_join",
    "user_change",
    "app_uninstalled",
    "tokens_revoked",
    "reaction_added",
    "reaction_removed",
)
NEVER_SENT = "rollbot_probe_event_slack_never_sends"


@pytest.fixture(autouse=True)
def _no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    # slack_sdk honours HTTP(S)_PROXY and ignores NO_PROXY: loopback must not go through a proxy.
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def manifest() -> dict[str, Any]:
    return dict(yaml.safe_load(MANIFEST_PATH.read_text(encoding="utf-8")))


@pytest.fixture
def fake_slack(manifest: dict[str, Any]) -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        fake.set_scopes(BOT_TOKEN, tuple(manifest["oauth_config"]["scopes"]["bot"]))
        yield fake


@pytest.fixture
def backend() -> MemoryBackend:
    backend = MemoryBackend()
    arrange_all(backend, parse_catalog(CATALOG))
    return backend


@pytest.fixture
def bot(fake_slack: FakeSlack, redis_url: str, tmp_path: Path, backend: MemoryBackend) -> Iterator[RollbotApp]:
    catalog_path = tmp_path / "catalog.yaml"
    catalog_path.write_text(yaml.safe_dump(CATALOG), encoding="utf-8")
    settings = bot_settings(fake_slack, redis_url, catalog_path)
    app = build_app(settings, backends=dict.fromkeys(BackendKind, backend)).start()
    yield app
    app.stop()


@pytest.fixture
def slack(bot: RollbotApp, fake_slack: FakeSlack) -> Iterator[SlackDriver]:
    with SlackDriver(bot.events_url, SIGNING_SECRET, fake_slack) as driver:
        yield driver


# -- listeners ----------------------------------------------------------------------------------------------


def matches(listener: Listener, body: dict[str, Any]) -> bool:
    return listener.matches(req=BoltRequest(body=body, mode="socket_mode"), resp=BoltResponse(status=200))


def event_body(event_type: str) -> dict[str, Any]:
    event = {
        "type": event_type,
        "user": ALICE,
        "reaction": "white_check_mark",
        "item": {"type": "message", "channel": INCIDENT, "ts": "1700000000.000100"},
        "channel": INCIDENT,
        "text": "hello",
        "ts": "1700000000.000200",
        "event_ts": "1700000000.000200",
    }
    return {
        "type": "event_callback",
        "token": "verification",
        "team_id": "T0ACME",
        "api_app_id": "A0ROLLBOT",
        "event": event,
        "event_id": "Ev0PROBE",
        "event_time": 1700000000,
    }


def command_body(command: str) -> dict[str, Any]:
    return {
        "command": command,
        "text": "help",
        "user_id": ALICE,
        "channel_id": INCIDENT,
        "team_id": "T0ACME",
        "trigger_id": "1.2.3",
        "response_url": "https://hooks.slack.com/commands/T0ACME/1/abc",
    }


def action_body(action_id: str) -> dict[str, Any]:
    return {
        "type": "block_actions",
        "team": {"id": "T0ACME"},
        "user": {"id": ALICE},
        "api_app_id": "A0ROLLBOT",
        "container": {"type": "message", "channel_id": INCIDENT, "message_ts": "1700000000.000100"},
        "channel": {"id": INCIDENT},
        "actions": [{"action_id": action_id, "block_id": "rollbot", "type": "button", "action_ts": "1.0"}],
    }


def test_every_event_the_bot_handles_is_subscribed_and_nothing_more(manifest: dict[str, Any], bot: RollbotApp) -> None:
    subscribed = set(manifest["settings"]["event_subscriptions"]["bot_events"])
    candidates = sorted(subscribed | set(COMMON_EVENTS))
    handled: set[str] = set()
    catch_alls = 0
    for listener in bot.bolt._listeners:  # Bolt keeps no public list of its listeners
        if matches(listener, event_body(NEVER_SENT)):
            # The ack-everything listener (so Slack never retries an unhandled event) subscribes to nothing.
            assert all(matches(listener, event_body(t)) for t in candidates)
            catch_alls += 1
            continue
        handled |= {t for t in candidates if matches(listener, event_body(t))}
    assert catch_alls == 1
    assert handled == subscribed


def test_the_slash_command_is_the_one_the_bot_listens_to(manifest: dict[str, Any], bot: RollbotApp) -> None:
    (command,) = manifest["features"]["slash_commands"]
    assert command["command"] == bot.settings.slash_command
    listeners = bot.bolt._listeners
    assert len([x for x in listeners if matches(x, command_body(command["command"]))]) == 1
    assert not [x for x in listeners if matches(x, command_body("/something-else"))]


def test_every_listener_is_an_event_the_command_or_a_button(manifest: dict[str, Any], bot: RollbotApp) -> None:
    command = manifest["features"]["slash_commands"][0]["command"]
    probes = [event_body(NEVER_SENT), command_body(command)]
    probes += [event_body(t) for t in manifest["settings"]["event_subscriptions"]["bot_events"]]
    buttons = (
        "rollbot_approve",
        "rollbot_reject",
        "rollbot_incident_rollback",
        "rollbot_auto_cancel",
        "rollbot_incident_group_rollback",
    )
    probes += [action_body(a) for a in buttons]
    for listener in bot.bolt._listeners:
        assert any(matches(listener, body) for body in probes), f"a listener the manifest does not wire: {listener}"


# -- flows under exactly the manifest's scopes ------------------------------------------------------------


def test_flows_succeed_with_exactly_the_manifest_scopes(
    manifest: dict[str, Any], bot: RollbotApp, slack: SlackDriver, fake_slack: FakeSlack
) -> None:
    assert slack.slash_command("help", user=ALICE, channel=INCIDENT).status == 200
    assert slack.slash_command("status workshop", user=ALICE, channel=INCIDENT).status == 200
    assert slack.slash_command("history workshop", user=ALICE, channel=INCIDENT).status == 200

    by_reaction = request_rollback(slack, fake_slack, bot, "workshop 1")
    slack.reaction_added(BOB, "white_check_mark", INCIDENT, by_reaction.ts)
    wait_for_phase(fake_slack, by_reaction, "succeeded")

    by_button = request_rollback(slack, fake_slack, bot, "bootcamp")
    assert slack.block_action(CAROL, INCIDENT, by_button.ts, "rollbot_approve").status == 200
    wait_for_phase(fake_slack, by_button, "succeeded")

    two_votes = request_rollback(slack, fake_slack, bot, "fluentd")
    slack.reaction_added(BOB, "white_check_mark", INCIDENT, two_votes.ts)
    slack.reaction_added(CAROL, "white_check_mark", INCIDENT, two_votes.ts)
    wait_for_phase(fake_slack, two_votes, "succeeded")

    rejected = request_rollback(slack, fake_slack, bot, "shop-1")
    slack.reaction_added(DAVE, "white_check_mark", INCIDENT, rejected.ts)  # not an approver
    slack.reaction_removed(DAVE, "white_check_mark", INCIDENT, rejected.ts)
    slack.reaction_added(BOB, "x", INCIDENT, rejected.ts)
    wait_for_phase(fake_slack, rejected, "rejected")

    cancelled = request_rollback(slack, fake_slack, bot, "shop-2")
    assert slack.slash_command(f"cancel {cancelled.operation.id}", user=ALICE, channel=INCIDENT).status == 200
    wait_for_phase(fake_slack, cancelled, "cancelled")

    calls = fake_slack.calls()
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    assert not [c.method for c in calls if c.response.get("error") == "missing_scope"]
    assert all(c.token == BOT_TOKEN for c in calls)
    called = {c.method for c in calls}
    needed_by_calls = set()
    for method in called:
        allowed = set(METHODS[method].scopes)
        assert not allowed or allowed & scopes, f"{method} needs one of {sorted(allowed)}"
        needed_by_calls |= allowed & scopes
    needed_by_events = {EVENT_SCOPES[e] for e in manifest["settings"]["event_subscriptions"]["bot_events"]}
    needed_by_command = {"commands"} if manifest["features"]["slash_commands"] else set()
    assert needed_by_calls | needed_by_events | needed_by_command == scopes
    # Every button the bot ever posted (calls keep the blocks as sent) has a listener, and interactivity is on.
    action_ids = {
        element["action_id"]
        for call in calls
        if call.method in ("chat.postMessage", "chat.update", "chat.postEphemeral")
        for block in call.args.get("blocks") or []
        if block.get("type") == "actions"
        for element in block.get("elements", [])
    }
    assert action_ids
    for action_id in action_ids:
        assert [x for x in bot.bolt._listeners if matches(x, action_body(action_id))], action_id
    assert manifest["settings"]["interactivity"]["is_enabled"] is True


def test_manifest_defaults_to_socket_mode_with_the_bot_always_online(manifest: dict[str, Any]) -> None:
    assert manifest["settings"]["socket_mode_enabled"] is True
    assert manifest["features"]["bot_user"]["always_online"] is True
    assert manifest["settings"]["org_deploy_enabled"] is False
    # No request URLs in Socket Mode (Slack rejects a manifest that mixes them with socket_mode_enabled).
    assert "request_url" not in manifest["settings"]["event_subscriptions"]
    assert "request_url" not in manifest["settings"]["interactivity"]
    assert "url" not in manifest["features"]["slash_commands"][0]
