"""The buttons: Approve and Reject on a request (the same votes as ✅ and ❌), and an incident card's rollback."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack, App

from bot.core.catalog import ChannelId, SlackUserId
from bot.core.messages import APPROVE_ACTION, REJECT_ACTION
from bot.core.messages.incidents import INCIDENT_ROLLBACK_ACTION
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

    @app.action(REJECT_ACTION)
    def on_reject(ack: Ack, body: dict[str, Any]) -> None:
        ack()
        _press(flow, body, REJECT_ACTION)


def _press(flow: RollbackFlow, body: dict[str, Any], action_id: str) -> None:
    try:
        container = body.get("container") or {}
        channel = container.get("channel_id") or (body.get("channel") or {}).get("id")
        ts = container.get("message_ts") or (body.get("message") or {}).get("ts")
        user = (body.get("user") or {}).get("id")
        if not channel or not ts or not user or container.get("is_ephemeral"):
            return
        actions = body.get("actions") or [{}]
        value = str(actions[0].get("value") or "")
        ref = MessageRef(channel=ChannelId(str(channel)), ts=str(ts))
        flow.accept_button(ref, SlackUserId(str(user)), action_id, value=value)
    except Exception:  # Pitfall B: after ack() nothing may escape
        log.exception("handling a button failed")
