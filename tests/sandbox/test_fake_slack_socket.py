"""Socket Mode over the fake's /link WebSocket, with Bolt's real SocketModeHandler as the client."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from slack_bolt import Ack as BoltAck
from slack_bolt import App
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_sdk import WebClient

from sandbox.slack import FakeSlack, SlackDriver, seed

PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")


@dataclass
class SocketHarness:
    fake: FakeSlack
    driver: SlackDriver
    events: list[dict[str, Any]]
    retry_headers: list[Any]


@pytest.fixture(scope="module")
def socket_app() -> Iterator[SocketHarness]:
    """One Bolt app on one connection for the module: slack_sdk's client needs ~1 s to shut down."""
    with pytest.MonkeyPatch.context() as env:
        # slack_sdk honours proxy variables but not NO_PROXY; loopback calls must not leave the machine.
        for name in PROXY_VARIABLES:
            env.delenv(name, raising=False)
        with FakeSlack() as fake:
            app = App(client=WebClient(token=seed.BOT_TOKEN, base_url=fake.api_url))
            events: list[dict[str, Any]] = []
            retry_headers: list[Any] = []

            @app.command("/rollback")
            def rollback(ack: BoltAck, command: dict[str, Any]) -> None:
                ack(f"via socket: {command['text']}")

            @app.event("reaction_added")
            def reacted(event: dict[str, Any], request: Any, client: WebClient) -> None:
                events.append(event)
                retry_headers.append(request.headers.get("x-slack-retry-num"))
                # Answering through the fake is also what wakes fake.wait_for in the test.
                item = event["item"]
                client.chat_postMessage(channel=item["channel"], thread_ts=item["ts"], text="seen")

            handler = SocketModeHandler(app, seed.APP_TOKEN)
            handler.connect()
            try:
                fake.wait_for_socket()
                yield SocketHarness(fake, SlackDriver(None, "", fake, transport="socket"), events, retry_headers)
            finally:
                handler.close()


@pytest.fixture
def socket_bot(socket_app: SocketHarness) -> SocketHarness:
    socket_app.events.clear()
    socket_app.retry_headers.clear()
    return socket_app


def test_apps_connections_open_then_hello_then_slash_command_ack_payload(socket_bot: SocketHarness) -> None:
    ack = socket_bot.driver.slash_command("workshop 1", seed.ALICE, seed.OPS)

    ack.assert_acked(within=1.0)
    assert ack.ephemeral_text == "via socket: workshop 1"
    assert socket_bot.fake.last("apps.connections.open").ok


def test_events_arrive_with_retry_attempt_mapped_to_headers(socket_bot: SocketHarness) -> None:
    ts = socket_bot.fake.post_as_user(seed.OPS, seed.ALICE, "Rollback?")

    socket_bot.driver.reaction_added(seed.BOB, "+1", seed.OPS, ts, retry_num=1, retry_reason="timeout")

    socket_bot.fake.wait_for(lambda: socket_bot.fake.messages(seed.OPS, thread_ts=ts))
    assert socket_bot.events[0]["reaction"] == "+1"
    assert socket_bot.retry_headers == [["1"]]


def test_disconnect_makes_the_client_reconnect(socket_bot: SocketHarness) -> None:
    fake = socket_bot.fake
    first = fake.socket_links[0]

    opened_before = len(fake.calls("apps.connections.open"))

    fake.disconnect_sockets("refresh_requested")
    fake.wait_for(lambda: first not in fake.socket_links and fake.socket_links, timeout=10)

    socket_bot.driver.slash_command("again", seed.ALICE, seed.OPS).assert_acked(within=1.0)
    assert len(fake.calls("apps.connections.open")) == opened_before + 1
