"""Events API listeners: reactions are votes; every other subscribed event is acknowledged and ignored.

Slack's `app_rate_limited` notice (it dropped events for this app: more than 30,000 in an hour) is not an
`event_callback`, so no event listener sees it; a middleware answers it 200 and logs it, where Bolt would answer
404 "unhandled request".
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from slack_bolt import App, BoltResponse

from bot.core.catalog import ChannelId, SlackUserId
from bot.core.operations import MessageRef
from bot.flows import RollbackFlow

log = logging.getLogger("rollbot.handlers")


def register_events(app: App, flow: RollbackFlow) -> None:
    @app.event("reaction_added")
    def on_reaction_added(body: dict[str, Any], event: dict[str, Any]) -> None:
        _vote(flow, body, event, added=True)

    @app.event("reaction_removed")
    def on_reaction_removed(body: dict[str, Any], event: dict[str, Any]) -> None:
        _vote(flow, body, event, added=False)

    # Anything else Slack sends (message, app_mention, member_joined_channel…) gets a 200, never Bolt's 404,
    # which Slack would count as a failed delivery and retry.
    @app.event(re.compile(".*"))
    def on_other_event() -> None:
        return None

    @app.middleware
    def on_rate_limited(body: dict[str, Any], next: Callable[[], BoltResponse]) -> BoltResponse:
        if body.get("type") != "app_rate_limited":
            return next()
        log.warning(
            "Slack dropped events for this app (rate limited)", extra={"minute": body.get("minute_rate_limited")}
        )
        return BoltResponse(status=200, body="")


def _vote(flow: RollbackFlow, body: dict[str, Any], event: dict[str, Any], *, added: bool) -> None:
    try:
        item = event.get("item") or {}
        # Slack always names who reacted; a vote from nobody cannot be counted (and users.info refuses "").
        if item.get("type") != "message" or not item.get("channel") or not item.get("ts") or not event.get("user"):
            return
        flow.accept_reaction(
            MessageRef(channel=ChannelId(str(item["channel"])), ts=str(item["ts"])),
            SlackUserId(str(event.get("user", ""))),
            str(event.get("reaction", "")),
            added=added,
            event_id=str(body["event_id"]) if body.get("event_id") else None,
            author=SlackUserId(str(event["item_user"])) if event.get("item_user") else None,
        )
    except Exception:  # events are acked already; a failure here must not become a Bolt error response
        log.exception("handling a reaction failed")
