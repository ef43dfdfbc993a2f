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

This module is the lifecycle only: the record is `bot.core.incident_record`, its parts `bot.core.incident_parts`,
the events `bot.core.incident_events`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from bot.core.catalog import ChannelId, SlackUserId, TargetName
from bot.core.detection import Signal
from bot.core.effects import TellUser
from bot.core.incident_auto import (
    POLICY_REQUESTER,
    AutoCancelled,
    AutoCountdown,
    AutoFired,
    AutoRollback,
    AutoSkipped,
    AutoState,
    auto_line,
)

# The events live in their own module; callers keep importing them from here (re-exported).
from bot.core.incident_events import (
    AlertFiring,
    AlertResolved,
    CardPosted,
    CardRefreshed,
    Detected,
    HealthyAgain,
    IncidentEvent,
    JoinedGroup,
    NewerRevision,
    OperationFinished,
    RollbackClicked,
    RollbackNotStarted,
    RollbackStarted,
    WorkloadDeleted,
)
from bot.core.incident_parts import (
    IncidentSource,
    IncidentState,
    LastGood,
    Resolution,
    TimelineEntry,
    WorkloadRef,
    incident_key,
)

# The record lives in its own module too; callers keep importing `Incident` and `IncidentId` from here.
from bot.core.incident_record import Incident, IncidentId
from bot.core.operations import Phase
from bot.core.rollouts import RevisionNumber

# The same key failing again this soon reopens the same card instead of posting a new one (flapping is one story).
REOPEN_WITHIN: Final = timedelta(minutes=30)
# At most one card edit per this interval (detection.md §6.6); Slack rate-limits chat.update per channel anyway.
CARD_REFRESH_INTERVAL: Final = timedelta(seconds=10)
# The timeline keeps the newest entries only; the thread has them all.
MAX_TIMELINE: Final = 50


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
            posted = _next(incident, now, card=event.card, card_refreshed_at=now)
            # The policy decided before the card existed: its thread starts with that decision and the signal's source.
            said = (
                (PostInIncidentThread(f"{incident.source.value}: {auto_line(incident.auto)}"),) if incident.auto else ()
            )
            return IncidentTransition(posted, said, changed=True)
        case CardRefreshed():
            if not incident.is_card_stale:
                return IncidentTransition(incident)
            return IncidentTransition(_next(incident, now, is_card_stale=False, card_refreshed_at=now), changed=True)
        case Detected():
            return _on_detected(incident, event.signal, now)
        case RollbackClicked():
            return _on_click(incident, event.user, now)
        case JoinedGroup():
            return _on_joined_group(incident, event, now)
        case AutoCountdown() | AutoSkipped() | AutoCancelled() | AutoFired():
            return _on_auto(incident, event, now)
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
                line += f" by {_who(incident.rollback_requested_by)}"
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
            group_id=None,  # failing again: placed again (its group if still unresolved, else its own card…)
            group_card=None,
        )
        return _changed(new, f"failing again: {signal.reason}", now)
    old = incident.signal
    if signal == old.model_copy(update={"since": signal.since}) and signal.since >= old.since:
        return IncidentTransition(incident)
    # Keep the first sighting: the card says how long it has been failing, not since the last observation.
    signal = signal.model_copy(update={"since": min(old.since, signal.since)})
    new = _next(incident, now, signal=signal, is_card_stale=_has_card(incident))
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


def _on_joined_group(incident: Incident, event: JoinedGroup, now: datetime) -> IncidentTransition:
    summary = event.summary or incident.group_card
    if incident.group_id == event.group_id and incident.group_card == summary:
        return IncidentTransition(incident)
    updates: dict[str, object] = {"group_id": event.group_id, "group_card": summary}
    if incident.auto is not None and incident.auto.state is AutoState.COUNTING:
        # A mass failure's summary asks humans: a countdown started before the group formed never fires.
        why = f"part of mass failure `{event.group_id}`; roll back from its summary card"
        updates["auto"] = AutoRollback(state=AutoState.SKIPPED, decided_at=now, why=why)
    new = _next(incident, now, **updates)
    if summary is None:  # grouped at once (no button, no automatic rollback); the thread hears once it can link
        return IncidentTransition(
            new.model_copy(update={"is_card_stale": _has_card(new)}), (UpdateIncidentCard(),), True
        )
    return _changed(new, f"part of mass failure `{event.group_id}`: see its summary card", now)


def _on_click(incident: Incident, user: SlackUserId, now: datetime) -> IncidentTransition:
    if incident.state is IncidentState.RESOLVED:
        return IncidentTransition(incident, (TellUser(user, "This incident is over; no rollback needed."),))
    if incident.is_grouped:
        text = "This incident is part of a mass failure: roll them all back from its summary card."
        return IncidentTransition(incident, (TellUser(user, text),))
    if incident.operation_id is not None:
        text = f"A rollback is already requested: `{incident.operation_id}` — approve it in its thread."
        return IncidentTransition(incident, (TellUser(user, text),))
    if incident.rollback_requested_by is not None:
        text = f"{_who(incident.rollback_requested_by)} already asked for this rollback; it is being requested."
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


def _on_auto(
    incident: Incident, event: AutoCountdown | AutoSkipped | AutoCancelled | AutoFired, now: datetime
) -> IncidentTransition:
    auto, is_open = incident.auto, incident.state is IncidentState.OPEN
    counting = auto is not None and auto.state is AutoState.COUNTING
    match event:
        case AutoCountdown() if auto is None and is_open:
            auto = AutoRollback(
                state=AutoState.COUNTING, decided_at=now, due_at=event.due_at, approvals=event.approvals
            )
            auto = auto.model_copy(update={"to_revision": event.to_revision})
        case AutoSkipped() if auto is None or counting:
            auto = AutoRollback(state=AutoState.SKIPPED, decided_at=now, why=event.why)
        case AutoCancelled() if auto is not None and counting and event.is_approver:
            auto = auto.model_copy(update={"state": AutoState.CANCELLED, "cancelled_by": event.user, "decided_at": now})
        case AutoCancelled():
            return IncidentTransition(incident, (TellUser(event.user, _no_cancel_text(incident, event)),))
        case AutoFired() if auto is not None and counting and is_open and incident.rollback_requested_by is None:
            auto = auto.model_copy(
                update={"state": AutoState.STARTED, "operation_id": event.operation_id, "decided_at": now}
            )
            new = _next(incident, now, auto=auto, rollback_requested_by=POLICY_REQUESTER)
            return _changed(new, auto_line(auto), now)
        case _:
            return IncidentTransition(incident)
    return _changed(_next(incident, now, auto=auto), auto_line(auto), now)


def _who(user: SlackUserId) -> str:
    return "the automatic rollback policy" if user == POLICY_REQUESTER else f"<@{user}>"


def _no_cancel_text(incident: Incident, event: AutoCancelled) -> str:
    auto = incident.auto
    if auto is None:
        return "This incident has no automatic rollback to cancel."
    if auto.state is AutoState.COUNTING:  # not an approver
        return f"Only approvers of {incident.target_label} can cancel its automatic rollback."
    if auto.state is AutoState.CANCELLED:
        return f"<@{auto.cancelled_by}> already cancelled this automatic rollback."
    if auto.state is AutoState.STARTED:
        return f"Too late: the automatic rollback already started as `{auto.operation_id}`."
    return f"Nothing to cancel: the automatic rollback was skipped ({auto.why})."


def _resolve(incident: Incident, resolution: Resolution, now: datetime, line: str | None = None) -> IncidentTransition:
    new = _next(incident, now, state=IncidentState.RESOLVED, resolution=resolution, resolved_at=now)
    return _changed(new, line or f"resolved: {resolution.value.replace('_', ' ')}", now)


def _no_button_text(incident: Incident) -> str | None:
    if incident.is_ecs_rolling_back:
        return "ECS is already rolling this service back by itself."
    return incident.no_button_reason


def _next(incident: Incident, now: datetime, **update: object) -> Incident:
    if update.get("state") is IncidentState.RESOLVED and incident.auto and incident.auto.state is AutoState.COUNTING:
        # An incident that ends stops its countdown: nothing is left to roll back.
        update["auto"] = AutoRollback(state=AutoState.SKIPPED, decided_at=now, why="the incident ended first")
    return incident.model_copy(update={**update, "version": incident.version + 1, "updated_at": now})


def _has_card(incident: Incident) -> bool:
    """Whether a change leaves a card to edit: a grouped incident that never posted one never will."""
    return incident.card is not None or not incident.is_grouped


def _changed(incident: Incident, line: str, now: datetime) -> IncidentTransition:
    timeline = (*incident.timeline, TimelineEntry(at=now, text=line))[-MAX_TIMELINE:]
    new = incident.model_copy(update={"timeline": timeline, "is_card_stale": _has_card(incident)})
    return IncidentTransition(new, (UpdateIncidentCard(), PostInIncidentThread(line)), True)
