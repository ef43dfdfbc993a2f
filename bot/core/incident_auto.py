"""An incident's automatic rollback, as the incident record keeps it: counting down, cancelled, started or skipped.

    (opened, the target opted in) ──▶ COUNTING ──(due, the guardrails still agree)──▶ STARTED
                                        │  └──────(Cancel, by someone allowed to approve)──▶ CANCELLED (final)
                                        └─────────(a guardrail says no, or the incident ended)──▶ SKIPPED
    (opened, a guardrail says no) ──▶ SKIPPED

The countdown lives in the incident record in Redis (its `due_at`), never only in memory, so whichever replica
sweeps after `due_at` fires it; the COUNTING → STARTED write is a compare-and-set on the incident's version, so
it fires once. STARTED records the operation id chosen before that write: a replica that died between the write
and the request leaves a STARTED record without its operation, and the next sweep requests it under that same id.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Final

from pydantic import BaseModel, ConfigDict

from bot.core.catalog_types import SlackUserId
from bot.core.operations import OperationId
from bot.core.rollouts import RevisionNumber

# The requester of an operation the policy starts (never a Slack user: no four-eyes rule can exclude an approver).
POLICY_REQUESTER: Final = SlackUserId("rollbot-policy")


class AutoState(StrEnum):
    COUNTING = "counting"
    CANCELLED = "cancelled"
    STARTED = "started"
    SKIPPED = "skipped"


class AutoRollback(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    state: AutoState
    decided_at: datetime
    due_at: datetime | None = None
    to_revision: RevisionNumber | None = None
    # How many approvals the started rollback waits for (0: it runs at once).
    approvals: int = 0
    why: str | None = None
    cancelled_by: SlackUserId | None = None
    operation_id: OperationId | None = None


# --- events (facts the auto-rollback flow reports; `bot.core.incidents.advance` decides) --------------------------


@dataclass(frozen=True)
class AutoCountdown:
    """The policy wants this incident rolled back to `to_revision` at `due_at` unless someone cancels."""

    due_at: datetime
    to_revision: RevisionNumber
    approvals: int


@dataclass(frozen=True)
class AutoSkipped:
    """The policy will not roll this incident back by itself: `why` goes on the card; the button stays."""

    why: str


@dataclass(frozen=True)
class AutoCancelled:
    """Someone pressed Cancel; only someone allowed to approve the target may (the flow looks that up)."""

    user: SlackUserId
    is_approver: bool


@dataclass(frozen=True)
class AutoFired:
    """The countdown ended and the guardrails still agree: the rollback is requested as `operation_id`."""

    operation_id: OperationId


AutoEvent = AutoCountdown | AutoSkipped | AutoCancelled | AutoFired


def auto_line(auto: AutoRollback) -> str:
    """The thread's (and the timeline's) words for a new automatic-rollback state."""
    match auto.state:
        case AutoState.COUNTING:
            due = auto.due_at.astimezone(UTC).strftime("%H:%M:%S UTC") if auto.due_at else "?"
            return f"automatic rollback to revision {auto.to_revision} at {due} unless cancelled"
        case AutoState.CANCELLED:
            return f"automatic rollback cancelled by <@{auto.cancelled_by}>"
        case AutoState.STARTED:
            return f"automatic rollback started as `{auto.operation_id}`"
        case _:
            return f"automatic rollback skipped: {auto.why}"


__all__ = [
    "POLICY_REQUESTER",
    "AutoCancelled",
    "AutoCountdown",
    "AutoEvent",
    "AutoFired",
    "AutoRollback",
    "AutoSkipped",
    "AutoState",
    "auto_line",
]
