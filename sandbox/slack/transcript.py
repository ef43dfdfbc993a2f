"""A readable terminal transcript of what happens in the fake workspace (for the demo and for debugging).

    [12:00:01] #incident  @rollbot: Rollback of workshop to revision 1 requested by @alice
    [12:00:02] #incident    + :white_check_mark: by @bob
    [12:00:03] #incident    ↳ thread @rollbot: Rolling back… 1/3 pods ready
    [12:00:04] #incident    ✎ edited 1700000000.000200: Rolled back ✅
    [12:00:04] #incident    (only @alice sees) Usage: /rollback <target> [revision]

Subscribe it to a fake: ``fake.subscribe(TranscriptPrinter(fake))``.
"""

from __future__ import annotations

import sys
import threading
from datetime import UTC, datetime
from typing import TextIO

from sandbox.slack.records import Change
from sandbox.slack.state import SlackState

# Long status messages would wrap the terminal; the transcript is a summary, the fake keeps the full text.
MAX_LINE_TEXT = 160
CHANNEL_COLUMN = 12


class TranscriptPrinter:
    """Callable observer: renders each :class:`Change` as one or more transcript lines."""

    def __init__(
        self,
        state: SlackState,
        stream: TextIO | None = None,
        *,
        color: bool | None = None,
        show_ephemerals: bool = True,
        show_response_urls: bool = False,
    ) -> None:
        self.state = state
        self.stream = stream or sys.stdout
        self.color = self.stream.isatty() if color is None else color
        self.show_ephemerals = show_ephemerals
        self.show_response_urls = show_response_urls
        self._lock = threading.Lock()

    def __call__(self, change: Change) -> None:
        line = self.render(change)
        if line is None:
            return
        with self._lock:
            self.stream.write(line + "\n")
            self.stream.flush()

    def render(self, change: Change) -> str | None:
        clock = f"{datetime.fromtimestamp(change.t, UTC):%H:%M:%S}"
        prefix = f"[{clock}] {self.state.channel_name(change.channel):<{CHANNEL_COLUMN}}"
        who = f"@{self.state.user_name(change.user)}"
        text = _one_line(change.text)
        if change.kind == "message_posted":
            if change.thread_ts and change.thread_ts != change.ts:
                return f"{prefix}  {self._dim('↳ thread')} {who}: {text}"
            return f"{prefix}{self._bold(who)}: {text}"
        if change.kind == "message_edited":
            return f"{prefix}  {self._dim('✎ edited')} {change.ts}: {text}"
        if change.kind == "message_deleted":
            return f"{prefix}  {self._dim('✗ deleted')} {change.ts}"
        if change.kind == "reaction_added":
            return f"{prefix}  {self._green('+')} :{change.reaction}: by {who}"
        if change.kind == "reaction_removed":
            return f"{prefix}  {self._red('-')} :{change.reaction}: by {who}"
        if change.kind == "ephemeral" and self.show_ephemerals:
            return f"{prefix}  {self._dim(f'(only {who} sees)')} {text}"
        if change.kind == "response_url" and self.show_response_urls:
            effect = change.detail.get("effect")
            return f"{prefix}  {self._dim(f'response_url → {effect}')} {text}"
        if change.kind == "response_url" and change.detail.get("effect") == "rejected":
            return f"{prefix}  {self._red('response_url rejected:')} {change.detail.get('reason')}"
        if change.kind == "view_opened":
            return f"{prefix}  {self._dim('▣ modal')} for {who}: {text}"
        return None

    def _style(self, code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.color else text

    def _bold(self, text: str) -> str:
        return self._style("1", text)

    def _dim(self, text: str) -> str:
        return self._style("2", text)

    def _green(self, text: str) -> str:
        return self._style("32", text)

    def _red(self, text: str) -> str:
        return self._style("31", text)


def _one_line(text: str) -> str:
    flat = " ⏎ ".join(line.strip() for line in text.splitlines() if line.strip())
    return flat if len(flat) <= MAX_LINE_TEXT else flat[: MAX_LINE_TEXT - 1] + "…"


def render_thread(state: SlackState, channel: str, ts: str) -> str:
    """A thread as plain text for snapshot-style assertions: parent, replies (indented), reactions."""
    lines: list[str] = []
    for message in state.thread(channel, ts):
        indent = "  ↳ " if message.is_reply else ""
        edited = " (edited)" if message.is_edited else ""
        lines.append(f"{indent}@{state.user_name(message.user)}: {_one_line(message.display_text())}{edited}")
        for name, users in message.reactions.items():
            voters = ", ".join(f"@{state.user_name(user)}" for user in users)
            lines.append(f"{'    ' if message.is_reply else '  '}:{name}: {voters}")
    return "\n".join(lines)
