"""The incident channel every demo plays in: fake Slack with its transcript, a private Redis and a real rollbot.

A demo world (`DemoWorld` for Kubernetes and Helm, `EcsDemo` for ECS) adds the infrastructure the incident is
about and says which catalog and settings the bot gets; this room does the rest the same way for all of them:
builds the bot with `bot.app.build_app` exactly as an operator would, types commands as people do and waits for
what Slack shows.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import yaml

from bot.app import RollbotApp, build_app
from bot.core.catalog import ChannelId
from bot.core.incident_record import INCIDENT_EVENT_TYPE
from bot.core.messages.incidents import INCIDENT_ROLLBACK_ACTION
from bot.core.operations import MessageRef
from bot.settings import Settings
from sandbox.redis_server import RedisServer
from sandbox.slack.driver import SlackDriver
from sandbox.slack.records import Message
from sandbox.slack.seed import BOT_TOKEN, INCIDENT, SIGNING_SECRET
from sandbox.slack.server import FakeSlack
from sandbox.slack.transcript import TranscriptPrinter

FINISHED = ("succeeded", "failed", "rejected", "expired", "cancelled")


class DemoFailed(Exception):
    pass


class IncidentRoom:
    """Subclasses start their world in `open_world()`, stop it in `close_world()` and give `catalog()`."""

    def __init__(self, prefix: str) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix=prefix))
        self.redis = RedisServer()
        self.slack = FakeSlack()
        self.bot: RollbotApp | None = None
        self.driver: SlackDriver | None = None

    # -- what a world provides ---------------------------------------------------------------------------------

    def open_world(self) -> None: ...

    def close_world(self) -> None: ...

    def catalog(self) -> dict[str, Any]:
        raise NotImplementedError

    def settings(self) -> dict[str, Any]:
        """Settings beyond the Slack/Redis/catalog ones (kubeconfig, helm path…)."""
        return {}

    # -- lifecycle -----------------------------------------------------------------------------------------------

    def __enter__(self) -> Self:
        from bot.logging import configure_logging

        # The transcript is the demo's output; the bot's own logs would interleave with it.
        configure_logging("WARNING")
        self.open_world()
        self.redis.start()
        self.slack.start()
        self.slack.subscribe(TranscriptPrinter(self.slack, show_ephemerals=True))
        catalog_path = self.workdir / "catalog.yaml"
        catalog_path.write_text(yaml.safe_dump(self.catalog()), encoding="utf-8")
        fields: dict[str, Any] = {
            "slack_bot_token": BOT_TOKEN,
            "slack_signing_secret": SIGNING_SECRET,
            "slack_api_url": self.slack.api_url,
            "redis_url": self.redis.url(0),
            "config_path": catalog_path,
            "host": "127.0.0.1",
            "port": 0,
            "rollout_timeout": timedelta(minutes=2),
        }
        self.bot = build_app(Settings(**(fields | self.settings()))).start()
        self.driver = SlackDriver(self.bot.events_url, SIGNING_SECRET, self.slack)
        self.say(f"rollbot is listening on {self.bot.events_url}; fake Slack at {self.slack.api_url}")
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.driver is not None:
            self.driver.close()
        if self.bot is not None:
            self.bot.stop()
        self.slack.stop()
        self.redis.stop()
        self.close_world()
        shutil.rmtree(self.workdir, ignore_errors=True)

    # -- the terminal ----------------------------------------------------------------------------------------------

    @staticmethod
    def say(text: str) -> None:
        print(f"\n── {text}", flush=True)

    # -- Slack -----------------------------------------------------------------------------------------------------

    def type_command(self, user: str, text: str) -> None:
        """Type a command and wait for the bot's answer (after its "Working on…"), so the transcript reads in order."""
        assert self.driver is not None
        before = len(self.slack.ephemerals(user=user))
        print(f"\n@{self.slack.user_name(user)} types: /rollback {text}", flush=True)
        ack = self.driver.slash_command(text, user=user, channel=INCIDENT)
        if ack.status != 200:
            raise DemoFailed(f"the bot answered {ack.status} to /rollback {text}")
        self.wait_for("the answer", lambda: len(self.slack.ephemerals(user=user)) >= before + 2, timeout=30)

    def react(self, user: str, message: Message, reaction: str = "white_check_mark") -> None:
        assert self.driver is not None
        self.driver.reaction_added(user, reaction, INCIDENT, message.ts)

    def wait_for(self, what: str, condition: Callable[[], Any], timeout: float = 60) -> Any:
        """Re-check on every change in the fake workspace (and at least once a second)."""
        changed = threading.Event()
        unsubscribe = self.slack.subscribe(lambda _change: changed.set())
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                value = condition()
                if value:
                    return value
                changed.wait(timeout=min(1.0, max(0.0, deadline - time.monotonic())))
                changed.clear()
        finally:
            unsubscribe()
        raise DemoFailed(f"timed out waiting for {what}")

    def request_message(self, target: str) -> Message:
        """The request message for `target`, once the bot has linked it to its operation (votes count from then)."""

        def find() -> Message | None:
            for message in self.slack.messages(INCIDENT):
                payload = (message.metadata or {}).get("event_payload") or {}
                if payload.get("target") == target and payload.get("phase") == "awaiting_approval":
                    return message
            return None

        message: Message = self.wait_for(f"the request message for {target}", find, timeout=30)
        bot = self.bot
        assert bot is not None
        ref = MessageRef(channel=ChannelId(message.channel), ts=message.ts)
        self.wait_for("the request to be linked", lambda: bot.store.find_by_message(ref))
        return message

    def incident_card(self, name: str, timeout: float = 60) -> Message:
        """The incident card rollbot posted by itself for workload `name`."""

        def find() -> Message | None:
            for message in self.slack.messages(INCIDENT):
                metadata = message.metadata or {}
                if metadata.get("event_type") == INCIDENT_EVENT_TYPE and metadata["event_payload"].get("name") == name:
                    return message
            return None

        card: Message = self.wait_for(f"rollbot's incident card for {name}", find, timeout=timeout)
        return card

    def click_rollback(self, user: str, card: Message) -> None:
        """`user` clicks the card's "Roll back to revision N" button."""
        assert self.driver is not None
        print(f"\n@{self.slack.user_name(user)} clicks: Roll back", flush=True)
        self.driver.block_action(user, INCIDENT, card.ts, INCIDENT_ROLLBACK_ACTION)

    def incident_resolution(self, card: Message, timeout: float = 60) -> str:
        """How the card's incident ended, once the card says it did (it is edited at most every 10 s)."""

        def resolution() -> str | None:
            current = self.slack.message_or_none(INCIDENT, card.ts)
            payload = ((current.metadata if current else None) or {}).get("event_payload") or {}
            return payload.get("resolution") if payload.get("state") == "resolved" else None

        result: str = self.wait_for("the card to say how the incident ended", resolution, timeout=timeout)
        return result

    def final_phase(self, message: Message, timeout: float = 120) -> str:
        def phase() -> str | None:
            current = next((m for m in self.slack.messages(INCIDENT) if m.ts == message.ts), None)
            value = ((current.metadata if current else None) or {}).get("event_payload", {}).get("phase")
            return value if value in FINISHED else None

        result: str = self.wait_for("the operation to finish", phase, timeout=timeout)
        return result
