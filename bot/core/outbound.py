"""How urgent a Slack write is, for the outbound budget: under Slack's rate limits the most useful writes go
first and progress refreshes give way (slack.md §5). Pure data; the chat adapter schedules by it."""

from __future__ import annotations

from enum import IntEnum


class Priority(IntEnum):
    """Lower goes first. A request message, a decision or a final line is never delayed by progress."""

    # Request messages, approval outcomes, final lines: what people act on.
    URGENT = 0
    # Answers to one person, and thread lines that say something new (a stuck pod, a takeover).
    NORMAL = 1
    # Progress refreshes: a newer one replaces an older one still waiting, and they slow down under pressure.
    PROGRESS = 2
