"""Effects: what the core asks the flow to do, as plain data.

`lifecycle.advance` never talks to Slack or Redis; it returns these, and the flow applies them once, in order,
after the new operation has been stored (compare-and-set). They are instructions, not events: applying one twice
must be harmless (a second `RefreshRequestMessage` re-renders the same text; `StartExecution` is guarded by the
`ExecutionClaimed` transition, which only one replica can win).
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.core.catalog import SlackUserId
from bot.core.operations import OperationId


@dataclass(frozen=True)
class TellUser:
    """An ephemeral reply to one person in the operation's channel (why their vote did not count…)."""

    user: SlackUserId
    text: str


@dataclass(frozen=True)
class PostInThread:
    """A line in the request message's thread ("✅ approved by <@U0BBB> (1/1)")."""

    text: str


@dataclass(frozen=True)
class RefreshRequestMessage:
    """Re-render the request message from the new operation (phase, approvals n/N, outcome)."""


@dataclass(frozen=True)
class StartExecution:
    """Hand the operation to the bounded executor; it must first win `ExecutionClaimed`, then roll back."""

    operation_id: OperationId


@dataclass(frozen=True)
class ReleaseTarget:
    """The operation is over: free the target's lock (idempotent; the store also does it on terminal phases)."""

    lock_key: str


Effect = TellUser | PostInThread | RefreshRequestMessage | StartExecution | ReleaseTarget
