"""Fitting a message into Slack's limits: the fallback text truncated, detail blocks dropped.

Slack refuses a message whose text or blocks are too long (`msg_too_long`, `msg_blocks_too_long`); `SlackChat`
then sends `shrink_message(message)` once more. The limits themselves are defined once in `bot.core.slack_limits`.
"""

from __future__ import annotations

import json
from typing import Any

from bot.core.messages import ChatMessage
from bot.core.slack_limits import MAX_BLOCKS, MAX_BLOCKS_JSON, MAX_TEXT_KEPT

MAX_TEXT_CHARS = MAX_TEXT_KEPT
MAX_BLOCKS_JSON_CHARS = MAX_BLOCKS_JSON
TRUNCATION_MARK = "… (truncated)"
TRUNCATED_BLOCKS_NOTE = "_Some details were left out: the message was too long for Slack._"


def truncate_text(text: str, limit: int = MAX_TEXT_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - len(TRUNCATION_MARK)] + TRUNCATION_MARK


def shrink_blocks(
    blocks: tuple[dict[str, Any], ...], budget: int = MAX_BLOCKS_JSON_CHARS
) -> tuple[dict[str, Any], ...]:
    """Keep blocks in order while they fit `budget`; header and actions (the Approve/Reject buttons) always stay."""
    note = {"type": "context", "elements": [{"type": "mrkdwn", "text": TRUNCATED_BLOCKS_NOTE}]}
    essential = {"header", "actions"}
    used = len(json.dumps(note)) + sum(len(json.dumps(b)) for b in blocks if b.get("type") in essential)
    kept: list[dict[str, Any]] = []
    for block in blocks:
        size = len(json.dumps(block))
        if block.get("type") in essential:
            kept.append(block)
        elif used + size <= budget and len(kept) < MAX_BLOCKS - 2:
            kept.append(block)
            used += size
    kept.append(note)
    return tuple(kept)


def shrink_message(message: ChatMessage) -> ChatMessage:
    """A version of `message` Slack accepts: truncated fallback text, detail blocks dropped."""
    return message.model_copy(
        update={"text": truncate_text(message.text), "blocks": shrink_blocks(message.blocks) if message.blocks else ()}
    )
