"""The building blocks of every message: the `ChatMessage` model, escaping, formatting, Block Kit pieces."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from bot.core.catalog import SlackGroupId, SlackUserId, Target
from bot.core.incident_auto import POLICY_REQUESTER
from bot.core.operations import METADATA_EVENT_TYPE, Operation, Phase
from bot.core.slack_limits import MAX_BLOCKS, MAX_SECTION_TEXT, MAX_TEXT


class ChatMessage(BaseModel):
    """A message ready to send: fallback text, Block Kit blocks and (for operation messages) metadata."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    text: str
    blocks: tuple[dict[str, Any], ...] = ()
    # Slack message metadata: {"event_type": ..., "event_payload": {...}}; None for messages about nothing.
    metadata: dict[str, Any] | None = None
    # Only used for replies to a slash command: ephemeral (default) or in_channel.
    response_type: str = Field(default="ephemeral")


# A preview longer than this many changes is summarised; the thread is no place for a full manifest diff.
MAX_CHANGES_SHOWN = 20
# History shows the newest revisions only; people roll back to recent ones.
MAX_HISTORY_ROWS = 15
# The action ids of the request message's buttons; handlers listen for exactly these.
APPROVE_ACTION = "rollbot_approve"
REJECT_ACTION = "rollbot_reject"
DECISION_BLOCK = "rollbot_decision"
APPROVE_EMOJI = "white_check_mark"
REJECT_EMOJI = "x"

_PHASE_BADGES: dict[Phase, str] = {
    Phase.PREVIEW: ":mag: Dry run: preview only, nothing will change",
    Phase.AWAITING_APPROVAL: ":hourglass_flowing_sand: Awaiting approval",
    Phase.APPROVED: ":white_check_mark: Approved, starting",
    Phase.ROLLING_BACK: ":arrows_counterclockwise: Rolling back",
    Phase.SUCCEEDED: ":large_green_circle: Rolled back",
    Phase.FAILED: ":red_circle: Rollback failed",
    Phase.REJECTED: ":no_entry: Rejected",
    Phase.EXPIRED: ":alarm_clock: Expired: not approved in time",
    Phase.CANCELLED: ":no_entry_sign: Cancelled",
}


# --- small pieces ---------------------------------------------------------------------------------------


def archive_link(channel: str, ts: str) -> str:
    """A link to one message that needs no API call: Slack's archive URL, which opens it in the user's workspace."""
    return f"https://slack.com/archives/{channel}/p{ts.replace('.', '')}"


def escape(text: str) -> str:
    """Mrkdwn-escape a user- or backend-provided string (`&`, `<`, `>`; Slack needs nothing else)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# Slack's own markup for people, groups and channels, which texts written by the core may contain.
_SLACK_REFERENCE = re.compile(r"&lt;([@#][UWCGD][A-Z0-9]+|!subteam\^S[A-Z0-9]+)&gt;")


def escape_keeping_mentions(text: str) -> str:
    """Escape like `escape`, but keep `<@U…>`, `<#C…>` and `<!subteam^S…>` working (never `<!channel>`)."""
    return _SLACK_REFERENCE.sub(r"<\1>", escape(text))


def mention(user: SlackUserId | str) -> str:
    if user == POLICY_REQUESTER:
        return "the automatic rollback policy"  # the requester of an automatic rollback is no Slack user
    return f"<@{user}>"


def group_mention(group: SlackGroupId | str) -> str:
    return f"<!subteam^{group}>"


def format_time(moment: datetime) -> str:
    """Times in messages are UTC, always labelled: incident channels span time zones."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def format_elapsed(elapsed: timedelta) -> str:
    seconds = max(0, int(elapsed.total_seconds()))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def section(text: str, block_id: str | None = None) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "section", "text": {"type": "mrkdwn", "text": cut(text, MAX_SECTION_TEXT)}}
    if block_id is not None:
        block["block_id"] = block_id
    return block


def context(*texts: str) -> dict[str, Any]:
    # A context block holds at most 10 elements; each is a section-sized mrkdwn text.
    return {
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": cut(text, MAX_SECTION_TEXT)} for text in texts[:10]],
    }


def operation_metadata(operation: Operation) -> dict[str, Any]:
    return {"event_type": METADATA_EVENT_TYPE, "event_payload": operation.metadata_payload()}


def message(text: str, blocks: Iterable[dict[str, Any]] = (), operation: Operation | None = None) -> ChatMessage:
    return ChatMessage(
        text=cut(text, MAX_TEXT),
        blocks=tuple(blocks)[:MAX_BLOCKS],
        metadata=operation_metadata(operation) if operation is not None else None,
    )


def plain(text: str) -> ChatMessage:
    """A short reply that needs no layout (acks, confirmations)."""
    return ChatMessage(text=cut(text, MAX_TEXT))


def target_coordinates(target: Target) -> str:
    """Where the target lives, in the backend's own words: `helm release default/workshop (context sandbox)`."""
    spec = target.spec
    where = spec.display
    context = getattr(spec, "kube_context", None)
    region = getattr(spec, "region", None)
    if context:
        where += f" (context {context})"
    if region:
        where += f" ({region})"
    return escape(where)
