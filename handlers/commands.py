"""The slash command: ack within milliseconds, answer for real from the bot's executor."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

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
        if not user or not channel:
            # Slack always names both; without them there is nowhere to answer or to post a request.
            log.warning("ignored a slash command without user_id or channel_id")
            ack()
            return
        try:
            has_response_url = bool(command.get("response_url"))
            answer = flow.accept_command(
                text, user, channel, _replier(respond if has_response_url else None, client, channel, user)
            )
        except Exception:  # never let the ack path fail: Slack would show "operation_timeout"
            log.exception("accepting a slash command failed")
            answer = plain("Internal error while accepting the command; please try again.")
        ack(**_ack_args(answer))


def _ack_args(message: ChatMessage) -> dict[str, Any]:
    args: dict[str, Any] = {"text": message.text, "response_type": message.response_type}
    if message.blocks:
        args["blocks"] = list(message.blocks)
    return args


def _replier(respond: Respond | None, client: WebClient, channel: ChannelId, user: SlackUserId) -> Reply:
    """The `reply` the flow calls later: the command's response_url, else an ephemeral chat message.

    `respond` is None when the command came without a response_url (Bolt's `respond` would raise).
    """

    def reply(message: ChatMessage) -> None:
        blocks = list(message.blocks) or None
        if respond is None:
            _post_ephemeral(client, channel, user, message.text, blocks)
            return
        try:
            response = respond(text=message.text, blocks=blocks, response_type=message.response_type)
            if 200 <= response.status_code < 300:
                return
            log.warning("response_url refused the reply", extra={"status": response.status_code})
        except Exception as exc:  # respond() never raises on HTTP errors, but a dead connection or a bad URL does
            # Not our bug and nothing lost (the Web API answers instead): a warning, without a traceback.
            log.warning("response_url unreachable, answering with chat.postEphemeral", extra={"error": repr(exc)})
        # respond() bypasses retries and base_url; fall back to the Web API, which has both.
        _post_ephemeral(client, channel, user, message.text, blocks)

    return reply


def _post_ephemeral(
    client: WebClient, channel: ChannelId, user: SlackUserId, text: str, blocks: list[Any] | None
) -> None:
    """The last way to answer; when Slack refuses it (no such channel or user) there is nobody left to tell."""
    try:
        client.chat_postEphemeral(channel=channel, user=user, text=text, blocks=blocks)
    except SlackApiError as exc:
        log.warning("Slack refused the command's answer", extra={"error": exc.response.get("error")})
