"""What can happen to an incident: the events `bot.core.incidents.advance` decides on, as plain data.

Watchers, Slack clicks, the rollback flow and failure reports from Alertmanager and pipelines all speak to an
incident only through these. They carry facts, never decisions: whether a fact changes the card is for
`advance` to say.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.core.catalog import SlackUserId
from bot.core.detection import Signal
from bot.core.incident_auto import AutoCancelled, AutoCountdown, AutoFired, AutoSkipped
from bot.core.operations import MessageRef, OperationId, Phase


@dataclass(frozen=True)
class Detected:
    """The rules still (or again) say this key is failing; the signal may carry new counts or messages."""

    signal: Signal


@dataclass(frozen=True)
class HealthyAgain:
    """The workload has been healthy for `healthy_for` (the verdict is HEALTHY), on `current_revision`."""

    current_revision: str


@dataclass(frozen=True)
class NewerRevision:
    """A revision newer than the failed one is now current (someone deployed a fix)."""

    revision: str


@dataclass(frozen=True)
class WorkloadDeleted:
    pass


@dataclass(frozen=True)
class AlertFiring:
    """Alertmanager says this alert fires for the incident's workload (a redelivery changes nothing)."""

    alertname: str


@dataclass(frozen=True)
class AlertResolved:
    """Alertmanager says the alert ended. It ends the incident only when nobody watches the workload
    (`resolves_incident`): a watched one resolves by its health rule, the card just notes the alert's end."""

    alertname: str
    resolves_incident: bool


@dataclass(frozen=True)
class JoinedGroup:
    """The incident is part of a mass failure: its group's summary card speaks for it (`summary` once posted)."""

    group_id: str
    summary: MessageRef | None = None


@dataclass(frozen=True)
class CardPosted:
    card: MessageRef


@dataclass(frozen=True)
class CardRefreshed:
    pass


@dataclass(frozen=True)
class RollbackClicked:
    user: SlackUserId


@dataclass(frozen=True)
class RollbackStarted:
    """The flow created the operation the click asked for (awaiting approval)."""

    operation_id: OperationId


@dataclass(frozen=True)
class RollbackNotStarted:
    """The flow could not create the operation (the target is busy, not allowed…): the reason goes on the card."""

    reason: str


@dataclass(frozen=True)
class OperationFinished:
    operation_id: OperationId
    phase: Phase
    outcome: str | None = None


IncidentEvent = (
    Detected
    | HealthyAgain
    | NewerRevision
    | WorkloadDeleted
    | AlertFiring
    | AlertResolved
    | JoinedGroup
    | CardPosted
    | CardRefreshed
    | RollbackClicked
    | RollbackStarted
    | RollbackNotStarted
    | OperationFinished
    | AutoCountdown
    | AutoSkipped
    | AutoCancelled
    | AutoFired
)
