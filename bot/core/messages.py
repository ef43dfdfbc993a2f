"""Every piece of chat text and Block Kit layout the bot produces, as pure functions of core data.

Nothing here talks to Slack; adapters send what these functions return. Keeping all wording in one module is
what lets us keep messages exact, short and consistent (bolt keeps its error texts the same way).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ChatMessage(BaseModel):
    """A message ready to send: fallback text, Block Kit blocks and (for operation messages) metadata."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    text: str
    blocks: tuple[dict[str, Any], ...] = ()
    # Slack message metadata: {"event_type": ..., "event_payload": {...}}; None for messages about nothing.
    metadata: dict[str, Any] | None = None
    # Only used for replies to a slash command: ephemeral (default) or in_channel.
    response_type: str = Field(default="ephemeral")
