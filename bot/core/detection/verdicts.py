"""What the rules say about one watched object: a `Verdict`, carrying a `Signal` when it is failing.

A verdict's `health` is one of:

    FAILING      a rule holds: the signal says which, since when, how many pods per reason, the failed revision
    PROGRESSING  mid-rollout (or short of replicas), nothing has held long enough to call it failed
    RECOVERING   healthy now, but not yet for `healthy_for` (hysteresis: an incident does not resolve on a blip)
    HEALTHY      healthy for at least `healthy_for`
    IGNORED      nothing to judge by design: a paused Deployment, an uninstalled release

The rules need to remember when a fact was first seen (a ReplicaFailure held 60 s, a pod reason held
`failing_for`, an update count that has not moved for `stall_after`). That memory is the explicit, immutable
`Observations`: passed in, returned updated in the verdict, stored by the caller next to the snapshot. A fact
that stops holding is forgotten, so its clock restarts if it comes back. Losing the memory (a restart, a new
watcher after a lease change) only delays a signal by its hold time; it never invents one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final

from pydantic import BaseModel, ConfigDict, Field

from bot.core.rollouts import ContainerImage

# A card shows this many distinct messages at most, whatever the number of pods (§6.8): never one line per pod.
MAX_DISTINCT_MESSAGES: Final = 3
# A distinct message longer than this is cut: backends paste whole stack traces into waiting messages.
MAX_MESSAGE_LENGTH: Final = 300


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Health(StrEnum):
    FAILING = "failing"
    PROGRESSING = "progressing"
    RECOVERING = "recovering"
    HEALTHY = "healthy"
    IGNORED = "ignored"


class ReasonCount(_Frozen):
    reason: str
    count: int


class Signal(_Frozen):
    """Why an object is failing, aggregated: one reason word, counts per reason, at most 3 distinct messages."""

    # The platform's own word: ProgressDeadlineExceeded, ReplicaFailure, ImagePullBackOff, CrashLoopBackOff,
    # Stalled, failed, pending-upgrade, FAILED… (the incident's `reason` in the card's metadata).
    reason: str
    since: datetime
    revision: str
    revision_number: int | None = None
    images: tuple[ContainerImage, ...] = ()
    counts: tuple[ReasonCount, ...] = ()
    messages: tuple[str, ...] = Field(default=(), max_length=MAX_DISTINCT_MESSAGES)
    # helm pending-* held too long: helm refuses every new action until someone gets it out (the card says how).
    is_stuck: bool = False
    # The platform is already rolling back by itself (ECS circuit breaker): the card offers no button.
    is_rolling_back_by_itself: bool = False
    # The failed revision is one rollbot made by rolling back (never auto-rolled back again).
    made_by_operation: str | None = None


class Observations(_Frozen):
    """The rules' memory of one object: when each holding fact was first seen, and the last settled revision."""

    first_seen: Mapping[str, datetime] = Field(default_factory=dict)
    # The revision last seen fully rolled out and healthy: a later shortfall on the same revision is scaling or
    # node trouble, not a failed rollout, and no rollback would help.
    settled_revision: str | None = None

    def held_since(self, facts: Iterable[str], now: datetime) -> Observations:
        """Keep the first sighting of facts that still hold, start the clock for new ones, forget the rest."""
        return self.model_copy(update={"first_seen": {fact: self.first_seen.get(fact, now) for fact in facts}})

    def since(self, fact: str, now: datetime) -> datetime:
        return self.first_seen.get(fact, now)


class Verdict(_Frozen):
    health: Health
    observations: Observations = Observations()
    signal: Signal | None = None
    # One line for logs and the thread: "3/5 updated, 2 available".
    summary: str = ""
    # The earliest moment time alone may change this verdict (a hold maturing), so that a caller watching
    # thousands of objects judges again only those that are due. None: unknown, judge again at every chance.
    recheck_at: datetime | None = None

    @property
    def is_failing(self) -> bool:
        return self.health is Health.FAILING


def is_held(since: datetime, now: datetime, hold: timedelta) -> bool:
    return now - since >= hold


def distinct_messages(messages: Iterable[str | None]) -> tuple[str, ...]:
    """The first `MAX_DISTINCT_MESSAGES` different texts, in order, each cut to a readable length."""
    seen: list[str] = []
    for text in messages:
        if not text:
            continue
        text = text if len(text) <= MAX_MESSAGE_LENGTH else text[: MAX_MESSAGE_LENGTH - 1] + "…"
        if text not in seen:
            seen.append(text)
        if len(seen) == MAX_DISTINCT_MESSAGES:
            break
    return tuple(seen)
