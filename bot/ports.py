"""The ports: how the flow reaches the outside world, as structural protocols.

Adapters (`bot/adapters`) and backends (`bot/backends`) implement these without inheriting from them; mypy
checks the fit where `bot/app.py` wires them. Every implementation translates its vendor's exceptions into
`bot.core.errors` at the seam, so nothing above a port ever sees an ApiException, a ClientError, a
SlackApiError or a redis error.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Protocol

from pydantic import BaseModel, ConfigDict

from bot.core.catalog import ChannelId, SlackGroupId, SlackUserId, Target
from bot.core.messages import ChatMessage
from bot.core.operations import MessageRef, Operation, OperationId
from bot.core.rollouts import (
    BackendOption,
    Revision,
    RevisionNumber,
    RollbackPlan,
    RollbackReceipt,
    RolloutStatus,
    TargetStatus,
)


class Backend(Protocol):
    """One deployment technology (Helm, Kubernetes, ECS). All methods may raise `bot.core.errors` only."""

    def options(self) -> Sequence[BackendOption]:
        """The backend-specific flags `/rollback <target> …` accepts for this backend."""
        ...

    def check_target(self, target: Target) -> None:
        """Raise UnknownTarget / TargetNotAllowed when the target does not exist or cannot be reached."""
        ...

    def history(self, target: Target) -> Sequence[Revision]:
        """The revisions people would see with the backend's own history command, oldest first."""
        ...

    def current_revision(self, target: Target) -> RevisionNumber: ...

    def plan_rollback(
        self, target: Target, to_revision: RevisionNumber | None, options: Mapping[str, bool | str]
    ) -> RollbackPlan:
        """Resolve the target revision (None or 0 = previous) and say what will change.

        Raises RevisionNotFound (listing the revisions that exist), NothingToDo (already there) or
        RollbackRefused (e.g. a paused Deployment, a helm release stuck in pending-*).
        """
        ...

    def roll_back(self, target: Target, plan: RollbackPlan, operation_id: OperationId) -> RollbackReceipt:
        """Apply the approved plan. Calling it again for the same operation after a crash must not roll back twice."""
        ...

    def watch_rollout(
        self, target: Target, plan: RollbackPlan, timeout: timedelta, resume_token: str | None = None
    ) -> Iterator[RolloutStatus]:
        """Observe the rollout until it finishes; the last status yielded is SUCCEEDED or FAILED."""
        ...

    def status(self, target: Target) -> TargetStatus: ...


class Chat(Protocol):
    """Slack, as far as the flow needs it. Raises ChatUnavailable (retryable) or UserError (e.g. not in channel)."""

    def post(self, channel: ChannelId, message: ChatMessage, thread: MessageRef | None = None) -> MessageRef: ...

    def update(self, ref: MessageRef, message: ChatMessage) -> MessageRef | None:
        """Replace the content of `ref`; returns the ref that now shows it.

        `ref` itself (or None) when edited in place; a different ref when the original was deleted or can no
        longer be edited and a new message was posted instead (link it to the operation so reactions on it count).
        """
        ...

    def post_ephemeral(self, channel: ChannelId, user: SlackUserId, message: ChatMessage) -> None: ...

    def add_reaction(self, ref: MessageRef, name: str) -> None: ...

    def reactions(self, ref: MessageRef) -> Mapping[str, Sequence[SlackUserId]]:
        """The reactions on a message now (emoji → users), to recount votes whose events were lost."""
        ...

    def group_members(self, group: SlackGroupId) -> frozenset[SlackUserId]: ...

    def is_bot(self, user: SlackUserId) -> bool: ...


class LockInfo(BaseModel):
    """Who holds a target, for the "locked by …" message."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    operation_id: OperationId
    requester: SlackUserId
    since: datetime


class AuditEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    operation_id: OperationId
    at: datetime
    phase: str
    version: int
    actor: SlackUserId | None = None
    note: str | None = None


class OperationStore(Protocol):
    """The journal of operations. Shared by every bot replica; all writes are compare-and-set."""

    def create(self, operation: Operation, lock_ttl: timedelta) -> None:
        """Store a new operation and take its target's lock (if in flight). Raises TargetBusy."""
        ...

    def get(self, operation_id: OperationId) -> Operation | None: ...

    def replace(
        self,
        operation: Operation,
        expected_version: int,
        actor: SlackUserId | None = None,
        note: str | None = None,
    ) -> None:
        """Write `operation` if the stored version is `expected_version` (else ConcurrentUpdate).

        Appends an audit entry; releases the target's lock when the operation reaches a terminal phase.
        """
        ...

    def link_message(self, operation_id: OperationId, ref: MessageRef) -> None: ...

    def find_by_message(self, ref: MessageRef) -> Operation | None: ...

    def lock_holder(self, lock_key: str) -> LockInfo | None: ...

    def refresh_lock(self, operation: Operation, ttl: timedelta) -> None: ...

    def in_flight(self) -> Sequence[Operation]: ...

    def first_delivery(self, key: str, ttl: timedelta) -> bool:
        """True the first time `key` is seen within `ttl` (Slack event_id dedup, command idempotency)."""
        ...

    def audit(self, operation_id: OperationId) -> Sequence[AuditEntry]: ...

    def is_reachable(self) -> bool: ...


class Clock(Protocol):
    def now(self) -> datetime:
        """Timezone-aware UTC."""
        ...


class Metrics(Protocol):
    """What the flow counts; the Prometheus adapter exposes it on /metrics."""

    def command_received(self, verb: str) -> None: ...

    def approval_recorded(self, outcome: str) -> None:
        """outcome: counted, withdrawn, rejected, refused (not allowed), ignored."""
        ...

    def phase_entered(self, backend: str, phase: str) -> None: ...

    def rollout_finished(self, backend: str, phase: str, duration_seconds: float) -> None: ...
