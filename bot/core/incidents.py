"""An incident: one failed rollout of one workload revision, from the first clear signal to how it ended.

    OPEN ──(RollbackStarted: an operation requested from the card)──▶ ROLLING_BACK ──(SUCCEEDED)──▶ RESOLVED
     │  ▲                                                                 │                   rolled_back
     │  └──────────────(the operation failed, was rejected, expired…: the card says why)──────┘
     ├──(healthy for healthy_for on the failed revision)──────────────▶ RESOLVED recovered
     ├──(healthy after ECS's circuit breaker rolled back by itself)───▶ RESOLVED rolled_back_by_ecs
     ├──(a newer revision than the failed one is current)─────────────▶ RESOLVED superseded
     └──(the workload was deleted)─────────────────────────────────────▶ RESOLVED deleted
    RESOLVED ──(the same key fails again within 30 minutes)──▶ OPEN   (same incident, same card)

The key is backend + cluster context (or AWS region) + kind + namespace + name + the failed revision
(detection.md §6.1): one card per key, its channel and `ts` stored with the record, never only in memory.
`advance(incident, event, now)` returns an `IncidentTransition` (the next record with `version + 1`, the
effects as data, whether anything changed), exactly like `lifecycle.advance` does for operations: it reads no
clock and talks to nobody. The store compares-and-sets on `version`, so of two replicas (or two clicks) only
one transition wins; that is how two clicks on the button make one rollback request.

Card edits are rate-limited: a transition that changes what the card shows marks it stale and asks for an
update; the flow applies it only when `should_refresh` allows (at most once per 10 s) and reports it with
`CardRefreshed`. Notable events also go to the card's thread, and into a bounded `timeline`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final, NewType

from pydantic import BaseModel, ConfigDict

from bot.core.catalog import BackendKind, ChannelId, SlackUserId, TargetName, WorkloadKind
from bot.core.detection import Signal
from bot.core.effects import TellUser

# The events live in their own module; callers keep importing them from here (re-exported).
from bot.core.incident_events import (
    AlertFiring,
    AlertResolved,
    CardPosted,
    CardRefreshed,
    Detected,
    HealthyAgain,
    IncidentEvent,
    NewerRevision,
    OperationFinished,
    RollbackClicked,
    RollbackNotStarted,
    RollbackStarted,
    WorkloadDeleted,
)
from bot.core.operations import MessageRef, OperationId, Phase
from bot.core.rollouts import ContainerImage, RevisionNumber

IncidentId = NewType("IncidentId", str)

# The same key failing again this soon reopens the same card instead of posting a new one (flapping is one story).
REOPEN_WITHIN: Final = timedelta(minutes=30)
# At most one card edit per this interval (detection.md §6.6); Slack rate-limits chat.update per channel anyway.
CARD_REFRESH_INTERVAL: Final = timedelta(seconds=10)
# The timeline keeps the newest entries only; the thread has them all.
MAX_TIMELINE: Final = 50
# The Slack message metadata event type of incident cards, fixed by contract.
INCIDENT_EVENT_TYPE: Final = "rollbot_incident"
# Short kind prefixes as kubectl spells them, for targets found by a `watch` scope (`deploy/web -n shop`).
_KIND_PREFIXES: Final = {
    WorkloadKind.DEPLOYMENT.value: "deploy",
    WorkloadKind.DAEMONSET.value: "ds",
    WorkloadKind.STATEFULSET.value: "sts",
}
HELM_RELEASE_KIND: Final = "HelmRelease"
ECS_SERVICE_KIND: Final = "EcsService"


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IncidentState(StrEnum):
    OPEN = "open"
    ROLLING_BACK = "rolling_back"
    RESOLVED = "resolved"


class IncidentSource(StrEnum):
    """Who reported the failure (the card's metadata `source`; an automatic-rollback policy may select on it)."""

    WATCH = "watch"
    ALERTMANAGER = "alertmanager"
    PIPELINE = "pipeline"


class Resolution(StrEnum):
    ROLLED_BACK = "rolled_back"
    ROLLED_BACK_BY_ECS = "rolled_back_by_ecs"
    SUPERSEDED = "superseded"
    RECOVERED = "recovered"
    DELETED = "deleted"


class WorkloadRef(_Frozen):
    """What failed and where: a Kubernetes workload, a Helm release or an ECS service (cluster as namespace)."""

    backend: BackendKind
    location: str | None  # the kube context, or the AWS region
    kind: str  # Deployment | DaemonSet | StatefulSet | HelmRelease | EcsService
    namespace: str
    name: str

    @property
    def key(self) -> str:
        return f"{self.backend.value}:{self.location or ''}:{self.kind}:{self.namespace}/{self.name}"

    @property
    def display(self) -> str:
        """How people would type it: `deploy/web -n shop` (the ad-hoc target syntax), `helm/web -n shop`…"""
        if self.kind in _KIND_PREFIXES:
            return f"{_KIND_PREFIXES[self.kind]}/{self.name} -n {self.namespace}"
        if self.backend is BackendKind.HELM:
            return f"helm/{self.name} -n {self.namespace}"
        return f"ecs/{self.namespace}/{self.name}"


def incident_key(workload: WorkloadRef, revision: str) -> str:
    return f"{workload.key}@{revision}"


class TimelineEntry(_Frozen):
    at: datetime
    text: str


class LastGood(_Frozen):
    """The revision a rollback would return to, as the backend's history tells it."""

    revision: RevisionNumber
    images: tuple[ContainerImage, ...] = ()


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
        )

    @property
    def lasted(self) -> timedelta | None:
        return None if self.resolved_at is None else self.resolved_at - self.opened_at

    def metadata_payload(self) -> dict[str, str | int | None]:
        """The flat `rollbot_incident` metadata every version of the card carries (Slack allows flat values only)."""
        return {
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
        }


# --- effects ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PostIncidentCard:
    """Post the card in `incident.channel`; the flow then records where with `CardPosted`."""


@dataclass(frozen=True)
class UpdateIncidentCard:
    """Re-render the card in place, when `should_refresh` allows (else it stays stale for the next sweep)."""


@dataclass(frozen=True)
class PostInIncidentThread:
    text: str


@dataclass(frozen=True)
class RequestRollback:
    """Start the normal approval flow for the incident's target, with the clicker as requester."""

    incident_id: IncidentId
    requester: SlackUserId
    to_revision: RevisionNumber


IncidentEffect = PostIncidentCard | UpdateIncidentCard | PostInIncidentThread | RequestRollback | TellUser


@dataclass(frozen=True)
class IncidentTransition:
    incident: Incident
    effects: tuple[IncidentEffect, ...] = ()
    changed: bool = False


# --- the lifecycle ---------------------------------------------------------------------------------------------


def open_incident(
    incident_id: IncidentId,
    workload: WorkloadRef,
    signal: Signal,
    channel: ChannelId,
    now: datetime,
    *,
    target: TargetName | None = None,
    last_good: LastGood | None = None,
    no_button_reason: str | None = None,
    source: IncidentSource = IncidentSource.WATCH,
    link: str | None = None,
    alerts_firing: tuple[str, ...] = (),
) -> IncidentTransition:
    """A new incident for a key nobody has a card for (or whose card is too old to reopen)."""
    line = f"{signal.reason} on revision {signal.revision}"
    incident = Incident(
        id=incident_id,
        key=incident_key(workload, signal.revision),
        workload=workload,
        target=target,
        signal=signal,
        channel=channel,
        opened_at=now,
        updated_at=now,
        last_good=last_good,
        no_button_reason=no_button_reason,
        card_refreshed_at=now,
        timeline=(TimelineEntry(at=now, text=line),),
        source=source,
        link=link,
        alerts_firing=alerts_firing,
    )
    return IncidentTransition(incident, (PostIncidentCard(),), True)


def can_reopen(incident: Incident, now: datetime) -> bool:
    """A resolved incident whose key fails again this soon reopens (same card); otherwise a new one opens."""
    return incident.state is IncidentState.RESOLVED and (
        incident.resolved_at is None or now - incident.resolved_at < REOPEN_WITHIN
    )


def should_refresh(incident: Incident, now: datetime) -> bool:
    """Whether the card may be edited now: it has changes, and its last edit is at least 10 s old."""
    if not incident.is_card_stale or incident.card is None:
        return False
    return incident.card_refreshed_at is None or now - incident.card_refreshed_at >= CARD_REFRESH_INTERVAL


def next_refresh_at(incident: Incident) -> datetime | None:
    """When a stale card may next be edited (for the flow's sweep); None when nothing is pending."""
    if not incident.is_card_stale:
        return None
    if incident.card_refreshed_at is None:
        return incident.updated_at
    return incident.card_refreshed_at + CARD_REFRESH_INTERVAL


def advance(incident: Incident, event: IncidentEvent, now: datetime) -> IncidentTransition:
    """Decide what `event` means for `incident` at `now`. Pure; never raises for a well-formed event."""
    match event:
        case CardPosted():
            if incident.card == event.card:
                return IncidentTransition(incident)
            return IncidentTransition(_next(incident, now, card=event.card, card_refreshed_at=now), changed=True)
        case CardRefreshed():
            if not incident.is_card_stale:
                return IncidentTransition(incident)
            return IncidentTransition(_next(incident, now, is_card_stale=False, card_refreshed_at=now), changed=True)
        case Detected():
            return _on_detected(incident, event.signal, now)
        case RollbackClicked():
            return _on_click(incident, event.user, now)
    if incident.state is IncidentState.RESOLVED:
        return IncidentTransition(incident)
    match event:
        case HealthyAgain():
            if incident.is_ecs_rolling_back:
                return _resolve(incident, Resolution.ROLLED_BACK_BY_ECS, now)
            if incident.state is IncidentState.ROLLING_BACK:
                return IncidentTransition(incident)  # the operation's outcome says how it ended
            if event.current_revision == incident.revision:
                return _resolve(incident, Resolution.RECOVERED, now)
            return _resolve(incident, Resolution.SUPERSEDED, now, f"superseded by revision {event.current_revision}")
        case NewerRevision():
            if incident.state is IncidentState.ROLLING_BACK or incident.is_ecs_rolling_back:
                return IncidentTransition(incident)  # that newer revision is the rollback itself
            if event.revision == incident.revision:
                return IncidentTransition(incident)
            return _resolve(incident, Resolution.SUPERSEDED, now, f"superseded by revision {event.revision}")
        case WorkloadDeleted():
            return _resolve(incident, Resolution.DELETED, now)
        case AlertFiring():
            if event.alertname in incident.alerts_firing:
                return IncidentTransition(incident)
            new = _next(incident, now, alerts_firing=(*incident.alerts_firing, event.alertname))
            return _changed(new, f"alert {event.alertname} firing", now)
        case AlertResolved():
            return _on_alert_resolved(incident, event, now)
        case RollbackStarted():
            if incident.operation_id == event.operation_id:
                return IncidentTransition(incident)
            line = f"rollback requested as `{event.operation_id}`"
            if incident.rollback_requested_by is not None:
                line += f" by <@{incident.rollback_requested_by}>"
            new = _next(incident, now, state=IncidentState.ROLLING_BACK, operation_id=event.operation_id, note=None)
            return _changed(new, line, now)
        case RollbackNotStarted():
            if incident.state is not IncidentState.OPEN:
                return IncidentTransition(incident)
            new = _next(incident, now, rollback_requested_by=None, note=event.reason)
            return _changed(new, f"rollback not started: {event.reason}", now)
        case OperationFinished():
            return _on_operation_finished(incident, event, now)
    return IncidentTransition(incident)  # pragma: no cover - every event is matched above


def _on_detected(incident: Incident, signal: Signal, now: datetime) -> IncidentTransition:
    if incident.state is IncidentState.RESOLVED:
        if not can_reopen(incident, now):
            return IncidentTransition(incident)  # too old: the flow opens a new incident
        new = _next(
            incident,
            now,
            state=IncidentState.OPEN,
            resolution=None,
            resolved_at=None,
            signal=signal,
            rollback_requested_by=None,
            operation_id=None,
            reopened=incident.reopened + 1,
        )
        return _changed(new, f"failing again: {signal.reason}", now)
    old = incident.signal
    if signal == old.model_copy(update={"since": signal.since}) and signal.since >= old.since:
        return IncidentTransition(incident)
    # Keep the first sighting: the card says how long it has been failing, not since the last observation.
    signal = signal.model_copy(update={"since": min(old.since, signal.since)})
    new = _next(incident, now, signal=signal, is_card_stale=True)
    if signal.is_rolling_back_by_itself and not old.is_rolling_back_by_itself:
        return _changed(new, "ECS is rolling it back by itself", now)
    if signal.reason != old.reason:
        return _changed(new, f"now {signal.reason}", now)
    return IncidentTransition(new, (UpdateIncidentCard(),), True)


def _on_alert_resolved(incident: Incident, event: AlertResolved, now: datetime) -> IncidentTransition:
    if event.alertname not in incident.alerts_firing:
        return IncidentTransition(incident)  # a redelivery, or an alert this incident never heard of
    still_firing = tuple(name for name in incident.alerts_firing if name != event.alertname)
    line = f"alert {event.alertname} resolved"
    if event.resolves_incident and not still_firing and incident.state is IncidentState.OPEN:
        ended = {"state": IncidentState.RESOLVED, "resolution": Resolution.RECOVERED, "resolved_at": now}
        return _changed(_next(incident, now, alerts_firing=still_firing, **ended), f"resolved: {line}", now)
    if not event.resolves_incident:
        line += " (the incident ends when the workload is healthy again)"
    return _changed(_next(incident, now, alerts_firing=still_firing), line, now)


def _on_click(incident: Incident, user: SlackUserId, now: datetime) -> IncidentTransition:
    if incident.state is IncidentState.RESOLVED:
        return IncidentTransition(incident, (TellUser(user, "This incident is over; no rollback needed."),))
    if incident.operation_id is not None:
        text = f"A rollback is already requested: `{incident.operation_id}` — approve it in its thread."
        return IncidentTransition(incident, (TellUser(user, text),))
    if incident.rollback_requested_by is not None:
        text = f"<@{incident.rollback_requested_by}> already asked for this rollback; it is being requested."
        return IncidentTransition(incident, (TellUser(user, text),))
    refusal = _no_button_text(incident)
    if refusal is not None or incident.last_good is None:
        return IncidentTransition(incident, (TellUser(user, refusal or "No known-good revision to roll back to."),))
    new = _next(incident, now, rollback_requested_by=user, is_card_stale=True)
    effects = (RequestRollback(incident.id, user, incident.last_good.revision), UpdateIncidentCard())
    return IncidentTransition(new, effects, True)


def _on_operation_finished(incident: Incident, event: OperationFinished, now: datetime) -> IncidentTransition:
    if incident.operation_id != event.operation_id or not event.phase.is_terminal:
        return IncidentTransition(incident)
    if event.phase is Phase.SUCCEEDED:
        return _resolve(incident, Resolution.ROLLED_BACK, now, f"rolled back by `{event.operation_id}`")
    note = f"`{event.operation_id}` {event.phase.value}" + (f": {event.outcome}" if event.outcome else "")
    new = _next(incident, now, state=IncidentState.OPEN, operation_id=None, rollback_requested_by=None, note=note)
    return _changed(new, note, now)


def _resolve(incident: Incident, resolution: Resolution, now: datetime, line: str | None = None) -> IncidentTransition:
    new = _next(incident, now, state=IncidentState.RESOLVED, resolution=resolution, resolved_at=now)
    return _changed(new, line or f"resolved: {resolution.value.replace('_', ' ')}", now)


def _no_button_text(incident: Incident) -> str | None:
    if incident.is_ecs_rolling_back:
        return "ECS is already rolling this service back by itself."
    return incident.no_button_reason


def _next(incident: Incident, now: datetime, **update: object) -> Incident:
    return incident.model_copy(update={**update, "version": incident.version + 1, "updated_at": now})


def _changed(incident: Incident, line: str, now: datetime) -> IncidentTransition:
    timeline = (*incident.timeline, TimelineEntry(at=now, text=line))[-MAX_TIMELINE:]
    new = incident.model_copy(update={"timeline": timeline, "is_card_stale": True})
    return IncidentTransition(new, (UpdateIncidentCard(), PostInIncidentThread(line)), True)
