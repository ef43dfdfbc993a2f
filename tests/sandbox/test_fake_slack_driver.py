"""The signed request driver and the response_url sink, against a real Bolt app and a recording endpoint."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import pytest
from slack_bolt import Ack as BoltAck
from slack_bolt import App, Respond
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk import WebClient
from slack_sdk.signature import Clock, SignatureVerifier
from slack_sdk.webhook import WebhookClient

from sandbox.slack import FakeSlack, ManualClock, SlackDriver, compute_signature, seed
from sandbox.slack.wsgi_host import WsgiHost

PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")

# Slack's documented sample request (slack.md §1.1).
GOLDEN_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
GOLDEN_TIMESTAMP = 1531420618
GOLDEN_BODY = (
    b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&"
    b"channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&"
    b"response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&"
    b"trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
)
GOLDEN_SIGNATURE = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    with FakeSlack() as running:
        yield running


# ---------------------------------------------------------------------------------------------- recording endpoint


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class RecordingEndpoint:
    """A stand-in bot endpoint that records requests and answers from a script of (status, headers)."""

    script: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    hold_first: threading.Event | None = None  # the first request blocks until this is set (a hung bot)
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        headers = {
            key[5:].replace("_", "-").lower(): str(value) for key, value in environ.items() if key.startswith("HTTP_")
        }
        headers["content-type"] = environ.get("CONTENT_TYPE", "")
        with self.lock:
            is_first = not self.received
            self.received.append(Received(headers, body))
            status, extra = self.script.pop(0) if self.script else (200, {})
        if is_first and self.hold_first is not None:
            self.hold_first.wait(timeout=5)
        start_response(f"{status} X", [("Content-Type", "text/plain"), *extra.items()])
        return [b""]


@pytest.fixture
def endpoint() -> RecordingEndpoint:
    return RecordingEndpoint()


@pytest.fixture
def recording_driver(endpoint: RecordingEndpoint, fake: FakeSlack) -> Iterator[SlackDriver]:
    with WsgiHost(endpoint) as host, SlackDriver(f"{host.url}/slack/events", seed.SIGNING_SECRET, fake) as driver:
        yield driver


class FixedClock(Clock):
    def __init__(self, now: float) -> None:
        self._now = now

    def now(self) -> float:
        return self._now


# ---------------------------------------------------------------------------------------------- signing


def test_signature_matches_slacks_golden_vector() -> None:
    assert compute_signature(GOLDEN_SECRET, GOLDEN_TIMESTAMP, GOLDEN_BODY) == GOLDEN_SIGNATURE


def test_driver_signs_the_exact_bytes_it_sends(recording_driver: SlackDriver, endpoint: RecordingEndpoint) -> None:
    recording_driver.slash_command("workshop 1", seed.ALICE, seed.OPS)

    request = endpoint.received[0]
    verifier = SignatureVerifier(seed.SIGNING_SECRET)
    assert verifier.is_valid_request(request.body, request.headers)
    assert request.headers["user-agent"].startswith("Slackbot 1.0")
    assert parse_qs(request.body.decode())["text"] == ["workshop 1"]


@pytest.mark.parametrize(
    ("shift", "valid"),
    [(-300, True), (-301, False), (300, True), (301, False)],
    ids=["stale-300", "stale-301", "future-300", "future-301"],
)
def test_replay_window_is_300_seconds_either_way(
    endpoint: RecordingEndpoint, fake: FakeSlack, shift: int, valid: bool
) -> None:
    clock = ManualClock(1_700_000_000)
    with WsgiHost(endpoint) as host, SlackDriver(f"{host.url}/", seed.SIGNING_SECRET, fake, clock=clock) as driver:
        if shift < 0:
            driver.stale(-shift)
        else:
            driver.future(shift)

    request = endpoint.received[0]
    verifier = SignatureVerifier(seed.SIGNING_SECRET, clock=FixedClock(clock.now()))
    assert int(request.headers["x-slack-request-timestamp"]) == clock.now() + shift
    assert verifier.is_valid_request(request.body, request.headers) is valid


# ---------------------------------------------------------------------------------------------- retries


def test_failed_event_is_retried_with_slack_retry_headers(
    recording_driver: SlackDriver, endpoint: RecordingEndpoint
) -> None:
    endpoint.script = [(500, {}), (503, {}), (200, {})]

    delivery = recording_driver.deliver_with_retries({"type": "app_mention", "text": "hi"}, retry_delays=(0, 0, 0))

    assert delivery.delivered
    assert [a.status for a in delivery.attempts] == [500, 503, 200]
    retry_headers = [
        (r.headers.get("x-slack-retry-num"), r.headers.get("x-slack-retry-reason")) for r in endpoint.received
    ]
    assert retry_headers == [(None, None), ("1", "http_error"), ("2", "http_error")]
    event_ids = {json.loads(r.body)["event_id"] for r in endpoint.received}
    assert event_ids == {delivery.event_id}


def test_no_retry_header_stops_redelivery(recording_driver: SlackDriver, endpoint: RecordingEndpoint) -> None:
    endpoint.script = [(500, {"X-Slack-No-Retry": "1"})]

    delivery = recording_driver.deliver_with_retries({"type": "app_mention"}, retry_delays=(0, 0, 0))

    assert not delivery.delivered
    assert delivery.retries == 0


def test_slow_ack_is_retried_as_http_timeout(recording_driver: SlackDriver, endpoint: RecordingEndpoint) -> None:
    endpoint.hold_first = threading.Event()
    try:
        delivery = recording_driver.deliver_with_retries({"type": "app_mention"}, deadline=0.2, retry_delays=(0, 0, 0))
    finally:
        endpoint.hold_first.set()

    assert delivery.delivered
    assert delivery.attempts[0].transport_error == "timeout"
    assert endpoint.received[1].headers["x-slack-retry-reason"] == "http_timeout"


def test_late_slash_ack_shows_the_user_operation_timeout(endpoint: RecordingEndpoint, fake: FakeSlack) -> None:
    endpoint.hold_first = threading.Event()
    release = threading.Timer(0.2, endpoint.hold_first.set)
    host = WsgiHost(endpoint)
    with host, SlackDriver(f"{host.url}/", seed.SIGNING_SECRET, fake, ack_deadline=0.1) as driver:
        release.start()
        ack = driver.slash_command("workshop 1", seed.ALICE, seed.OPS)

    assert ack.status == 200
    with pytest.raises(AssertionError, match="acked after"):
        ack.assert_acked(within=0.1)
    assert fake.ephemerals(seed.OPS, seed.ALICE)[0].text == '/rollback failed with the error "operation_timeout"'


# ---------------------------------------------------------------------------------------------- response_url


def test_response_url_allows_five_uses_then_404(fake: FakeSlack) -> None:
    webhook = WebhookClient(fake.issue_response_url("commands", seed.OPS, seed.ALICE))

    statuses = [webhook.send(text=f"update {n}").status_code for n in range(6)]

    assert statuses == [200, 200, 200, 200, 200, 404]
    assert fake.responses()[-1].reason == "used_url"
    assert [e.text for e in fake.ephemerals(seed.OPS, seed.ALICE)] == [f"update {n}" for n in range(5)]


def test_response_url_expires_after_thirty_minutes() -> None:
    clock = ManualClock()
    with FakeSlack(clock=clock) as fake:
        webhook = WebhookClient(fake.issue_response_url("commands", seed.OPS, seed.ALICE))
        clock.advance(30 * 60 + 1)

        response = webhook.send(text="too late")

    assert (response.status_code, response.body) == (404, "expired_url")


def test_in_channel_response_creates_a_real_message(fake: FakeSlack) -> None:
    webhook = WebhookClient(fake.issue_response_url("commands", seed.OPS, seed.ALICE))

    webhook.send(text="Rollback started", response_type="in_channel")

    assert [(m.text, m.user) for m in fake.messages(seed.OPS)] == [("Rollback started", seed.BOT_USER_ID)]


def test_action_response_url_replaces_or_deletes_the_original(fake: FakeSlack) -> None:
    client = WebClient(token=seed.BOT_TOKEN, base_url=fake.api_url)
    ts = client.chat_postMessage(channel=seed.OPS, text="Approve?")["ts"]
    webhook = WebhookClient(fake.issue_response_url("actions", seed.OPS, seed.BOB, original_ts=ts))

    webhook.send(text="Approved by bob", replace_original=True)
    edited = fake.message(seed.OPS, ts)
    webhook.send(delete_original=True)

    assert edited.text == "Approved by bob"
    assert fake.messages(seed.OPS) == []
    assert [r.effect for r in fake.responses("actions")] == ["replace_original", "delete_original"]


# ---------------------------------------------------------------------------------------------- against Bolt


@dataclass
class BoltHarness:
    driver: SlackDriver
    fake: FakeSlack
    seen: list[dict[str, Any]]


@pytest.fixture
def bolt(fake: FakeSlack) -> Iterator[BoltHarness]:
    """A minimal Bolt app, served over HTTP by its WSGI adapter, whose Web API is the fake."""
    app = App(client=WebClient(token=seed.BOT_TOKEN, base_url=fake.api_url), signing_secret=seed.SIGNING_SECRET)
    seen: list[dict[str, Any]] = []

    @app.command("/rollback")
    def rollback(ack: BoltAck, command: dict[str, Any], client: WebClient) -> None:
        ack(f"Working on {command['text']}")
        posted = client.chat_postMessage(channel=command["channel_id"], text=f"Rollback of {command['text']}?")
        client.reactions_add(channel=command["channel_id"], name="eyes", timestamp=posted["ts"])

    @app.event("reaction_added")
    def reacted(event: dict[str, Any], client: WebClient) -> None:
        seen.append(event)
        item = event["item"]
        text = f":{event['reaction']}: by <@{event['user']}>"
        client.chat_postMessage(channel=item["channel"], thread_ts=item["ts"], text=text)

    @app.action("approve")
    def approve(ack: BoltAck, body: dict[str, Any], respond: Respond) -> None:
        ack()
        seen.append(body)
        respond(replace_original=True, text=f"Approved by <@{body['user']['id']}>")

    host = WsgiHost(SlackRequestHandler(app))
    with host, SlackDriver(f"{host.url}/slack/events", seed.SIGNING_SECRET, fake) as driver:
        yield BoltHarness(driver, fake, seen)


def test_slash_command_is_acked_and_the_listener_posts_to_the_fake(bolt: BoltHarness) -> None:
    ack = bolt.driver.slash_command("workshop 1", seed.ALICE, seed.OPS)

    ack.assert_acked(within=1.0)
    assert ack.ephemeral_text == "Working on workshop 1"
    request = bolt.fake.wait_for(lambda: [m for m in bolt.fake.messages(seed.OPS) if m.reactions])[0]
    assert request.text == "Rollback of workshop 1?"
    assert request.reaction_users("eyes") == [seed.BOT_USER_ID]
    assert [e.text for e in bolt.fake.ephemerals(seed.OPS, seed.ALICE)] == ["Working on workshop 1"]


def test_reaction_event_reaches_bolt_and_the_fake_agrees(bolt: BoltHarness) -> None:
    client = WebClient(token=seed.BOT_TOKEN, base_url=bolt.fake.api_url)
    ts = client.chat_postMessage(channel=seed.OPS, text="Rollback of workshop 1?")["ts"]

    bolt.driver.reaction_added(seed.BOB, "white_check_mark", seed.OPS, ts).assert_acked(within=1.0)

    reply = bolt.fake.wait_for(lambda: bolt.fake.messages(seed.OPS, thread_ts=ts))[0]
    assert reply.text == f":white_check_mark: by <@{seed.BOB}>"
    assert bolt.seen[0]["item_user"] == seed.BOT_USER_ID
    reactions = client.reactions_get(channel=seed.OPS, timestamp=ts, full=True)["message"]["reactions"]
    assert reactions == [{"name": "white_check_mark", "users": [seed.BOB], "count": 1}]


def test_reaction_removed_updates_the_fake(bolt: BoltHarness) -> None:
    ts = bolt.fake.post_as_user(seed.OPS, seed.ALICE, "hello")
    bolt.fake.apply_reaction(seed.OPS, ts, "+1", seed.BOB)

    bolt.driver.reaction_removed(seed.BOB, "+1", seed.OPS, ts)

    assert bolt.fake.message(seed.OPS, ts).reactions == {}


def test_block_action_carries_the_button_and_respond_replaces_the_message(bolt: BoltHarness) -> None:
    client = WebClient(token=seed.BOT_TOKEN, base_url=bolt.fake.api_url)
    blocks = [
        {
            "type": "actions",
            "block_id": "decision",
            "elements": [
                {
                    "type": "button",
                    "action_id": "approve",
                    "text": {"type": "plain_text", "text": "Approve"},
                    "style": "primary",
                    "value": "op-42",
                }
            ],
        }
    ]
    ts = client.chat_postMessage(channel=seed.OPS, text="Approve?", blocks=blocks)["ts"]

    bolt.driver.block_action(seed.BOB, seed.OPS, ts, "approve").assert_acked(within=1.0)

    edited = bolt.fake.wait_for(lambda: [m for m in bolt.fake.messages(seed.OPS) if m.is_edited])[0]
    assert edited.text == f"Approved by <@{seed.BOB}>"
    action = bolt.seen[0]["actions"][0]
    assert (action["value"], action["block_id"], action["style"]) == ("op-42", "decision", "primary")
    assert bolt.seen[0]["container"]["message_ts"] == ts


@pytest.mark.parametrize(
    "send",
    [
        SlackDriver.bad_signature,
        SlackDriver.stale,
        SlackDriver.future,
        SlackDriver.missing_headers,
    ],
    ids=["bad-signature", "stale", "future", "missing-headers"],
)
def test_bolt_rejects_unverifiable_requests_with_401(bolt: BoltHarness, send: Callable[[SlackDriver], Any]) -> None:
    ack = send(bolt.driver)

    assert ack.status == 401
    assert bolt.fake.messages(seed.OPS) == []


def test_non_integer_timestamp_is_not_acked(bolt: BoltHarness) -> None:
    # Bolt answers 500 here (int() raises in its verifier); only "not 2xx" is a stable contract.
    assert not bolt.driver.non_integer_timestamp().ok


def test_url_verification_echoes_the_challenge(bolt: BoltHarness) -> None:
    ack = bolt.driver.url_verification("3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P")

    assert ack.json == {"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}


def test_ssl_check_is_answered_without_running_listeners(bolt: BoltHarness) -> None:
    assert bolt.driver.ssl_check().status == 200
    assert bolt.fake.calls("chat.postMessage") == []


def test_bolt_drops_slash_commands_whose_body_contains_payload(bolt: BoltHarness) -> None:
    # Characterises slack.md §2.2 Pitfall C: Bolt parses such form bodies as interactivity → no listener → 404.
    ack = bolt.driver.slash_command("payload-api 1", seed.ALICE, seed.OPS)

    assert ack.status == 404
    assert bolt.fake.ephemerals(seed.OPS, seed.ALICE)[0].text == '/rollback failed with the error "dispatch_failed"'


def test_concurrent_slash_commands_are_all_acked(bolt: BoltHarness) -> None:
    with ThreadPoolExecutor(max_workers=20) as pool:
        acks = list(pool.map(lambda n: bolt.driver.slash_command(f"svc-{n} 1", seed.ALICE, seed.OPS), range(20)))

    for ack in acks:
        ack.assert_acked(within=2.0)
    bolt.fake.wait_for(lambda: len(bolt.fake.messages(seed.OPS)) == 20, timeout=10)


def test_bots_own_activity_is_echoed_back_and_bolt_drops_it(bolt: BoltHarness) -> None:
    stop_forwarding = bolt.driver.forward_bot_activity()
    try:
        bolt.driver.slash_command("workshop 1", seed.ALICE, seed.OPS).assert_acked()
        bolt.fake.wait_for(lambda: len(bolt.driver.forwarded) == 2)  # the request message and its :eyes:
        acks = [future.result(timeout=5) for future in bolt.driver.forwarded]
    finally:
        stop_forwarding()

    assert [json.loads(a.request_body)["event"]["type"] for a in acks] == ["message", "reaction_added"]
    assert all(a.ok for a in acks)
    assert bolt.seen == []  # IgnoringSelfEvents kept the bot's own reaction from the listener
