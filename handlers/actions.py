"""The request message's buttons: Approve and Reject, the same votes as ✅ and ❌.

Any other action id (a button of a message an older version of the bot posted, another app's element) is acked and
ignored: Bolt would answer 404 "unhandled request", which Slack shows the clicking user as an error.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from slack_bolt import Ack, App

from bot.core.catalog import ChannelId, SlackUserId
from bot.core.messages import APPROVE_ACTION, REJECT_ACTION
from bot.core.operations import MessageRef
from bot.flows import RollbackFlow

log = logging.getLogger("rollbot.handlers")


def register_actions(app: App, flow: RollbackFlow) -> None:
    @app.action(APPROVE_ACTION)
    def on_approve(ack: Ack, body: dict[str, Any]) -> None:
        ack()
        _press(flow, body, APPROVE_ACTION)

    @app.action(REJECT_ACTION)
    def on_reject(ack: Ack, body: dict[str, Any]) -> None:
        ack()
        _press(flow, body, REJECT_ACTION)

    @app.action(re.compile(".*"))
    def on_other_action(ack: Ack) -> None:
        ack()


def _press(flow: RollbackFlow, body: dict[str, Any], action_id: str) -> None:
    try:
        container = _object(body, "container")
        channel = container.get("channel_id") or _object(body, "channel").get("id")
        ts = container.get("message_ts") or _object(body, "message").get("ts")
        user = _object(body, "user").get("id")
        if not channel or not ts or not user or container.get("is_ephemeral"):
            return
        flow.accept_button(MessageRef(channel=ChannelId(str(channel)), ts=str(ts)), SlackUserId(str(user)), action_id)
    except Exception:  # Pitfall B: after ack() nothing may escape
        log.exception("handling a button failed")


def _object(body: dict[str, Any], name: str) -> dict[str, Any]:
    """`body[name]` when it is an object; Slack always sends one, anything else reads as empty."""
    value = body.get(name)
    return value if isinstance(value, dict) else {}
