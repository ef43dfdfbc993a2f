"""The incident flow: sightings from the watchers in, one card per incident out, kept true until it is over.

A watcher of a context this replica holds reports `Sighting`s; `on_sighting` keeps each object's rule memory
(`Observations`, in memory: a new holder rebuilds it from its watcher's relist), asks the pure judge, and turns
the verdict into incident events decided by `bot.core.incidents.advance`. Every write is compare-and-set on
the incident's version; writes caused by a watcher also carry the context lease's fencing token, so a replica
that lost its context (paused, cut off) cannot open or change incidents any more. The effects are applied after
the write: the card (URGENT), edits in place at most once per 10 s (PROGRESS; `sweep` makes the last one),
timeline lines in the card's thread (NORMAL), the rollback request a button click asks for.

Verification of successful rollbacks lives in `bot.flows.verification`; the automatic-rollback policy in
`bot.flows.auto_rollback`, consulted once per incident right before its first card is posted; the card, its
thread and private answers in `bot.flows.incident_cards`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from bot.core.batches import member_outcome
from bot.core.catalog import BackendKind, Catalog, ChannelId, DetectSettings, SlackUserId, Target, TargetName
from bot.core.detected_targets import FoundWorkload, detect_settings_for, find_target, no_button_reason
from bot.core.detection import Health, Observations, Sighting, Signal
from bot.core.effects import TellUser
from bot.core.errors import ConcurrentUpdate, FencedOut, UserError
from bot.core.incidents import (
    Detected,
    HealthyAgain,
    Incident,
    IncidentEvent,
    IncidentId,
    IncidentState,
    IncidentTransition,
    LastGood,
    NewerRevision,
    OperationFinished,
    PostIncidentCard,
    PostInIncidentThread,
    RequestRollback,
    RollbackClicked,
    RollbackNotStarted,
    RollbackStarted,
    UpdateIncidentCard,
    WorkloadDeleted,
    WorkloadRef,
    advance,
    can_reopen,
    incident_key,
    next_refresh_at,
    open_incident,
)
from bot.core.messages import ChatMessage
from bot.core.messages.incidents import incidents_list
from bot.core.operations import Operation, OperationId, Phase
from bot.core.rollouts import RevisionNumber
from bot.core.watch_plan import current_revision, found_in, incident_target, judge_sighting, workload_ref
from bot.flows.incident_cards import AutoPolicy, IncidentCards
from bot.flows.retrying import Sleep, compare_and_set
from bot.flows.revisions import last_good_revision
from bot.flows.verification import Verifications
from bot.ports import Backend, Chat, Clock, ContextFence, IncidentMetrics, IncidentStore, OperationStore

log = logging.getLogger("rollbot.flows.incidents")


class Rollbacks(Protocol):
    """The rollback flow as the incident flow needs it: the normal request path, and bookkeeping."""

    def request_for_incident(
        self, target: Target, to_revision: RevisionNumber, user: SlackUserId, incident: Incident
    ) -> Operation | None: ...

    def record_verification(self, operation_id: OperationId, state: str) -> None: ...


@dataclass
class _Watched:
    sighting: Sighting
    found: FoundWorkload
    settings: DetectSettings
    memory: Observations
    fence: ContextFence
    last_health: Health | None = None
    # When time alone may change its verdict (None: judge it again at every tick while unsettled).
    recheck_at: datetime | None = None


class IncidentFlow:
    """Thread-safe: watcher threads, the tick, the sweeper and Slack listeners call it concurrently."""

    def __init__(
        self,
        *,
        store: IncidentStore,
        operations: OperationStore,
        chat: Chat,
        clock: Clock,
        catalog: Catalog,
        metrics: IncidentMetrics,
        backend_of: Callable[[Target], Backend],
        new_incident_id: Callable[[], IncidentId],
        sleep: Sleep,
        post_cards: Callable[[Callable[[], None]], object] | None = None,
    ) -> None:
        """`post_cards` runs the posting of a new card (at once when None). The app gives it a small pool: a card
        waits for the channel's Slack budget (1 post/s), and the watcher that found the next failure must not
        wait with it."""
        self._store = store
        self._operations = operations
        self._clock = clock
        self._catalog = catalog
        self._metrics = metrics
        self._backend_of = backend_of
        self._new_id = new_incident_id
        self._sleep = sleep
        self._rollbacks: Rollbacks | None = None
        self._summarised: Callable[[Incident, ContextFence | None], bool] = lambda incident, fence: False
        self._auto: AutoPolicy | None = None
        self._mutex = threading.RLock()
        self._watched: dict[str, _Watched] = {}
        self._verifications = Verifications(
            store=store,
            operations=operations,
            chat=chat,
            clock=clock,
            catalog=catalog,
            seen=self._seen,
            rollbacks=lambda: self._rollbacks,
        )
        self._held: dict[str, ContextFence] = {}
        self._cards = IncidentCards(
            store=store,
            chat=chat,
            clock=clock,
            metrics=metrics,
            record=self._write,
            guarded=self._guarded,
            summarised=lambda incident, fence: self._summarised(incident, fence),
            auto=lambda: self._auto,
            post_cards=post_cards,
        )

    def attach(self, rollbacks: Rollbacks, auto: AutoPolicy | None = None) -> None:
        self._rollbacks = rollbacks
        self._auto = auto

    def summarise_mass_failures_with(self, summarised: Callable[[Incident, ContextFence | None], bool]) -> None:
        """Asked right before an incident's card is posted: True when a mass failure's summary speaks for it."""
        self._summarised = summarised

    # --- contexts ------------------------------------------------------------------------------------------------

    def context_taken(self, fence: ContextFence) -> None:
        with self._mutex:
            self._held[fence.lease] = fence

    def context_lost(self, lease: str) -> None:
        """Forget the memory of a context's objects: its next holder rebuilds it from a relist."""
        with self._mutex:
            self._held.pop(lease, None)
            for key in [k for k, w in self._watched.items() if w.fence.lease == lease]:
                del self._watched[key]

    # --- sightings -----------------------------------------------------------------------------------------------

    def on_sighting(self, sighting: Sighting, backend: BackendKind, fence: ContextFence) -> None:
        found = found_in(sighting, backend)
        settings = detect_settings_for(self._catalog, found)
        if settings is None or not settings.is_active:
            return
        workload = workload_ref(found)
        if sighting.deleted:
            with self._mutex:
                self._watched.pop(workload.key, None)
            latest = self._store.find_by_workload(workload.key)
            if latest is not None and latest.state is not IncidentState.RESOLVED:
                self._write(latest.id, WorkloadDeleted(), fence)
            return
        with self._mutex:
            previous = self._watched.get(workload.key)
            memory = previous.memory if previous is not None else Observations()
            self._watched[workload.key] = _Watched(sighting, found, settings, memory, fence)
        self._judge(workload.key)

    def tick(self) -> None:
        """Judge again what is not settled (rules hold for a while), and run pending verifications."""
        with self._mutex:
            now = self._clock.now()
            keys = [key for key, watched in self._watched.items() if _is_due(watched, now)]
        for key in keys:
            self._guarded(lambda key=key: self._judge(key))  # type: ignore[misc]
        self._guarded(self._verifications.run_pending)

    def _judge(self, key: str) -> None:
        now = self._clock.now()
        with self._mutex:
            watched = self._watched.get(key)
            if watched is None:
                return
            verdict = judge_sighting(watched.sighting, now, watched.settings, watched.memory)
            watched.memory = verdict.observations
            watched.last_health = verdict.health
            watched.recheck_at = verdict.recheck_at
        workload = workload_ref(watched.found)
        current = current_revision(watched.sighting)
        latest = self._store.find_by_workload(workload.key)
        is_open = latest is not None and latest.state is not IncidentState.RESOLVED
        if verdict.signal is not None:
            if latest is not None and is_open and latest.revision != verdict.signal.revision:
                self._write(latest.id, NewerRevision(verdict.signal.revision), watched.fence)
            self._on_failing(watched, workload, verdict.signal)
        elif latest is not None and is_open and current is not None:
            if current != latest.revision:
                self._write(latest.id, NewerRevision(current), watched.fence)
            elif verdict.health is Health.HEALTHY:
                self._write(latest.id, HealthyAgain(current), watched.fence)
        if latest is not None and is_open and verdict.health is Health.HEALTHY and latest.is_ecs_rolling_back:
            self._write(latest.id, HealthyAgain(current or latest.revision), watched.fence)

    def _on_failing(self, watched: _Watched, workload: WorkloadRef, signal: Signal) -> None:
        now = self._clock.now()
        existing = self._store.find_by_key(incident_key(workload, signal.revision))
        resolved_at = existing.resolved_at if existing is not None else None
        if resolved_at is not None and watched.sighting.seen_at <= resolved_at:
            return  # judged again on what was seen before it ended (a rollback the watcher has not seen yet)
        if existing is not None and (existing.state is not IncidentState.RESOLVED or can_reopen(existing, now)):
            self._write(existing.id, Detected(signal), watched.fence)
            return
        target_name = find_target(self._catalog, watched.found)
        refusal = no_button_reason(self._catalog, watched.found)
        assert watched.settings.channel is not None  # is_active
        transition = open_incident(
            self._new_id(),
            workload,
            signal,
            watched.settings.channel,
            now,
            target=target_name,
            last_good=None
            if refusal
            else last_good_revision(self._backend_of, self._target_of(target_name, workload), signal),
            no_button_reason=refusal,
        )
        try:
            self._store.create(transition.incident, fence=watched.fence)
        except ConcurrentUpdate:  # someone opened it first (a click, another replica before a handover)
            again = self._store.find_by_key(transition.incident.key)
            if again is not None:
                self._write(again.id, Detected(signal), watched.fence)
            return
        log.info("incident opened", extra={"incident_id": transition.incident.id, "key": transition.incident.key})
        self._apply(transition, watched.fence)

    # --- reports from Alertmanager and pipelines (their decisions: bot/flows/intake.py) ------------------------

    def apply_event(self, incident_id: IncidentId, event: IncidentEvent) -> Incident | None:
        """An event about an incident from outside the watch (no context lease to fence with)."""
        return self._write(incident_id, event, None)

    def open_reported(
        self, workload: WorkloadRef, target: TargetName | None, signal: Signal, channel: ChannelId, **origin: Any
    ) -> Incident | None:
        """Open a card for a failure someone else reported (`origin`: source, link, alerts_firing)."""
        found = FoundWorkload(**workload.model_dump())
        refusal = no_button_reason(self._catalog, found)
        last_good = None if refusal else self._last_good(target, workload, signal)
        transition = open_incident(
            self._new_id(),
            workload,
            signal,
            channel,
            self._clock.now(),
            target=target,
            last_good=last_good,
            no_button_reason=refusal,
            **origin,
        )
        try:
            self._store.create(transition.incident)
        except ConcurrentUpdate:  # the watch (or another replica's webhook) opened it first: join that one
            return self._store.find_by_key(transition.incident.key)
        log.info("incident reported", extra={"incident_id": transition.incident.id, "key": transition.incident.key})
        self._apply(transition, None)
        return transition.incident

    # --- people and operations -------------------------------------------------------------------------------

    def on_click(self, incident_id: IncidentId, user: SlackUserId) -> None:
        """The card's button: one request for however many clicks; the others are told which operation exists."""
        incident = self._store.get(incident_id)
        if incident is None:
            return
        self._write(incident_id, RollbackClicked(user), None)

    def on_operation_finished(self, operation: Operation) -> None:
        """Every operation that reaches a terminal phase, on whichever replica finished it."""
        if operation.incident_id is not None:
            event = OperationFinished(operation.id, operation.phase, operation.outcome)
            self._write(IncidentId(operation.incident_id), event, None)
        if operation.phase is Phase.SUCCEEDED and not operation.is_batch and not operation.is_resume_sync:
            # A resume-sync changed the reconciler, not the workload: there is no rollback to verify.
            self._verifications.start(operation)

    def listing(self) -> ChatMessage:
        return incidents_list(self._store.live(), self._clock.now())

    # --- the sweep: card edits not allowed earlier, cards never posted, operations finished unseen ------------------

    def sweep(self) -> int:
        now = self._clock.now()
        done = 0
        with self._mutex:
            held = dict(self._held)
        for incident in self._store.live():
            fence = held.get(_lease_of(incident.workload))
            if incident.state is IncidentState.ROLLING_BACK and incident.operation_id is not None:
                operation = self._operations.get(incident.operation_id)
                if operation is None or operation.phase.is_terminal:
                    # A batch (a mass failure's) ended for this incident as its own member did.
                    name = self._target_of(incident.target, incident.workload).name
                    phase, outcome = member_outcome(operation, name) if operation else (Phase.FAILED, None)
                    event = OperationFinished(incident.operation_id, phase, outcome)
                    self._guarded(lambda i=incident, e=event: self._write(i.id, e, None))  # type: ignore[misc]
                    done += 1
            if fence is None:
                continue  # the context's holder keeps its cards
            if incident.card is None and incident.state is not IncidentState.RESOLVED:
                self._guarded(lambda i=incident, f=fence: self._cards.post_new(i, f))  # type: ignore[misc]
                done += 1
            due = next_refresh_at(incident)
            if due is not None and due <= now:
                self._guarded(lambda i=incident: self._cards.refresh(i.id))  # type: ignore[misc]
                done += 1
        return done

    # --- writing and applying ----------------------------------------------------------------------------------

    def _write(self, incident_id: IncidentId, event: IncidentEvent, fence: ContextFence | None) -> Incident | None:
        decided: tuple[Incident, IncidentTransition] | None = None
        for attempt in compare_and_set(self._sleep):
            with attempt:
                current = self._store.get(incident_id)
                if current is None:
                    return None
                transition = advance(current, event, self._clock.now())
                if transition.changed:
                    self._store.replace(transition.incident, current.version, fence=fence)
                decided = (current, transition)
        assert decided is not None  # tenacity re-raises the last error otherwise
        before, transition = decided
        if transition.changed:
            self._count(before, transition.incident)
        self._apply(transition, fence)
        return transition.incident

    def _apply(self, transition: IncidentTransition, fence: ContextFence | None) -> None:
        incident = transition.incident
        for effect in transition.effects:
            match effect:
                case PostIncidentCard():
                    self._cards.post_new(incident, fence)
                case UpdateIncidentCard():
                    self._cards.refresh(incident.id)
                case PostInIncidentThread() if incident.card is not None:
                    self._cards.post_in_thread(incident, effect.text)
                case RequestRollback():
                    self._request_rollback(incident, effect)
                case TellUser():
                    self._cards.tell(incident, effect.user, effect.text)

    def _request_rollback(self, incident: Incident, effect: RequestRollback) -> None:
        reason: str | None = None
        operation: Operation | None = None
        try:
            if self._rollbacks is None:
                raise UserError("rollbacks are not wired in this process")
            target = self._target_of(incident.target, incident.workload)
            operation = self._rollbacks.request_for_incident(target, effect.to_revision, effect.requester, incident)
        except UserError as exc:
            reason = str(exc)
        if operation is not None:
            self._write(incident.id, RollbackStarted(operation.id), None)
        else:
            self._write(incident.id, RollbackNotStarted(reason or "the request could not be posted"), None)

    def _last_good(self, name: TargetName | None, workload: WorkloadRef, signal: Signal) -> LastGood | None:
        return last_good_revision(self._backend_of, self._target_of(name, workload), signal)

    def _target_of(self, name: TargetName | None, workload: WorkloadRef) -> Target:
        return incident_target(self._catalog, name, workload)

    def _seen(self, workload_key: str) -> tuple[Sighting, DetectSettings] | None:
        """The last sighting of a workload this replica watches, with its detection settings."""
        with self._mutex:
            watched = self._watched.get(workload_key)
            return None if watched is None else (watched.sighting, watched.settings)

    # --- small things ------------------------------------------------------------------------------------------

    def _count(self, before: Incident, after: Incident) -> None:
        if after.state is IncidentState.RESOLVED and before.state is not IncidentState.RESOLVED:
            resolution = after.resolution.value if after.resolution else "unknown"
            self._metrics.incident_resolved(after.workload.backend.value, resolution)

    def _guarded(self, work: Callable[[], object]) -> None:
        try:
            work()
        except FencedOut:
            log.info("lost a watch lease while acting on it; its new holder takes over")
        except Exception:  # one object's trouble must not stop the others
            log.exception("incident work failed")


def _is_due(watched: _Watched, now: datetime) -> bool:
    """Unsettled, and due: with thousands of workloads watched, the tick judges only those whose holds mature."""
    if watched.last_health in (Health.HEALTHY, Health.IGNORED):
        return False
    return watched.recheck_at is None or watched.recheck_at <= now


def _lease_of(workload: WorkloadRef) -> str:
    return f"{workload.backend.value}:{workload.location or 'default'}"


__all__ = ["IncidentFlow", "Rollbacks"]
