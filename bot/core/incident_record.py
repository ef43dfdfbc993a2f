"""The incident record: what the store keeps of one incident and what its card shows, with the flat metadata
every version of the card carries. `bot.core.incidents` decides how a record changes (and re-exports
`Incident` and `IncidentId`)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final, NewType

from pydantic import BaseModel, ConfigDict

from bot.core.catalog import ChannelId, SlackUserId, TargetName
from bot.core.detection import Signal
from bot.core.incident_auto import AutoRollback
from bot.core.incident_parts import IncidentSource, IncidentState, LastGood, Resolution, TimelineEntry, WorkloadRef
from bot.core.operations import MessageRef, OperationId

IncidentId = NewType("IncidentId", str)

# The Slack message metadata event type of incident cards, fixed by contract.
INCIDENT_EVENT_TYPE: Final = "rollbot_incident"


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Incident(_Frozen):
    id: IncidentId
    version: int = 1
    key: str
    workload: WorkloadRef
    # The catalog target that names the workload, or None for one found by a `watch` scope.
    target: TargetName | None = None
    state: IncidentState = IncidentState.OPEN
    resolution: Resolution | None = None
    signal: Signal
    channel: ChannelId
    card: MessageRef | None = None
    opened_at: datetime
    updated_at: datetime
    resolved_at: datetime | None = None
    last_good: LastGood | None = None
    # Why the card offers no rollback button (a workload outside the catalog where ad-hoc targets are not allowed).
    no_button_reason: str | None = None
    rollback_requested_by: SlackUserId | None = None
    operation_id: OperationId | None = None
    # The last thing that went wrong with a rollback from the card, shown on the card until the next one.
    note: str | None = None
    reopened: int = 0
    is_card_stale: bool = False
    card_refreshed_at: datetime | None = None
    timeline: tuple[TimelineEntry, ...] = ()
    source: IncidentSource = IncidentSource.WATCH
    # Where to read more: the pipeline run, or the alert's generator URL.
    link: str | None = None
    # Alertmanager alerts (by alertname) currently firing for this incident; the card notes each one's end.
    alerts_firing: tuple[str, ...] = ()
    # The mass failure this incident belongs to (`bot.core.incident_groups`), and where its summary card is.
    group_id: str | None = None
    group_card: MessageRef | None = None

    @property
    def is_grouped(self) -> bool:
        """Part of a mass failure: humans decide from the summary card; no automatic rollback, no own button."""
        return self.group_id is not None

    # The automatic rollback (bot.core.incident_auto), when the target opted in; None when it never applied.
    auto: AutoRollback | None = None

    @property
    def target_label(self) -> str:
        return self.target or self.workload.display

    @property
    def revision(self) -> str:
        return self.signal.revision

    @property
    def is_ecs_rolling_back(self) -> bool:
        return self.signal.is_rolling_back_by_itself

    @property
    def has_button(self) -> bool:
        """The card offers "Roll back to revision N" only when a click can lead somewhere (§6.9)."""
        return (
            self.state is IncidentState.OPEN
            and self.rollback_requested_by is None
            and not self.is_ecs_rolling_back
            and self.no_button_reason is None
            and self.last_good is not None
            and not self.is_grouped
        )

    @property
    def lasted(self) -> timedelta | None:
        return None if self.resolved_at is None else self.resolved_at - self.opened_at

    def metadata_payload(self) -> dict[str, str | int | None]:
        """The flat `rollbot_incident` metadata every version of the card carries (Slack allows flat values only)."""
        payload: dict[str, str | int | None] = {
            "incident_id": self.id,
            "state": self.state.value,
            "target": self.target_label,
            "backend": self.workload.backend.value,
            "kind": self.workload.kind,
            "namespace": self.workload.namespace,
            "name": self.workload.name,
            "revision": self.revision,
            "reason": self.signal.reason,
            "resolution": self.resolution.value if self.resolution else None,
            "operation_id": self.operation_id,
            "source": self.source.value,
            "auto_state": self.auto.state.value if self.auto else None,
            "auto_due_at": self.auto.due_at.isoformat() if self.auto and self.auto.due_at else None,
            "auto_why": self.auto.why if self.auto else None,
        }
        if self.group_id is not None:
            payload["group_id"] = self.group_id  # part of a mass failure (its summary's `rollbot_incident_group`)
        return payload
