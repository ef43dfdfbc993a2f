"""The automatic-rollback flow: a countdown on the incident card, Cancel, and a rollback that fires once.

`consider(incident)` runs once per incident, right before its card is first posted: it gathers the facts
(`bot.core.auto_policy.AutoFacts`) and records the policy's decision on the incident (`AutoCountdown` or
`AutoSkipped`), so the first version of the card already shows the countdown and its Cancel button.

`sweep()` runs on every replica with the sweeper. A due countdown is decided again on fresh facts; when it
fires, the start is first counted in its context's ledger (compare-and-set on the ledger: the breaker's count is
decided on what every replica recorded), then the incident goes COUNTING → STARTED (compare-and-set on the
incident: of two replicas, one wins), and only the winner requests the rollback, under the operation id it wrote.
A replica that died in between leaves a STARTED incident without its operation; the next sweep requests it again
under that id (the request is idempotent per id). A start counted for an incident someone cancelled at that
very moment is taken back.

Every decision goes to the audit stream (with the signal's source and the reason) and, through the incident's
timeline, to the card's thread.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Final, Protocol

from bot.core.auto_policy import (
    AutoFacts,
    AutoLedger,
    AutoStart,
    CountDown,
    Fire,
    Skip,
    context_of,
    decide_on_due,
    decide_on_open,
    forget_start,
    is_selected,
    record_start,
    resume,
)
from bot.core.catalog import BackendKind, Catalog, SlackUserId, Target
from bot.core.errors import BotError, UserError
from bot.core.incident_auto import POLICY_REQUESTER, AutoCancelled, AutoCountdown, AutoFired, AutoSkipped, AutoState
from bot.core.incidents import Incident, IncidentEvent, IncidentId, IncidentState, RollbackNotStarted, RollbackStarted
from bot.core.messages import ChatMessage
from bot.core.messages.auto import auto_status, breaker_resumed, not_allowed_to_resume
from bot.core.operations import Operation, OperationId
from bot.core.rollouts import RevisionNumber
from bot.core.watch_plan import target_workload
from bot.flows.retrying import Sleep, compare_and_set
from bot.ports import AutoLedgers, Backend, Chat, Clock, IncidentStore, OperationStore

log = logging.getLogger("rollbot.flows.auto")

# A STARTED incident whose operation is still unknown this long after the start was left by a replica that died
# (long enough for a live one to post its request message through Slack's budget first).
UNFINISHED_START_GRACE: Final = timedelta(seconds=60)
# helm's description of a revision `helm rollback` made.
_HELM_ROLLBACK_DESCRIPTION: Final = "Rollback to"


class IncidentEvents(Protocol):
    def apply_event(self, incident_id: IncidentId, event: IncidentEvent) -> Incident | None: ...


class AutoRequests(Protocol):
    """The rollback flow as the policy needs it: an ordinary operation whose requester is the policy."""

    def request_automatic(
        self, target: Target, to_revision: RevisionNumber, incident: Incident, operation_id: OperationId, approvals: int
    ) -> Operation | None: ...


class AutoRollbackFlow:
    """Thread-safe: it keeps no state of its own between calls; Redis holds it all."""

    def __init__(
        self,
        *,
        store: IncidentStore,
        operations: OperationStore,
        ledgers: AutoLedgers,
        chat: Chat,
        clock: Clock,
        catalog: Catalog,
        backend_of: Callable[[Target], Backend],
        new_operation_id: Callable[[], OperationId],
        sleep: Sleep,
        command_name: str = "/rollback",
    ) -> None:
        self._store = store
        self._operations = operations
        self._ledgers = ledgers
        self._chat = chat
        self._clock = clock
        self._catalog = catalog
        self._backend_of = backend_of
        self._new_operation_id = new_operation_id
        self._sleep = sleep
        self._command = command_name
        self._incidents: IncidentEvents | None = None
        self._requests: AutoRequests | None = None

    def attach(self, incidents: IncidentEvents, requests: AutoRequests) -> None:
        self._incidents = incidents
        self._requests = requests

    # --- an incident opens -------------------------------------------------------------------------------------

    def consider(self, incident: Incident) -> Incident:
        """Record the policy's decision on a new incident (before its card is posted); returns it as stored.

        Never keeps the card from being posted: when the decision cannot be made (Redis or the backend away),
        the incident gets a plain card, which is the safe side of an automatic rollback.
        """
        try:
            return self._consider(incident)
        except Exception:
            log.exception(
                "the automatic-rollback policy could not decide; a plain card", extra={"incident_id": incident.id}
            )
            return incident

    def _consider(self, incident: Incident) -> Incident:
        if incident.auto is not None or incident.state is not IncidentState.OPEN or self._incidents is None:
            return incident
        settings = self._catalog.auto_rollback_for(incident.target)
        target = self._catalog.get(incident.target) if incident.target else None
        if target is None or not is_selected(incident, settings):
            return incident
        ledger = self._ledgers.get(context_of(incident))
        decision = decide_on_open(self._facts(incident, target, ledger), self._clock.now())
        if decision is None:
            return incident
        event = (
            AutoCountdown(decision.due_at, decision.to_revision, decision.approvals)
            if isinstance(decision, CountDown)
            else AutoSkipped(decision.why)
        )
        updated = self._incidents.apply_event(incident.id, event)
        self._audit("auto_countdown" if isinstance(decision, CountDown) else "auto_skipped", incident, decision)
        return updated or incident

    # --- Cancel ------------------------------------------------------------------------------------------------

    def on_cancel(self, incident_id: str, user: SlackUserId) -> None:
        """The countdown's Cancel: final for the incident, and only for people allowed to approve the target."""
        incident = self._store.get(IncidentId(incident_id))
        if incident is None or self._incidents is None:
            return
        target = self._catalog.get(incident.target) if incident.target else None
        is_approver = target is not None and self._may_approve(target, user)
        was_counting = incident.auto is not None and incident.auto.state is AutoState.COUNTING
        updated = self._incidents.apply_event(incident.id, AutoCancelled(user, is_approver))
        auto = updated.auto if updated is not None else None
        if was_counting and auto is not None and auto.state is AutoState.CANCELLED and auto.cancelled_by == user:
            self._ledgers_audit("auto_cancelled", incident, actor=user, why="cancelled from the card")

    # --- the sweep ---------------------------------------------------------------------------------------------

    def sweep(self) -> int:
        """Fire due countdowns; finish starts a dead replica left. Returns how many incidents it acted on."""
        now = self._clock.now()
        acted = 0
        for incident in self._store.live():
            auto = incident.auto
            if auto is None:
                continue
            try:
                if auto.state is AutoState.COUNTING and auto.due_at is not None and auto.due_at <= now:
                    self._fire(incident)
                    acted += 1
                elif (
                    auto.state is AutoState.STARTED
                    and auto.operation_id is not None
                    and incident.operation_id is None
                    and incident.rollback_requested_by == POLICY_REQUESTER
                    and now - auto.decided_at >= UNFINISHED_START_GRACE
                ):
                    log.info(
                        "requesting an automatic rollback a replica left unfinished", extra={"incident_id": incident.id}
                    )
                    self._request(incident, auto.operation_id)
                    acted += 1
            except Exception:  # one incident's trouble must not stop the others
                log.exception("automatic rollback failed", extra={"incident_id": incident.id})
        return acted

    def _fire(self, incident: Incident) -> None:
        assert self._incidents is not None
        target = self._catalog.get(incident.target) if incident.target else None
        context = context_of(incident)
        operation_id = self._new_operation_id()
        decision: Fire | Skip = Skip("automatic rollback is no longer configured for this target")
        tripped: AutoLedger | None = None
        if target is not None:
            for attempt in compare_and_set(self._sleep):
                with attempt:
                    ledger = self._ledgers.get(context)
                    decision = decide_on_due(self._facts(incident, target, ledger), self._clock.now())
                    if isinstance(decision, Fire):
                        start = AutoStart(
                            target=target.lock_key,
                            incident_id=incident.id,
                            at=self._clock.now(),
                            operation_id=operation_id,
                        )
                        after = record_start(ledger, start, self._catalog.defaults.auto_rollback_limits)
                        self._ledgers.replace(after.model_copy(update={"version": ledger.version + 1}), ledger.version)
                        tripped = after if after.is_tripped and not ledger.is_tripped else None
        if isinstance(decision, Skip):
            self._incidents.apply_event(incident.id, AutoSkipped(decision.why))
            self._audit("auto_skipped", incident, decision)
            return
        if tripped is not None:
            self._ledgers_audit("breaker_tripped", incident, why=tripped.tripped_why or "")
        updated = self._incidents.apply_event(incident.id, AutoFired(operation_id))
        auto = updated.auto if updated is not None else None
        if auto is None or auto.state is not AutoState.STARTED:
            self._take_back(context, incident.id)  # cancelled (or ended) at this very moment
            return
        if auto.operation_id != operation_id:
            return  # another replica fired it
        self._audit("auto_started", incident, decision, operation_id=operation_id)
        assert updated is not None
        self._request(updated, operation_id)

    def _request(self, incident: Incident, operation_id: OperationId) -> None:
        assert self._incidents is not None
        assert self._requests is not None
        auto = incident.auto
        target = self._catalog.get(incident.target) if incident.target else None
        if auto is None or auto.to_revision is None or target is None:
            return
        reason = "the request could not be posted"
        operation: Operation | None = None
        try:
            operation = self._requests.request_automatic(
                target, auto.to_revision, incident, operation_id, auto.approvals
            )
        except UserError as exc:
            reason = str(exc)
        if operation is not None:
            self._incidents.apply_event(incident.id, RollbackStarted(operation.id))
        else:
            self._incidents.apply_event(incident.id, RollbackNotStarted(reason))

    def _take_back(self, context: str, incident_id: str) -> None:
        for attempt in compare_and_set(self._sleep):
            with attempt:
                ledger = self._ledgers.get(context)
                after = forget_start(ledger, incident_id)
                if after.starts != ledger.starts:
                    self._ledgers.replace(after.model_copy(update={"version": ledger.version + 1}), ledger.version)

    # --- `/rollback auto status` and `/rollback auto resume <context>` --------------------------------------------

    def status(self) -> ChatMessage:
        ledgers = [self._ledgers.get(context) for context in self._ledgers.contexts()]
        countdowns = [
            incident
            for incident in self._store.live()
            if incident.auto is not None and incident.auto.state is AutoState.COUNTING
        ]
        return auto_status(
            self._catalog.defaults.auto_rollback_limits, ledgers, countdowns, self._opted_in(), self._command
        )

    def resume(self, context: str, user: SlackUserId) -> ChatMessage:
        """Close a context's breaker: for people allowed to approve a target there that opted in."""
        here = [target for target in self._opted_in_targets() if self._context_of(target) == context]
        if not any(self._may_approve(target, user) for target in here):
            return not_allowed_to_resume(context)
        was_tripped = False
        for attempt in compare_and_set(self._sleep):
            with attempt:
                ledger = self._ledgers.get(context)
                was_tripped = ledger.is_tripped
                after = resume(ledger).model_copy(update={"version": ledger.version + 1})
                self._ledgers.replace(after, ledger.version)
        self._ledgers.audit(
            "breaker_resumed", {"context": context, "actor": user, "was_tripped": str(was_tripped).lower()}
        )
        return breaker_resumed(context, was_tripped=was_tripped)

    # --- facts -------------------------------------------------------------------------------------------------

    def _facts(self, incident: Incident, target: Target, ledger: AutoLedger) -> AutoFacts:
        holder = self._operations.lock_holder(target.lock_key)
        return AutoFacts(
            incident=incident,
            settings=self._catalog.auto_rollback_for(incident.target),
            limits=self._catalog.defaults.auto_rollback_limits,
            ledger=ledger,
            target_key=target.lock_key,
            lock_holder=holder.operation_id if holder is not None else None,
            made_by_rollback=self._made_by_rollback(incident, target, ledger),
            # A mass failure's summary card asks humans: the incident joined it when the group formed, possibly
            # after its countdown started, so this is asked again when the countdown fires.
            in_mass_failure=incident.is_grouped,
        )

    def _made_by_rollback(self, incident: Incident, target: Target, ledger: AutoLedger) -> str | None:
        """What made the failed revision, when a rollback did: rollbot's mark on the workload (Kubernetes), the
        revision an automatic rollback of this target produced (every backend), or helm's own description."""
        signal = incident.signal
        number = signal.revision_number
        if signal.made_by_operation:
            # The mark outlives later deploys: it names the failed revision only when that rollback produced it.
            made = self._new_revision_of(OperationId(signal.made_by_operation))
            if made is None or number is None or made == number:
                return f"rollbot's rollback `{signal.made_by_operation}`"
        last = ledger.last_start(target.lock_key)
        if (
            last is not None
            and last.operation_id is not None
            and number is not None
            and self._new_revision_of(OperationId(last.operation_id)) == number
        ):
            return f"rollbot's automatic rollback `{last.operation_id}`"
        if target.backend is BackendKind.HELM and number is not None:
            try:
                history = self._backend_of(target).history(target)
            except BotError:
                return None
            entry = next((revision for revision in history if revision.number == number), None)
            if entry is not None and (entry.description or "").startswith(_HELM_ROLLBACK_DESCRIPTION):
                return f'a helm rollback ("{entry.description}")'
        return None

    def _new_revision_of(self, operation_id: OperationId) -> int | None:
        operation = self._operations.get(operation_id)
        if operation is None or operation.receipt is None:
            return None
        return operation.receipt.new_revision

    def _may_approve(self, target: Target, user: SlackUserId) -> bool:
        policy = target.policy
        if user in policy.approvers:
            return True
        try:
            return any(user in self._chat.group_members(group) for group in policy.approver_groups)
        except BotError:
            log.warning("could not list an approver group", exc_info=True)
            return False

    def _opted_in_targets(self) -> Sequence[Target]:
        targets = (self._catalog.get(name) for name in self._catalog.names if self._catalog.auto_rollback_for(name))
        return [target for target in targets if target is not None]

    def _context_of(self, target: Target) -> str | None:
        workload = target_workload(target, self._catalog)
        return None if workload is None else workload.location or "default"

    def _opted_in(self) -> Sequence[str]:
        return [target.name for target in self._opted_in_targets()]

    # --- audit -------------------------------------------------------------------------------------------------

    def _audit(
        self, event: str, incident: Incident, decision: CountDown | Fire | Skip, operation_id: str | None = None
    ) -> None:
        why = decision.why if isinstance(decision, Skip) else ""
        fields = {"due_at": decision.due_at.isoformat()} if isinstance(decision, CountDown) else {}
        if operation_id is not None:
            fields["operation_id"] = operation_id
        self._ledgers_audit(event, incident, why=why, **fields)

    def _ledgers_audit(self, event: str, incident: Incident, *, actor: str = "", why: str = "", **more: str) -> None:
        fields = {
            "incident_id": incident.id,
            "target": incident.target_label,
            "context": context_of(incident),
            "source": incident.source.value,
            "reason": incident.signal.reason,
            "revision": incident.revision,
            "at": self._clock.now().isoformat(),
            "actor": actor or POLICY_REQUESTER,
            **more,
        }
        if why:
            fields["why"] = why
        try:
            self._ledgers.audit(event, fields)
        except BotError:
            log.warning("could not write the audit entry", extra={"event": event, "incident_id": incident.id})
        log.info("automatic rollback: %s", event, extra=fields)


__all__ = ["AutoRequests", "AutoRollbackFlow", "IncidentEvents"]
