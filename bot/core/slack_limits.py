"""Slack's limits on what the bot writes, defined once (slack.md §6): the core renders within them and the
chat adapter enforces them again before a call, so a message is never refused for its size."""

from __future__ import annotations

from typing import Final

# Blocks per message.
MAX_BLOCKS: Final = 50
# Characters of a section's (or a context element's) text.
MAX_SECTION_TEXT: Final = 3000
# chat.update and chat.postEphemeral refuse a fallback text over 4,000 characters (msg_too_long).
MAX_TEXT: Final = 4000
# What the adapter keeps of a too-long text, leaving room for its truncation marker.
MAX_TEXT_KEPT: Final = MAX_TEXT - 100
# Slack answers msg_blocks_too_long at about 13.2k characters of blocks JSON (bolt-js#2509); stay well below.
MAX_BLOCKS_JSON: Final = 11_000
