"""The automatic-rollback policy: whether an opened incident counts down to a rollback, and whether a countdown
that ended may fire — decided from facts, as data (detection.md §6.10).

Nothing happens unless the incident's target opted in (`auto_rollback.on` lists the incident's reason, or its
source `alert` / `pipeline`). Then, in this order, any of these makes the decision a `Skip` with its reason (the
card keeps its normal button and says "automatic rollback skipped: <why>"):

- the incident belongs to a mass failure (its summary card asks humans);
- the breaker of its cluster context / AWS region is tripped (until `/rollback auto resume <context>`);
- the target already had `per_target` automatic rollbacks within the window ("limit reached");
- the failed revision is one rollbot itself made by rolling back (rolling it back again could loop);
- helm is `pending-*` (helm refuses every action), or ECS is already rolling back by itself;
- the card offers no rollback (outside the catalog…), or no known-good earlier revision exists;
- the target's lock is held by an operation (someone is rolling it back already).

The breaker lives in one `AutoLedger` per context: the automatic rollbacks started there (per target and in
total), and whether the breaker is tripped. `record_start` adds one and trips the breaker when the context
reaches `per_context` within its window; `resume` resets it. The store compares-and-sets on the ledger's
`version`, so two replicas firing in one context at once decide on the same count.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from pydantic import BaseModel, ConfigDict

from bot.core.catalog import BackendKind, format_duration
from bot.core.catalog_auto import AutoRollbackLimits, AutoRollbackSettings, RateLimit
from bot.core.incidents import Incident, IncidentSource
from bot.core.rollouts import RevisionNumber

# The source words of `auto_rollback.on`; an incident the watch found is selected by its reason only.
_SOURCE_WORDS: Final = {IncidentSource.ALERTMANAGER: "alert", IncidentSource.PIPELINE: "pipeline"}
# Helm's words for a release with an action in progress (helm refuses any other action meanwhile).
_HELM_PENDING_PREFIX: Final = "pending-"


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AutoStart(_Frozen):
    """One automatic rollback started: which target (its lock key), for which incident, as which operation, when."""

    target: str
    incident_id: str
    at: datetime
    operation_id: str | None = None


class AutoLedger(_Frozen):
    """The automatic rollbacks of one cluster context or AWS region, and its breaker."""

    context: str
    version: int = 0
    starts: tuple[AutoStart, ...] = ()
    tripped_at: datetime | None = None
    tripped_why: str | None = None

    @property
    def is_tripped(self) -> bool:
        return self.tripped_at is not None

    def last_start(self, target: str) -> AutoStart | None:
        """The newest automatic rollback of `target` this ledger still remembers."""
        mine = [start for start in self.starts if start.target == target]
        return max(mine, key=lambda start: start.at) if mine else None

    def started_within(self, window: timedelta, now: datetime, *, target: str | None = None) -> int:
        return sum(1 for start in self.starts if now - start.at < window and (target is None or start.target == target))


def context_of(incident: Incident) -> str:
    """The breaker's scope: the cluster context or AWS region of the failed workload (`default` when unnamed)."""
    return incident.workload.location or "default"


@dataclass(frozen=True)
class AutoFacts:
    """Everything the policy reads, gathered by the flow at one moment."""

    incident: Incident
    settings: AutoRollbackSettings | None
    limits: AutoRollbackLimits
    ledger: AutoLedger
    # The target's lock key (the ledger counts per target by it).
    target_key: str
    # The operation holding the target's lock, if any.
    lock_holder: str | None = None
    # What made the failed revision, when a rollback did ("rollbot's rollback `op-1`"); None otherwise.
    made_by_rollback: str | None = None
    in_mass_failure: bool = False


@dataclass(frozen=True)
class CountDown:
    due_at: datetime
    to_revision: RevisionNumber
    approvals: int


@dataclass(frozen=True)
class Fire:
    to_revision: RevisionNumber
    approvals: int


@dataclass(frozen=True)
class Skip:
    why: str


def is_selected(incident: Incident, settings: AutoRollbackSettings | None) -> bool:
    """Whether the target opted in for this kind of incident at all (else the policy stays silent)."""
    if settings is None:
        return False
    return settings.selects(incident.signal.reason, _SOURCE_WORDS.get(incident.source))


def decide_on_open(facts: AutoFacts, now: datetime) -> CountDown | Skip | None:
    """An incident just opened: count down, skip (with why), or nothing (the target did not opt in)."""
    if facts.settings is None or not is_selected(facts.incident, facts.settings):
        return None
    refusal = _guardrail(facts, now)
    if refusal is not None:
        return Skip(refusal)
    assert facts.incident.last_good is not None  # the guardrail refuses without one
    return CountDown(
        due_at=now + facts.settings.countdown,
        to_revision=facts.incident.last_good.revision,
        approvals=facts.settings.approvals,
    )


def decide_on_due(facts: AutoFacts, now: datetime) -> Fire | Skip:
    """A countdown ended: the same guardrails again (a lot can happen in two minutes), then fire or skip."""
    auto = facts.incident.auto
    if facts.settings is None or auto is None or auto.to_revision is None:
        return Skip("automatic rollback is no longer configured for this target")
    if facts.incident.rollback_requested_by is not None or facts.incident.operation_id is not None:
        return Skip("a rollback was already requested from the card")
    # A start already counted for this very incident (another replica firing it at the same moment) is not a
    # second rollback of the target.
    again = AutoFacts(**{**facts.__dict__, "ledger": forget_start(facts.ledger, facts.incident.id)})
    refusal = _guardrail(again, now)
    return Skip(refusal) if refusal is not None else Fire(to_revision=auto.to_revision, approvals=auto.approvals)


def record_start(ledger: AutoLedger, start: AutoStart, limits: AutoRollbackLimits) -> AutoLedger:
    """The ledger once `start` is counted (once per incident); trips the breaker when the context reaches its limit.

    Entries older than both windows are dropped: they can no longer count against anything.
    """
    keep = max(limits.per_target.window, limits.per_context.window)
    starts = tuple(s for s in ledger.starts if start.at - s.at < keep and s.incident_id != start.incident_id)
    after = ledger.model_copy(update={"starts": (*starts, start)})
    limit = limits.per_context
    if not after.is_tripped and after.started_within(limit.window, start.at) >= limit.count:
        why = f"{limit.count} automatic rollbacks within {format_duration(limit.window)} in {ledger.context}"
        after = after.model_copy(update={"tripped_at": start.at, "tripped_why": why})
    return after


def forget_start(ledger: AutoLedger, incident_id: str) -> AutoLedger:
    """Take back a start that did not happen (its incident was cancelled between the count and the start)."""
    return ledger.model_copy(update={"starts": tuple(s for s in ledger.starts if s.incident_id != incident_id)})


def resume(ledger: AutoLedger) -> AutoLedger:
    """`/rollback auto resume <context>`: the breaker closes and the context's count starts again from zero."""
    return ledger.model_copy(update={"tripped_at": None, "tripped_why": None, "starts": ()})


def _guardrail(facts: AutoFacts, now: datetime) -> str | None:
    """The first guardrail that refuses an automatic rollback of this incident now, as the card's words."""
    incident, limits, ledger = facts.incident, facts.limits, facts.ledger
    signal = incident.signal
    if facts.in_mass_failure:
        return "part of a mass failure; its summary card asks people to decide"
    if ledger.is_tripped:
        resume_command = f"`/rollback auto resume {ledger.context}`"
        return f"the breaker of {ledger.context} is tripped ({ledger.tripped_why}); {resume_command} re-enables it"
    if ledger.started_within(limits.per_target.window, now, target=facts.target_key) >= limits.per_target.count:
        return f"limit reached ({_limit_words(limits.per_target)} for {incident.target_label})"
    if ledger.started_within(limits.per_context.window, now) >= limits.per_context.count:
        return f"limit reached ({_limit_words(limits.per_context)} in {ledger.context})"
    if facts.made_by_rollback is not None:
        return (
            f"revision {signal.revision} was made by {facts.made_by_rollback}; "
            "rolling it back again automatically could loop"
        )
    if signal.is_stuck or (
        incident.workload.backend is BackendKind.HELM and signal.reason.startswith(_HELM_PENDING_PREFIX)
    ):
        return f"helm release is {signal.reason}; helm refuses every action until it is out of it"
    if signal.is_rolling_back_by_itself:
        return "ECS is already rolling it back by itself"
    if incident.no_button_reason is not None:
        return incident.no_button_reason
    if incident.last_good is None:
        return "no known-good earlier revision to roll back to"
    if facts.lock_holder is not None:
        return f"the target is locked by `{facts.lock_holder}`"
    return None


def _limit_words(limit: RateLimit) -> str:
    rollbacks = "automatic rollback" if limit.count == 1 else "automatic rollbacks"
    return f"{limit.count} {rollbacks} per {format_duration(limit.window)}"


__all__ = [
    "AutoFacts",
    "AutoLedger",
    "AutoStart",
    "CountDown",
    "Fire",
    "Skip",
    "context_of",
    "decide_on_due",
    "decide_on_open",
    "forget_start",
    "is_selected",
    "record_start",
    "resume",
]
