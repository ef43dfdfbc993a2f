"""What a backend tells the flow: revisions, the plan of a rollback, and the progress of a rollout.

These are plain data shared by every backend (Helm, Kubernetes, ECS). A `Revision` is one entry of the
history people already know from `helm history` / `kubectl rollout history` / task-definition revisions;
a `RollbackPlan` is what will change, decided before anyone approves; a `RolloutStatus` is one observation
of the rollout after the change, and the last one of a watch is always finished (succeeded or failed).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import NewType

from pydantic import BaseModel, ConfigDict, Field

RevisionNumber = NewType("RevisionNumber", int)


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ContainerImage(_Frozen):
    container: str
    image: str


class Revision(_Frozen):
    """One entry of a target's history."""

    number: RevisionNumber
    change_cause: str | None = None
    images: tuple[ContainerImage, ...] = ()
    deployed_at: datetime | None = None
    # Backend words, kept as they are: helm's deployed/superseded/failed/pending-*, ECS ACTIVE/INACTIVE.
    status: str | None = None
    is_current: bool = False
    description: str | None = None
    chart: str | None = None
    app_version: str | None = None


class Change(_Frozen):
    """One difference between the current revision and the target, as people read it in a preview."""

    scope: str  # e.g. "container web", "deployment/workshop", "task definition"
    field: str  # e.g. "image", "env FOO", "replicas"
    before: str | None = None
    after: str | None = None


class RollbackPlan(_Frozen):
    """What a rollback will do, resolved before approval and executed exactly as approved."""

    from_revision: RevisionNumber
    to_revision: RevisionNumber
    changes: tuple[Change, ...] = ()
    # Free-form facts the preview should show (chart version, "1 = one step back"…), in order.
    notes: tuple[str, ...] = ()
    # Backend-specific flags the user gave (ECS --deregister…), already validated by the backend.
    options: dict[str, bool | str] = Field(default_factory=dict)
    # Anything the backend must remember between preview and execution (e.g. a ReplicaSet name).
    backend_data: dict[str, str] = Field(default_factory=dict)


class RolloutPhase(StrEnum):
    PROGRESSING = "progressing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class UnhealthyUnit(_Frozen):
    """A pod or an ECS task that is not coming up, with the platform's own reason."""

    name: str
    reason: str
    message: str | None = None


class RolloutStatus(_Frozen):
    """One observation of a rollout. `summary` is a short line for the thread, e.g. "3/4 pods updated"."""

    phase: RolloutPhase
    summary: str
    ready: int | None = None
    desired: int | None = None
    updated: int | None = None
    unhealthy: tuple[UnhealthyUnit, ...] = ()
    # New facts worth their own thread line (ECS service events, helm's new revision…), newest last.
    events: tuple[str, ...] = ()
    reason: str | None = None
    # A watch that was cut short (restart) resumes from here; opaque to the flow.
    resume_token: str | None = None

    @property
    def is_finished(self) -> bool:
        return self.phase is not RolloutPhase.PROGRESSING


class TargetStatus(_Frozen):
    """The answer to `/rollback status <target>`."""

    revision: RevisionNumber | None
    summary: str
    images: tuple[ContainerImage, ...] = ()
    details: tuple[str, ...] = ()
    unhealthy: tuple[UnhealthyUnit, ...] = ()
    is_healthy: bool = True


class RollbackReceipt(_Frozen):
    """What the backend reports once the change was accepted (e.g. helm's new revision number)."""

    new_revision: RevisionNumber | None = None
    message: str | None = None


def should_publish(
    last_published_at: datetime | None,
    now: datetime,
    status: RolloutStatus,
    min_interval: timedelta = timedelta(seconds=1),
) -> bool:
    """Coalesce progress: finished states always go out, others at most once per `min_interval`."""
    if status.is_finished or last_published_at is None:
        return True
    return now - last_published_at >= min_interval


class BackendOption(_Frozen):
    """A flag a backend accepts after the target, e.g. ECS `--deregister` (declared, not hard-coded in the grammar)."""

    name: str  # without the leading dashes
    help: str
    takes_value: bool = False
    # Flags that may not be combined with this one (ecspresso refuses --deregister with --no-wait).
    conflicts_with: tuple[str, ...] = ()
