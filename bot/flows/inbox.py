"""Acknowledged gestures that survive their replica: parked in the inbox before the ack, unparked once handled.

Slack considers a slash command, a reaction or a button delivered as soon as the bot acknowledges it, and does
not send it again. So a replica that stops (a rolling deploy) or dies between the ack and the gesture's effect
must not lose it: the gesture is parked in Redis first, and another replica adopts what a gone replica left.
Handling a gesture twice is harmless (a vote counts once per person; a second identical request is answered
"locked by" the first), so adoption errs on the side of replaying.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from bot.core.catalog import ChannelId, SlackUserId
from bot.core.errors import BotError
from bot.core.operations import MessageRef, OperationId
from bot.ports import Inbox, ParkedWork

log = logging.getLogger("rollbot.flows")


class Gesture(BaseModel):
    """What a person did in Slack (or a report the bot owes them), as much as the flow needs to handle it again
    elsewhere."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["command", "reaction", "button", "report"]
    user: SlackUserId = SlackUserId("")
    channel: ChannelId | None = None
    text: str = ""
    ref: MessageRef | None = None
    emoji: str = ""
    added: bool = True
    event_id: str | None = None
    author: SlackUserId | None = None
    action_id: str = ""
    # A command's operation id, chosen at the ack: handling the command again continues that operation.
    # For a report Slack refused: the operation it is about, its owed thread lines, and whether to re-render.
    operation_id: OperationId | None = None
    lines: tuple[str, ...] = ()
    refresh: bool = False
    # A button's value (the incident id of an incident card's button).
    value: str = ""


class GestureParking:
    """The flow's use of the `Inbox` port; without an inbox (unit tests) parking is a no-op."""

    def __init__(self, inbox: Inbox | None, replica_id: str) -> None:
        self._inbox = inbox
        self._replica = replica_id
        self._mutex = threading.Lock()
        self._retries: list[tuple[str | None, Gesture]] = []

    def retry_later(self, key: str | None, gesture: Gesture) -> None:
        """A gesture that hit a temporary failure: kept (and still parked) until the next sweep."""
        with self._mutex:
            self._retries.append((key, gesture))

    def take_retries(self) -> list[tuple[str | None, Gesture]]:
        with self._mutex:
            retries, self._retries = self._retries, []
        return retries

    def park(self, key: str, gesture: Gesture) -> str | None:
        if self._inbox is None:
            return None
        try:
            self._inbox.park(key, gesture.model_dump_json(), self._replica)
        except BotError:  # Redis unreachable at ack time: handle it anyway, just without the safety net
            log.warning("could not park a gesture; handling it unparked", extra={"key": key})
            return None
        return key

    def unpark(self, key: str | None) -> None:
        if self._inbox is None or key is None:
            return
        try:
            self._inbox.unpark(key)
        except BotError:
            log.warning("could not unpark a handled gesture; it may be replayed once", extra={"key": key})

    def heartbeat(self, ttl_seconds: float) -> None:
        if self._inbox is not None:
            self._inbox.heartbeat(self._replica, timedelta(seconds=ttl_seconds))

    def goodbye(self) -> None:
        if self._inbox is not None:
            self._inbox.goodbye(self._replica)

    def adopt(self) -> list[tuple[str | None, Gesture]]:
        if self._inbox is None:
            return []
        adopted: list[tuple[str | None, Gesture]] = []
        for work in self._inbox.adopt(self._replica):
            gesture = _parse(work)
            if gesture is None:
                self._inbox.unpark(work.key)
            else:
                adopted.append((work.key, gesture))
        return adopted


def _parse(work: ParkedWork) -> Gesture | None:
    try:
        return Gesture.model_validate_json(work.payload)
    except ValidationError:
        log.error("dropping a parked gesture this version cannot read", extra={"key": work.key})
        return None
