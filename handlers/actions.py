"""The buttons: Approve and Reject on a request (the same votes as ✅ and ❌), an incident card's rollback,
a mass failure's summary card's "Roll back all", and the Cancel of an automatic rollback's countdown.

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
from bot.core.messages.incident_groups import GROUP_ROLLBACK_ACTION
from bot.core.messages.incidents import AUTO_CANCEL_ACTION, INCIDENT_ROLLBACK_ACTION
from bot.core.operations import MessageRef
from bot.flows import RollbackFlow

log = logging.getLogger("rollbot.handlers")


def register_actions(app: App, flow: RollbackFlow) -> None:
    @app.action(APPROVE_ACTION)
    def on_approve(ack: Ack, body: dict[str, Any]) -> None:
        ack()
        _press(flow, body, APPROVE_ACTION)

    @app.action(INCIDENT_ROLLBACK_ACTION)
    def on_incident_rollback(ack: Ack, body: dict[str, Any]) -> None:
        ack()
        _press(flow, body, INCIDENT_ROLLBACK_ACTION)

    @app.action(GROUP_ROLLBACK_ACTION)
    def on_incident_group_rollback(ack: Ack, body: dict[str, Any]) -> None:
        ack()
        _press(flow, body, GROUP_ROLLBACK_ACTION)

    @app.action(AUTO_CANCEL_ACTION)
    def on_auto_cancel(ack: Ack, body: dict[str, Any]) -> None:
        ack()
        _press(flow, body, AUTO_CANCEL_ACTION)

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
        actions = body.get("actions")
        first = actions[0] if isinstance(actions, list) and actions and isinstance(actions[0], dict) else {}
        value = str(first.get("value") or "")
        ref = MessageRef(channel=ChannelId(str(channel)), ts=str(ts))
        flow.accept_button(ref, SlackUserId(str(user)), action_id, value=value)
    except Exception:  # Pitfall B: after ack() nothing may escape
        log.exception("handling a button failed")


def _object(body: dict[str, Any], name: str) -> dict[str, Any]:
    """`body[name]` when it is an object; Slack always sends one, anything else reads as empty."""
    value = body.get(name)
    return value if isinstance(value, dict) else {}
