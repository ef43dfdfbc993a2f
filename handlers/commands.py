"""The slash command: ack within milliseconds, answer for real from the bot's executor."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient

from bot.core.catalog import ChannelId, SlackUserId
from bot.core.messages import ChatMessage, plain
from bot.flows import Reply, RollbackFlow

log = logging.getLogger("rollbot.handlers")


def register_commands(app: App, flow: RollbackFlow, command_name: str) -> None:
    @app.command(command_name)
    def on_rollback(ack: Ack, command: dict[str, Any], respond: Respond, client: WebClient) -> None:
        user = SlackUserId(str(command.get("user_id", "")))
        channel = ChannelId(str(command.get("channel_id", "")))
        text = str(command.get("text") or "")
        try:
            answer = flow.accept_command(text, user, channel, _replier(respond, client, channel, user))
        except Exception:  # never let the ack path fail: Slack would show "operation_timeout"
            log.exception("accepting a slash command failed")
            answer = plain("Internal error while accepting the command; please try again.")
        ack(**_ack_args(answer))


def _ack_args(message: ChatMessage) -> dict[str, Any]:
    args: dict[str, Any] = {"text": message.text, "response_type": message.response_type}
    if message.blocks:
        args["blocks"] = list(message.blocks)
    return args


def _replier(respond: Respond, client: WebClient, channel: ChannelId, user: SlackUserId) -> Reply:
    """The `reply` the flow calls later: the command's response_url, else an ephemeral chat message."""

    def reply(message: ChatMessage) -> None:
        blocks = list(message.blocks) or None
        try:
            response = respond(text=message.text, blocks=blocks, response_type=message.response_type)
            if 200 <= response.status_code < 300:
                return
            log.warning("response_url refused the reply", extra={"status": response.status_code})
        except Exception:  # respond() never raises on HTTP errors, but a dead connection does
            log.exception("response_url unreachable")
        # respond() bypasses retries and base_url; fall back to the Web API, which has both.
        client.chat_postEphemeral(channel=channel, user=user, text=message.text, blocks=blocks)

    return reply
