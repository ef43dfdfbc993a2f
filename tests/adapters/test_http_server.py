"""The HTTP surface over real sockets: signed Slack requests through waitress into Bolt, health, readiness, metrics."""

from __future__ import annotations

import json
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from slack_bolt import Ack, App
from slack_bolt.request.internals import parse_body
from slack_sdk import WebClient

from bot.adapters.http_server import Server, protect_payload_substring, request_kind, serve
from bot.adapters.prometheus_metrics import PrometheusMetrics
from bot.adapters.socket_mode import ConnectionReadiness, SocketModeRunner
from sandbox.slack import FakeSlack, SlackDriver, seed
from tests.fakes.clock import ManualClock

PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")
FORM = "application/x-www-form-urlencoded"
SLACK_ACK_DEADLINE = 3.0


class Readiness:
    """A readiness answer the test can flip (stands in for "Redis reachable")."""

    def __init__(self) -> None:
        self.answer: bool | tuple[bool, str] = True
        self.error: Exception | None = None

    def __call__(self) -> bool | tuple[bool, str]:
        if self.error is not None:
            raise self.error
        return self.answer


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeSlack]:
    with FakeSlack() as server:
        yield server


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def bolt_app(fake: FakeSlack) -> App:
    app = App(client=WebClient(token=seed.BOT_TOKEN, base_url=fake.api_url), signing_secret=seed.SIGNING_SECRET)

    @app.command("/rollback")
    def on_rollback(ack: Ack, command: dict[str, Any]) -> None:
        ack(f"got {command['text']}")

    @app.action("rollback_approve")
    def on_approve(ack: Ack, body: dict[str, Any]) -> None:
        ack()

    @app.event("reaction_added")
    def on_reaction(event: dict[str, Any]) -> None:
        pass

    return app


@pytest.fixture(scope="module")
def readiness() -> Readiness:
    return Readiness()


@pytest.fixture(scope="module")
def metrics() -> PrometheusMetrics:
    return PrometheusMetrics(CollectorRegistry())


@pytest.fixture(scope="module")
def server(bolt_app: App, readiness: Readiness, metrics: PrometheusMetrics) -> Iterator[Server]:
    with serve(
        bolt_app,
        host="127.0.0.1",
        port=0,
        readiness=readiness,
        metrics_registry=metrics.registry,
        observer=metrics,
    ) as running:
        yield running


@pytest.fixture(autouse=True)
def ready_by_default(readiness: Readiness) -> None:
    readiness.answer, readiness.error = True, None


@pytest.fixture
def driver(server: Server, fake: FakeSlack) -> Iterator[SlackDriver]:
    with SlackDriver(server.url + "/slack/events", seed.SIGNING_SECRET, fake) as slack:
        yield slack


def get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (a loopback test URL)
            return response.status, response.headers.get("Content-Type", ""), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type", ""), error.read().decode()


# ------------------------------------------------------------------ health, readiness, metrics


def test_healthz_answers_without_asking_anything(server: Server, readiness: Readiness) -> None:
    readiness.error = RuntimeError("redis down")

    status, _, body = get(server.url + "/healthz")

    assert status == 200
    assert json.loads(body) == {"status": "ok"}


def test_readyz_is_200_when_ready(server: Server) -> None:
    assert get(server.url + "/readyz")[0] == 200


def test_readyz_is_503_with_the_reason(server: Server, readiness: Readiness) -> None:
    readiness.answer = (False, "redis unreachable")

    status, content_type, body = get(server.url + "/readyz")

    assert status == 503
    assert content_type.startswith("application/json")
    assert json.loads(body) == {"status": "not ready", "reason": "redis unreachable"}


def test_a_readiness_check_that_raises_means_not_ready(server: Server, readiness: Readiness) -> None:
    readiness.error = ConnectionError("connection refused")

    status, _, body = get(server.url + "/readyz")

    assert status == 503
    assert "ConnectionError" in json.loads(body)["reason"]


def test_metrics_are_served_in_prometheus_text_format(server: Server, metrics: PrometheusMetrics) -> None:
    metrics.command_received("rollback")
    metrics.phase_entered("helm", "succeeded")
    metrics.rollout_finished("helm", "succeeded", 42.0)

    status, content_type, body = get(server.url + "/metrics")

    assert status == 200
    assert content_type.startswith("text/plain")
    assert 'rollbot_commands_total{verb="rollback"}' in body
    assert 'rollbot_operations_total{backend="helm",phase="succeeded"}' in body
    assert 'rollbot_rollout_duration_seconds_bucket{backend="helm",le="60.0",phase="succeeded"} 1.0' in body


def test_unknown_paths_are_404_and_wrong_methods_405(server: Server) -> None:
    assert get(server.url + "/nope")[0] == 404
    assert get(server.url + "/slack/events")[0] == 405


# ------------------------------------------------------------------ Slack's requests


def test_a_signed_slash_command_reaches_bolt(driver: SlackDriver) -> None:
    ack = driver.slash_command("workshop 1", user=seed.ALICE, channel=seed.OPS).assert_acked()

    assert ack.text == "got workshop 1"


@pytest.mark.parametrize(
    "text",
    ["payload-api 1", "payload", "workshop 1 --reason 'payload=broken'"],
    ids=["target named payload-api", "just payload", "payload= inside the text"],
)
def test_a_command_mentioning_payload_gets_a_normal_answer(driver: SlackDriver, text: str) -> None:
    # Bolt Pitfall C (slack.md §2.2): without the rewrite these are answered 404 "unhandled request".
    ack = driver.slash_command(text, user=seed.ALICE, channel=seed.OPS).assert_acked()

    assert ack.text == f"got {text}"


def test_a_channel_named_payload_still_works(driver: SlackDriver) -> None:
    body = urlencode(
        {
            "command": "/rollback",
            "text": "status workshop",
            "team_id": seed.TEAM_ID,
            "channel_id": seed.OPS,
            "channel_name": "payload-team",
            "user_id": seed.ALICE,
            "user_name": "alice",
            "response_url": "http://127.0.0.1:9/hooks/commands/1",
            "trigger_id": "1.2.3",
        }
    ).encode()

    ack = driver.send(body, FORM, kind="slash_command")

    assert ack.status == 200
    assert ack.text == "got status workshop"


def test_a_button_click_payload_is_still_parsed_as_interactivity(driver: SlackDriver) -> None:
    payload = {
        "type": "block_actions",
        "user": {"id": seed.BOB, "username": "bob", "team_id": seed.TEAM_ID},
        "api_app_id": seed.API_APP_ID,
        "team": {"id": seed.TEAM_ID, "domain": seed.TEAM_DOMAIN},
        "container": {"type": "message", "message_ts": "1.2", "channel_id": seed.OPS, "is_ephemeral": False},
        "channel": {"id": seed.OPS, "name": "ops"},
        "trigger_id": "1.2.3",
        "response_url": "http://127.0.0.1:9/hooks/actions/1",
        "actions": [{"action_id": "rollback_approve", "block_id": "decision", "type": "button", "value": "op-1"}],
    }

    ack = driver.send(urlencode({"payload": json.dumps(payload)}).encode(), FORM, kind="block_actions")

    assert ack.status == 200


def test_an_event_callback_is_acked(driver: SlackDriver) -> None:
    inner = {
        "type": "reaction_added",
        "user": seed.BOB,
        "reaction": "white_check_mark",
        "item": {"type": "message", "channel": seed.OPS, "ts": "1700000000.000100"},
        "event_ts": "1700000001.000200",
    }

    ack = driver.event(inner)

    assert ack.status == 200


def test_url_verification_echoes_the_challenge(driver: SlackDriver) -> None:
    assert driver.url_verification("c-123").json == {"challenge": "c-123"}


@pytest.mark.parametrize(
    "forge",
    [
        lambda d: d.bad_signature(),
        lambda d: d.stale(301),
        lambda d: d.future(301),
        lambda d: d.missing_headers(),
        lambda d: d.non_integer_timestamp(),
    ],
    ids=["wrong secret", "stale by 301 s", "future by 301 s", "no signature headers", "non-integer timestamp"],
)
def test_unsigned_or_badly_signed_requests_are_401(driver: SlackDriver, forge: Any) -> None:
    ack = forge(driver)

    assert ack.status == 401
    assert ack.json == {"error": "invalid request"}


def test_fifty_concurrent_slash_commands_are_all_acked_well_within_three_seconds(
    server: Server, fake: FakeSlack
) -> None:
    start = threading.Barrier(50)

    def one(number: int) -> tuple[int, float, str]:
        with SlackDriver(server.url + "/slack/events", seed.SIGNING_SECRET, fake, reflect_acks=False) as slack:
            start.wait()
            ack = slack.slash_command(f"workshop {number}", user=seed.ALICE, channel=seed.OPS)
            return ack.status, ack.latency, ack.text

    with ThreadPoolExecutor(max_workers=50) as pool:
        results = list(pool.map(one, range(50)))

    assert [status for status, _, _ in results] == [200] * 50
    assert sorted(text for _, _, text in results) == sorted(f"got workshop {n}" for n in range(50))
    assert max(latency for _, latency, _ in results) < SLACK_ACK_DEADLINE / 2


def test_ack_latency_is_recorded_per_request_kind(driver: SlackDriver, metrics: PrometheusMetrics) -> None:
    before = metrics.registry.get_sample_value(
        "rollbot_slack_request_duration_seconds_count", {"kind": "command", "status": "200"}
    )

    driver.slash_command("workshop 1", user=seed.ALICE, channel=seed.OPS).assert_acked()
    driver.bad_signature()

    after = metrics.registry.get_sample_value(
        "rollbot_slack_request_duration_seconds_count", {"kind": "command", "status": "200"}
    )
    assert (after or 0) - (before or 0) == 1
    assert metrics.registry.get_sample_value(
        "rollbot_slack_request_duration_seconds_count", {"kind": "other", "status": "401"}
    )


def test_a_body_larger_than_slack_ever_sends_is_refused(server: Server) -> None:
    # Announce the body and wait for the answer before sending it: the server refuses on the headers alone,
    # and a client still writing a megabyte would only see the closed connection (a broken pipe).
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as connection:
        connection.sendall(
            b"POST /slack/events HTTP/1.1\r\nHost: rollbot\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n" + f"Content-Length: {(1 << 20) + 1}\r\n\r\n".encode()
        )
        status_line = connection.recv(4096).split(b"\r\n", 1)[0]

    assert status_line.split()[1] == b"413"


# ------------------------------------------------------------------ the server itself


def test_port_zero_picks_a_free_port_and_stop_closes_it(bolt_app: App) -> None:
    server = serve(bolt_app, host="127.0.0.1", port=0).start()
    url = server.url
    assert get(url + "/healthz")[0] == 200

    server.stop()

    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url + "/healthz", timeout=2)  # noqa: S310


def test_an_empty_signing_secret_fails_at_startup(fake: FakeSlack) -> None:
    app = App(
        client=WebClient(token=seed.BOT_TOKEN, base_url=fake.api_url),
        signing_secret="unused",
        token_verification_enabled=False,
    )

    with pytest.raises(ValueError, match="SLACK_SIGNING_SECRET"):
        serve(app, port=0, signing_secret="")


def test_health_only_server_has_no_slack_endpoint() -> None:
    with serve(None, host="127.0.0.1", port=0) as server:
        assert get(server.url + "/healthz")[0] == 200
        assert get(server.url + "/slack/events")[0] == 404


# ------------------------------------------------------------------ the pure helpers


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        ("command=%2Frollback&text=payload-api+1", FORM, "command=%2Frollback&text=%70ayload-api+1"),
        ("command=%2Frollback&text=workshop+1", FORM, "command=%2Frollback&text=workshop+1"),
        ("payload=%7B%22type%22%3A%22block_actions%22%7D", FORM, "payload=%7B%22type%22%3A%22block_actions%22%7D"),
        ('{"event": {"text": "payload"}}', "application/json", '{"event": {"text": "payload"}}'),
    ],
    ids=["payload in a value", "no payload", "a real payload field", "JSON"],
)
def test_protect_payload_substring(body: str, content_type: str, expected: str) -> None:
    assert protect_payload_substring(body, content_type) == expected


@pytest.mark.parametrize(
    ("body", "content_type", "kind"),
    [
        ("command=%2Frollback&text=x", FORM, "command"),
        ("payload=%7B%7D", FORM, "interactive"),
        ('{"type": "event_callback"}', "application/json", "event"),
        ("ssl_check=1", FORM, "other"),
    ],
    ids=["command", "interactive", "event", "other"],
)
def test_request_kind(body: str, content_type: str, kind: str) -> None:
    assert request_kind(body, content_type) == kind


# ------------------------------------------------------------------ Socket Mode: the same probes, no inbound Slack


@pytest.fixture
def socket_fake() -> Iterator[FakeSlack]:
    with FakeSlack() as server:
        yield server


def socket_app(fake: FakeSlack) -> App:
    app = App(client=WebClient(token=seed.BOT_TOKEN, base_url=fake.api_url))

    @app.command("/rollback")
    def on_rollback(ack: Ack, command: dict[str, Any]) -> None:
        ack(f"via socket: {command['text']}")

    return app


def test_socket_mode_connects_acks_commands_and_reports_ready(socket_fake: FakeSlack) -> None:
    metrics = PrometheusMetrics(CollectorRegistry())
    runner = SocketModeRunner(
        socket_app(socket_fake),
        seed.APP_TOKEN,
        host="127.0.0.1",
        port=0,
        metrics_registry=metrics.registry,
        observer=metrics,
    )

    runner.start()
    try:
        socket_fake.wait_for_socket()
        ack = SlackDriver(None, "", socket_fake, transport="socket").slash_command("workshop 1", seed.ALICE, seed.OPS)

        ack.assert_acked(within=1.0)
        assert ack.ephemeral_text == "via socket: workshop 1"
        assert socket_fake.last("apps.connections.open").ok
        assert get(runner.url + "/readyz")[0] == 200
        assert get(runner.url + "/healthz")[0] == 200
        assert "rollbot_socket_mode_connected 1.0" in get(runner.url + "/metrics")[2]
        assert get(runner.url + "/slack/events")[0] == 404
    finally:
        socket_fake.close_sockets()
        runner.stop()


def test_socket_mode_is_not_ready_until_connected_and_shows_why(socket_fake: FakeSlack) -> None:
    runner = SocketModeRunner(socket_app(socket_fake), seed.APP_TOKEN, host="127.0.0.1", port=0)
    runner.server.start()
    try:
        status, _, body = get(runner.url + "/readyz")
    finally:
        runner.server.stop()

    assert status == 503
    assert json.loads(body)["reason"] == "socket mode not connected to Slack"


def test_a_short_reconnect_does_not_flap_readiness() -> None:
    clock = ManualClock()
    connected = [True]
    readiness = ConnectionReadiness(lambda: connected[0], grace=timedelta(seconds=30), clock=clock)

    assert readiness() is True
    connected[0] = False
    clock.advance(timedelta(seconds=29))
    assert readiness() is True
    clock.advance(timedelta(seconds=2))
    assert readiness() == (False, "socket mode not connected to Slack")


def test_readiness_also_needs_the_bots_own_check() -> None:
    readiness = ConnectionReadiness(lambda: True, lambda: (False, "redis unreachable"))

    assert readiness() == (False, "redis unreachable")


def test_socket_mode_needs_an_app_level_token(socket_fake: FakeSlack) -> None:
    with pytest.raises(ValueError, match="xapp-"):
        SocketModeRunner(socket_app(socket_fake), seed.BOT_TOKEN, port=0)


form_fields = st.dictionaries(
    keys=st.sampled_from(["command", "text", "channel_name", "user_name", "team_domain", "response_url"]),
    values=st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40).map(
        lambda text: text.replace("\x00", "")
    )
    | st.sampled_from(["payload", "payload-api 1", "my payload=x", "payloads&payload", "PAYLOAD payload"]),
    min_size=1,
)


@given(fields=form_fields)
def test_bolt_parses_a_protected_form_to_exactly_the_fields_sent(fields: dict[str, str]) -> None:
    body = urlencode(fields)

    protected = protect_payload_substring(body, FORM)

    assert parse_body(protected, FORM) == dict(parse_qsl(body, keep_blank_values=True))
