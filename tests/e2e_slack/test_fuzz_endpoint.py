"""The trimmed fuzz campaign (`bench/faults.py --scenario fuzz` runs 100,000): 300 generated requests, deterministic.

A real bot on its HTTP endpoint with a real redis-server and the fake Slack receives generated slash commands,
button clicks, events and raw bodies, some with forged signatures (sandbox/slack/fuzz_requests.py). Every correctly
signed one must be answered 200 and every forged one 401, none may hang, the bot's log must hold no exception or
ERROR line (fuzz_verdict.py says what counts), and nothing the bot sent to Slack may carry a traceback. Then the
requests that once crashed the endpoint, one by one.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from urllib.parse import urlencode

import pytest
import structlog
from hypothesis import HealthCheck, Phase, given, settings

from bot.app import RollbotApp
from bot.logging import configure_logging
from sandbox.slack.driver import SlackDriver
from sandbox.slack.fuzz_requests import FORM, JSON, FuzzRequest, FuzzSender, FuzzWorld, fuzz_requests
from sandbox.slack.fuzz_verdict import MALFORMED_EVENT, FuzzTally, LogLines, slack_tracebacks
from sandbox.slack.seed import ALICE, INCIDENT, OPS, SIGNING_SECRET
from sandbox.slack.server import FakeSlack
from tests.e2e_slack.conftest import request_rollback

EXAMPLES = 300
# Slack waits 3 s for an ack; a request still unanswered after this is hung.
REQUEST_TIMEOUT_SECONDS = 5.0


@pytest.fixture
def bot_log() -> Iterator[LogLines]:
    """The bot's log as production writes it (JSON lines at WARNING and above), kept for the assertions."""
    lines = LogLines()
    configure_logging("WARNING", secrets=[], stream=lines)
    yield lines
    logging.getLogger().handlers.clear()
    structlog.reset_defaults()


@pytest.fixture
def sender(bot: RollbotApp) -> Iterator[FuzzSender]:
    fuzz_sender = FuzzSender(bot.events_url, SIGNING_SECRET, timeout=REQUEST_TIMEOUT_SECONDS)
    yield fuzz_sender
    fuzz_sender.close()


def test_generated_requests_are_all_answered_200_or_401_without_a_crash(
    bot_log: LogLines, bot: RollbotApp, slack: SlackDriver, fake_slack: FakeSlack, sender: FuzzSender
) -> None:
    request = request_rollback(slack, fake_slack, bot, "shop-1 1")
    world = FuzzWorld(
        messages=((request.channel, request.ts),),
        operation_ids=(str(request.operation.id),),
        response_urls=tuple(fake_slack.issue_response_url("commands", INCIDENT, ALICE) for _ in range(10)),
    )
    tally = FuzzTally()

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(fuzz_requests(world))
    def send(fuzzed: FuzzRequest) -> None:
        tally.record(fuzzed, sender.send(fuzzed))

    send()
    bot.finish_gestures()  # the answers that follow the acks

    summary = tally.summary()
    assert summary["requests"] == EXAMPLES
    assert summary["wrong_answers"] == 0, summary["wrong_answer_samples"]
    assert summary["hung_requests"] == 0
    assert set(summary["statuses"]) == {"200", "401"}
    assert bot_log.crashes() == []
    assert slack_tracebacks(fake_slack) == []
    assert bot_log.count(MALFORMED_EVENT) > 0, "the generator no longer reaches the malformed-request path"


def _form(payload: object) -> FuzzRequest:
    return FuzzRequest("raw", urlencode({"payload": json.dumps(payload)}).encode(), FORM)


def _json(payload: object) -> FuzzRequest:
    return FuzzRequest("raw", json.dumps(payload).encode(), JSON)


# Each of these was answered 500 (Bolt raising before any listener) or 404 before the fixes they name.
ONCE_CRASHED = {
    "payload that is not JSON": FuzzRequest("raw", b"payload=%7Bnot", FORM),
    "payload that is a JSON list": _form([1, 2]),
    "payload null": _form(None),
    "JSON body that is not JSON": FuzzRequest("raw", b"{not json", JSON),
    "JSON body that is a string": _json("x"),
    "form body under a JSON content type": FuzzRequest("raw", b"command=%2Frollback&text=help", JSON),
    "an event that is a string": _json({"type": "event_callback", "event": "x"}),
    "an event whose type is a number": _json({"type": "event_callback", "event": {"type": 5}}),
    "an event_callback without an event": _json({"type": "event_callback"}),
    "authorizations that are a string": _json(
        {"type": "event_callback", "authorizations": "x", "event": {"type": "m"}}
    ),
    "block_actions with no actions": _form({"type": "block_actions", "actions": []}),
    "block_actions whose action is a number": _form({"type": "block_actions", "actions": [1]}),
    "block_actions with an unknown action id": _form({"type": "block_actions", "actions": [{"action_id": "old"}]}),
    "a view without a type": _form({"type": "view_submission", "view": {"callback_id": "x"}}),
    "an interactive_message without actions": _form({"type": "interactive_message", "callback_id": "x"}),
    "Slack's app_rate_limited notice": _json({"type": "app_rate_limited", "minute_rate_limited": 1518467820}),
    "an empty form": FuzzRequest("raw", b"", FORM),
    # This one killed the whole process: json.loads overflowed a waitress thread's stack.
    "JSON nested 100,000 levels deep": FuzzRequest("raw", b"[" * 100_000 + b"]" * 100_000, JSON),
    "a payload nested 100,000 levels deep": FuzzRequest("raw", b"payload=" + b"%5B" * 100_000, FORM),
}


@pytest.mark.parametrize("fuzzed", list(ONCE_CRASHED.values()), ids=list(ONCE_CRASHED))
def test_a_request_that_once_crashed_the_endpoint_is_answered_200(
    bot_log: LogLines, bot: RollbotApp, sender: FuzzSender, fuzzed: FuzzRequest
) -> None:
    answer = sender.send(fuzzed)
    assert (answer.status, answer.transport_error) == (200, None), answer.body
    assert bot_log.crashes() == []


def test_a_forged_request_with_a_400_digit_timestamp_is_401_not_500(sender: FuzzSender, bot_log: LogLines) -> None:
    # slack_sdk compares the timestamp as a float: OverflowError, which the endpoint answered 500.
    fuzzed = FuzzRequest("raw", b"command=%2Frollback&text=help", FORM, "garbled", "9" * 400)
    assert sender.send(fuzzed).status == 401
    assert bot_log.crashes() == []


def test_a_command_without_response_url_is_answered_by_ephemeral_message(
    bot_log: LogLines, bot: RollbotApp, sender: FuzzSender, fake_slack: FakeSlack
) -> None:
    # Bolt's respond() raises without a response_url; the answer used to arrive with a traceback in the log.
    body = urlencode({"command": "/rollback", "text": "status workshop", "user_id": ALICE, "channel_id": OPS})
    assert sender.send(FuzzRequest("command", body.encode(), FORM)).status == 200
    fake_slack.wait_for(lambda: fake_slack.ephemerals(OPS, ALICE), 10, description="the status, as an ephemeral")
    assert bot_log.crashes() == []


def test_an_unreachable_response_url_or_unknown_channel_is_a_warning_not_a_traceback(
    bot_log: LogLines, bot: RollbotApp, sender: FuzzSender
) -> None:
    body = urlencode(
        {"command": "/rollback", "text": "status workshop", "user_id": ALICE, "channel_id": "C0NOWHERE"}
        | {"response_url": "ftp://127.0.0.1/x"}
    )
    assert sender.send(FuzzRequest("command", body.encode(), FORM)).status == 200
    bot.finish_gestures()
    assert bot_log.crashes() == []
    assert bot_log.count("Slack refused the command's answer") == 1


def test_a_command_without_user_or_channel_is_acked_and_ignored(
    bot_log: LogLines, bot: RollbotApp, sender: FuzzSender, fake_slack: FakeSlack
) -> None:
    # The flow posted a request message to channel "": Slack refused it, logged as an internal error.
    body = urlencode({"command": "/rollback", "text": "shop-1 1", "user_id": ALICE})
    assert sender.send(FuzzRequest("command", body.encode(), FORM)).status == 200
    bot.finish_gestures()
    assert fake_slack.calls("chat.postMessage") == []
    assert bot_log.crashes() == []


def test_a_reaction_from_nobody_is_not_counted(
    bot_log: LogLines, bot: RollbotApp, slack: SlackDriver, fake_slack: FakeSlack, sender: FuzzSender
) -> None:
    # users.info("") is refused by Slack; the flow logged it as an internal error.
    request = request_rollback(slack, fake_slack, bot, "shop-1 1")
    event = {"type": "reaction_added", "user": "", "reaction": "white_check_mark"}
    event |= {"item": {"type": "message", "channel": request.channel, "ts": request.ts}}
    body = json.dumps({"type": "event_callback", "event_id": "Ev1", "event": event}).encode()
    assert sender.send(FuzzRequest("event", body, JSON)).status == 200
    bot.finish_gestures()
    assert bot.store.get(request.operation.id).approvals == ()
    assert bot_log.crashes() == []


def test_log_lines_with_an_exception_are_crashes() -> None:
    # The verdict itself: a test that cannot fail proves nothing.
    lines = LogLines()
    print(json.dumps({"event": "handling a button failed", "level": "error", "exception": "Traceback …"}), file=lines)
    print(json.dumps({"event": MALFORMED_EVENT, "level": "warning"}), file=lines)
    assert [r["event"] for r in lines.crashes()] == ["handling a button failed"]
    assert isinstance(lines, io.TextIOBase)
