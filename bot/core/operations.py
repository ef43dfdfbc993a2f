"""An operation: one requested rollback, from the slash command to its outcome.

An `Operation` is an immutable record; every change produces a new copy with `version` raised by one, which
is what the operation store compares-and-sets on. Its `phase` says where it is in the lifecycle:

    AWAITING_APPROVAL → APPROVED → ROLLING_BACK → SUCCEEDED | FAILED
    AWAITING_APPROVAL → REJECTED | EXPIRED | CANCELLED
    PREVIEW (a --dry-run: shown, never executed)

A batch (`/rollback shop`) is one operation with `members`: one request message, one approval, one lock per
member taken together, and each member's own plan, phase and outcome; its `target` is the batch itself (the
group's name, the strictest policy of its members). The batch succeeds only when every member did.

Terminal phases absorb every further event. The target is stored resolved (a snapshot of the catalog entry and
its policy), so editing the catalog never changes what an in-flight operation will do.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal, NewType

from pydantic import BaseModel, ConfigDict, Field

from bot.core.catalog import ChannelId, SlackUserId, Target
from bot.core.gitops import GitOpsState
from bot.core.rollouts import RevisionNumber, RollbackPlan, RollbackReceipt, RolloutStatus

OperationId = NewType("OperationId", str)


class Phase(StrEnum):
    PREVIEW = "preview"
    AWAITING_APPROVAL = "awaiting_approval"
    APPROVED = "approved"
    ROLLING_BACK = "rolling_back"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REJECTED = "rejected"
    EXPIRED = "expired"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_PHASES

    @property
    def is_in_flight(self) -> bool:
        """Still holds the target's lock: somebody may approve it, or it is executing."""
        return self in {Phase.AWAITING_APPROVAL, Phase.APPROVED, Phase.ROLLING_BACK}


TERMINAL_PHASES = frozenset(
    {Phase.PREVIEW, Phase.SUCCEEDED, Phase.FAILED, Phase.REJECTED, Phase.EXPIRED, Phase.CANCELLED}
)


class MessageRef(BaseModel):
    """A Slack message: its channel and timestamp, which together identify it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    channel: ChannelId
    ts: str


class Approval(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    user: SlackUserId
    at: datetime
    via: Literal["reaction", "button"] = "reaction"


class BatchMember(BaseModel):
    """One target of a batch: its plan, how far it got, and what happened to it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    target: Target
    plan: RollbackPlan
    # AWAITING_APPROVAL until the batch runs, ROLLING_BACK while it does, then SUCCEEDED or FAILED; a batch that
    # never ran (rejected, expired, cancelled, a preview) leaves its members in the batch's phase.
    phase: Phase
    receipt: RollbackReceipt | None = None
    last_status: RolloutStatus | None = None
    outcome: str | None = None

    @property
    def name(self) -> str:
        return self.target.name


class Operation(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: OperationId
    version: int = 1
    phase: Phase
    target: Target
    requester: SlackUserId
    channel: ChannelId
    created_at: datetime
    updated_at: datetime
    expires_at: datetime
    requested_revision: RevisionNumber | None = None
    plan: RollbackPlan
    reason: str | None = None
    is_dry_run: bool = False
    # Where it came from: a person's command, the button of an incident card, or the automatic-rollback policy.
    source: Literal["command", "detected", "policy"] = "command"
    approvals: tuple[Approval, ...] = ()
    decided_by: SlackUserId | None = None  # who rejected or cancelled
    request_message: MessageRef | None = None
    progress_message: MessageRef | None = None
    # Which bot replica executes it, and until when its claim holds (refreshed while running).
    executor: str | None = None
    lease_until: datetime | None = None
    # The executor's fencing token: raised by one with every claim or takeover. The store refuses an execution
    # write whose token is not the current one, so a replica that was paused past its lease cannot write.
    fence: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    receipt: RollbackReceipt | None = None
    last_status: RolloutStatus | None = None
    outcome: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    # A batch's targets, in the order people named them; empty for a single-target operation.
    members: tuple[BatchMember, ...] = ()
    # The incident whose card's button asked for this rollback, if any.
    incident_id: str | None = None
    # How many approvals it needs when that is not its target's policy: an automatic rollback's own `approvals`
    # (0: it was created approved).
    approvals_needed: int | None = None
    # After SUCCEEDED: whether the target stayed healthy for `healthy_for` (pending, then healthy or failing).
    verification: Literal["pending", "healthy", "failing"] | None = None
    # `rollback`, or `resume-sync`: give a reconciler paused by an earlier rollback its recorded settings back.
    action: Literal["rollback", "resume-sync"] = "rollback"
    # The Argo CD / Flux reconciler of the target, and whether this operation pauses (or paused) it.
    gitops: GitOpsState | None = None

    @property
    def is_resume_sync(self) -> bool:
        return self.action == "resume-sync"

    @property
    def is_batch(self) -> bool:
        return bool(self.members)

    @property
    def lock_keys(self) -> tuple[str, ...]:
        """Every lock this operation holds while in flight: one per member for a batch, else its target's."""
        if self.members:
            return tuple(member.target.lock_key for member in self.members)
        return (self.target.lock_key,)

    def member(self, name: str) -> BatchMember | None:
        return next((member for member in self.members if member.target.name == name), None)

    @property
    def approvers(self) -> tuple[SlackUserId, ...]:
        return tuple(approval.user for approval in self.approvals)

    @property
    def required_approvals(self) -> int:
        return self.approvals_needed if self.approvals_needed is not None else self.target.policy.required

    def metadata_payload(self) -> dict[str, object]:
        """The `rollbot_operation` message metadata every message about this operation carries."""
        payload: dict[str, object] = {
            "operation_id": self.id,
            "phase": self.phase.value,
            "target": self.target.name,
            "backend": self.target.backend.value,
            "from_revision": self.plan.from_revision,
            "to_revision": self.plan.to_revision,
            # Who asked, by contract: the automatic-rollback policy, or people (a command or a card's button).
            "source": "policy" if self.source == "policy" else "user",
        }
        if self.incident_id is not None:
            payload["incident_id"] = self.incident_id
        if self.verification is not None:
            payload["verification"] = self.verification
        if self.gitops is not None:
            # Absent for a target no GitOps controller reconciles, so such payloads stay as they were.
            payload["reconciler"] = self.gitops.reconciler.ref.key
            payload["sync_paused"] = self.gitops.paused and not self.is_resume_sync
        if self.is_resume_sync:
            payload["action"] = self.action
        if self.members:
            # Flat objects only: Slack's metadata allows a list of objects, not objects nested deeper.
            payload["batch"] = True
            payload["targets"] = [member.target.name for member in self.members]
            payload["members"] = [
                {
                    "target": member.target.name,
                    "phase": member.phase.value,
                    "from_revision": member.plan.from_revision,
                    "to_revision": member.plan.to_revision,
                }
                for member in self.members
            ]
        return payload


# The Slack message metadata event type, fixed by contract: workflows and other apps filter on it.
METADATA_EVENT_TYPE = "rollbot_operation"
