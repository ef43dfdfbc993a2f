"""What Slack's refusals become at the seam: the bot's own exceptions for a Web API error code.

`SlackChat` handles the errors it can work around itself (too long, message gone, thread gone, already
reacted); every other `SlackApiError` goes through `translate_error`: rate limits and Slack's own failures
become a retryable `ChatUnavailable`, a channel the bot is not in a `NotInChannel` that says how to invite it,
and anything else a `ChatRejected` naming the method and Slack's error code.
"""

from __future__ import annotations

from datetime import timedelta

import structlog
from slack_sdk.errors import SlackApiError

from bot.adapters.slack_client import RATE_LIMITED, error_code, retry_after_seconds
from bot.core.catalog import ChannelId
from bot.core.errors import ChatUnavailable, PermanentError, UserError

log = structlog.get_logger(__name__)

NOT_IN_CHANNEL = frozenset({"not_in_channel", "channel_not_found"})
TRANSIENT = frozenset({"internal_error", "fatal_error", "service_unavailable", "request_timeout", "team_added_to_org"})


class NotInChannel(UserError):
    """The bot cannot post in the channel: the fix is an `/invite`, which only a person can do."""

    def __init__(self, channel: ChannelId) -> None:
        super().__init__(
            f"I'm not a member of <#{channel}>, so I can't post there. "
            "Invite me with `/invite @rollbot` in that channel, then run the command again."
        )
        self.channel = channel


class ChatRejected(PermanentError):
    """Slack refused a call for a reason retrying will not fix (bad token, missing scope, invalid blocks…)."""

    def __init__(self, method: str, error: str, detail: str = "") -> None:
        super().__init__(f"Slack refused {method}: {error}{f' ({detail})' if detail else ''}")
        self.method = method
        self.error = error


def translate_error(method: str, exc: SlackApiError, channel: ChannelId | None) -> Exception:
    """The bot's exception for a Web API error the caller does not handle itself."""
    code = error_code(exc)
    status = exc.response.status_code
    if code in RATE_LIMITED:
        wait = retry_after_seconds(exc.response.headers) or 1.0
        return ChatUnavailable(f"Slack rate limited {method}", delay=timedelta(seconds=wait))
    if code in NOT_IN_CHANNEL and channel is not None:
        return NotInChannel(channel)
    if code == "is_archived":
        return UserError(f"<#{channel}> is archived; run the command in an active channel.")
    if code in TRANSIENT or status >= 500 or code.startswith("http_"):
        return ChatUnavailable(f"Slack failed {method}: {code}", delay=timedelta(seconds=2))
    detail = ""
    if code == "missing_scope":
        detail = f"needed {exc.response.get('needed')}"
    log.error("slack refused a call", method=method, error=code, detail=detail)
    return ChatRejected(method, code, detail)
