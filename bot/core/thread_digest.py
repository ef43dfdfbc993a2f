"""Thread digests: what a rollout's thread says while it runs, bounded whatever the size of the rollout.

A rollback of an ECS service with 100 tasks or a Deployment with 50 replicas produces hundreds of observations:
unhealthy pods and tasks, service events. One thread line each would drown the incident channel and blow through
Slack's limits (`chat.postMessage` about 1 per second per channel, `chat.update` Tier 3). This module decides, from
what the thread was already told (`ThreadMemory`) and the newest `RolloutStatus`, what to write now (`ThreadDecision`):

- the progress message is updated on a cadence that backs off (`next_progress_at`): soon after the start, then
  rarely; a finished rollout is always published;
- news (units that became unhealthy, service events) is gathered and told as one *digest* line at most every
  `DIGEST_INTERVAL`, at most `MAX_DIGEST_LINES` per rollout: problems counted per reason (at most
  `MAX_REASONS_SHOWN` distinct ones), events summarised ("started 40 tasks, stopped 38"); never a line per unit;
- a finished rollout tells the problems not told yet (within the same cap), and the backend's closing notes
  (e.g. ECS "not deregistered") get one last line.

With the lifecycle's own writes this keeps a 3-minute single rollback within 15 Slack writes, whatever its size.

Pure: `now` is an argument, nothing is sent or stored here. Rendering lives in `messages.operation`, sending in
`flows.execution`. Not a rate limiter: the chat adapter's outbound budget still paces what is decided here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Final

from pydantic import BaseModel, ConfigDict

from bot.core.rollouts import RolloutStatus, UnhealthyUnit

# Progress refreshes after the first post, by time since the watch started: early ones show the rollout moving,
# then they back off so a long rollout costs few chat.update calls (Tier 3, shared by the whole workspace).
PROGRESS_SCHEDULE: Final = (timedelta(seconds=15), timedelta(seconds=60))
# After the schedule, one refresh per this interval; a 3-minute rollout therefore gets two refreshes.
PROGRESS_STEADY_INTERVAL: Final = timedelta(minutes=3)
# The channel's request message carries the latest summary too, but only for long rollouts (it is one more update).
REQUEST_REFRESH_INTERVAL: Final = timedelta(minutes=5)
# News is gathered for at least this long before it is told: one line says "what happened in the last 30 s".
DIGEST_INTERVAL: Final = timedelta(seconds=30)
# News waits this long before its first line, so the line counts a whole wave of failing pods, not its first one.
DIGEST_SETTLE: Final = timedelta(seconds=10)
# Thread lines of news per rollout; later news shows in the progress message, which counts per reason too.
MAX_DIGEST_LINES: Final = 2
# Distinct problem reasons and distinct other events a line names; the rest are counted ("and 2 more reasons").
MAX_REASONS_SHOWN: Final = 3
MAX_EVENTS_SHOWN: Final = 3
# Notes in the line that closes a rollout: its last events and the backend's own notes, each kind once.
MAX_CLOSING_NOTES: Final = 5
# How many unit keys are remembered as told; a service replacing tasks forever must not grow memory forever.
MAX_TOLD_UNITS: Final = 5000

# ECS service events, as the service scheduler words them (ecs.md): counted, never listed.
_STARTED = re.compile(r"has started (?P<n>\d+) tasks?\b")
_STOPPED = re.compile(r"has stopped (?P<n>\d+) running tasks?\b")
# Ids and numbers that make otherwise identical events look different ("(task 3f2a…)", "2 targets").
_VOLATILE = re.compile(r"\b[0-9a-f]{8,}\b|\b[0-9a-f-]{32,}\b|\d+")


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProblemCount(_Frozen):
    """Units that became unhealthy for one reason, with one of the platform's messages as the example."""

    reason: str
    count: int
    example: str | None = None
    first_unit: str | None = None  # named when it is the only one


class EventCount(_Frozen):
    """Events that read the same once ids and numbers are set aside; `latest` is the newest as written."""

    shape: str
    count: int
    latest: str


class EventTally(_Frozen):
    """Events gathered since the last digest line, in constant space."""

    started_tasks: int = 0
    stopped_tasks: int = 0
    others: tuple[EventCount, ...] = ()  # newest last, at most MAX_EVENTS_SHOWN
    other_omitted: int = 0

    @property
    def is_empty(self) -> bool:
        return not (self.started_tasks or self.stopped_tasks or self.others or self.other_omitted)

    def add(self, event: str) -> EventTally:
        started, stopped = _STARTED.search(event), _STOPPED.search(event)
        if started or stopped:
            return self.model_copy(
                update={
                    "started_tasks": self.started_tasks + (int(started["n"]) if started else 0),
                    "stopped_tasks": self.stopped_tasks + (int(stopped["n"]) if stopped else 0),
                }
            )
        shape = _VOLATILE.sub("#", event)
        same = next((known for known in self.others if known.shape == shape), None)
        rest = tuple(known for known in self.others if known is not same)
        counted = EventCount(shape=shape, count=(same.count if same else 0) + 1, latest=event)
        others = (*rest, counted)
        omitted = self.other_omitted
        if len(others) > MAX_EVENTS_SHOWN:
            omitted += others[0].count
            others = others[1:]
        return self.model_copy(update={"others": others, "other_omitted": omitted})


class Digest(_Frozen):
    """One thread line of news: problems per reason and the events of `window`."""

    problems: tuple[ProblemCount, ...] = ()  # most frequent first, at most MAX_REASONS_SHOWN
    more_reasons: int = 0
    more_units: int = 0  # units behind `more_reasons`
    events: EventTally = EventTally()
    window: timedelta = timedelta(0)


class ThreadMemory(_Frozen):
    """What one execution has already told the thread, and the news it has not told yet."""

    watch_started_at: datetime
    last_progress_at: datetime | None = None
    last_request_refresh_at: datetime | None = None
    last_digest_at: datetime | None = None
    digest_lines: int = 0
    told_units: frozenset[str] = frozenset()
    pending_problems: tuple[ProblemCount, ...] = ()  # every reason, so counts stay true until told
    pending_events: EventTally = EventTally()
    pending_since: datetime | None = None  # when the oldest untold news was observed


class ThreadDecision(_Frozen):
    """What to write for one observation; `memory` is what the thread will have been told afterwards."""

    memory: ThreadMemory
    publish_progress: bool = False
    refresh_request: bool = False
    digest: Digest | None = None
    closing_notes: tuple[str, ...] = ()


def next_progress_at(after: timedelta) -> timedelta:
    """The first refresh point (time since the watch started) strictly later than `after`."""
    for point in PROGRESS_SCHEDULE:
        if point > after:
            return point
    last = PROGRESS_SCHEDULE[-1]
    steps = (after - last) // PROGRESS_STEADY_INTERVAL + 1
    return last + steps * PROGRESS_STEADY_INTERVAL


def is_progress_due(memory: ThreadMemory, status: RolloutStatus, now: datetime) -> bool:
    """The first observation and a finished rollout always; otherwise once a new cadence point is reached."""
    if status.is_finished or memory.last_progress_at is None:
        return True
    published_after = memory.last_progress_at - memory.watch_started_at
    return now - memory.watch_started_at >= next_progress_at(published_after)


def _unit_key(unit: UnhealthyUnit) -> str:
    return f"{unit.name}:{unit.reason}"


def _count_problems(known: tuple[ProblemCount, ...], units: Iterable[UnhealthyUnit]) -> tuple[ProblemCount, ...]:
    counts = {problem.reason: problem for problem in known}
    for unit in units:
        before = counts.get(unit.reason)
        counts[unit.reason] = ProblemCount(
            reason=unit.reason,
            count=(before.count if before else 0) + 1,
            example=(before.example if before and before.example else unit.message),
            first_unit=before.first_unit if before else unit.name,
        )
    return tuple(counts.values())


def _is_task_event(event: str) -> bool:
    return bool(_STARTED.search(event) or _STOPPED.search(event))


def _distinct_notes(notes: Iterable[str]) -> tuple[str, ...]:
    """Each kind of note once, as last written, in order; the newest `MAX_CLOSING_NOTES` (the backend's own
    notes come last)."""
    latest: dict[str, str] = {}
    for note in notes:
        shape = _VOLATILE.sub("#", note)
        latest.pop(shape, None)
        latest[shape] = note
    return tuple(latest.values())[-MAX_CLOSING_NOTES:]


def _is_news(event: str, status: RolloutStatus) -> bool:
    """An event repeating the summary, or naming a unit already counted as unhealthy, adds nothing."""
    if event == status.summary:
        return False
    return not any(unit.name in event for unit in status.unhealthy)


def _digest(memory: ThreadMemory, now: datetime) -> Digest:
    ranked = sorted(memory.pending_problems, key=lambda problem: -problem.count)
    shown, hidden = ranked[:MAX_REASONS_SHOWN], ranked[MAX_REASONS_SHOWN:]
    since = memory.last_digest_at or memory.watch_started_at
    return Digest(
        problems=tuple(shown),
        more_reasons=len(hidden),
        more_units=sum(problem.count for problem in hidden),
        events=memory.pending_events,
        window=now - since,
    )


def _is_digest_due(memory: ThreadMemory, now: datetime) -> bool:
    if memory.pending_since is None or memory.digest_lines >= MAX_DIGEST_LINES:
        return False
    if now - memory.pending_since < DIGEST_SETTLE:
        return False
    return memory.last_digest_at is None or now - memory.last_digest_at >= DIGEST_INTERVAL


def decide_thread(memory: ThreadMemory, status: RolloutStatus, now: datetime) -> ThreadDecision:
    """Fold one observation into `memory` and decide what, if anything, to write for it."""
    fresh = {_unit_key(unit): unit for unit in status.unhealthy if _unit_key(unit) not in memory.told_units}
    new_units = list(fresh.values())
    told = memory.told_units | fresh.keys()
    if len(told) > MAX_TOLD_UNITS:
        told = frozenset(_unit_key(unit) for unit in status.unhealthy)  # may recount a unit once; stays bounded
    news = [event for event in status.events if _is_news(event, status)]
    if status.is_finished:
        # Problems never told (a rollout that failed within seconds) get their line now if the budget allows:
        # the pod's own reason ("manifest unknown") is what people need next; tasks started and stopped since the
        # last line are counted in it. Otherwise events are history by now (the progress message shows the final
        # counts), except the rollout's last words and the backend's closing notes (e.g. what was not
        # deregistered), which get one line: each kind once, never a task by task list (a service of a hundred
        # tasks ends with dozens of "has started 1 tasks" events since the last poll).
        problems = _count_problems(memory.pending_problems, new_units)
        finished = memory.model_copy(update={"told_units": told, "last_progress_at": now, "pending_problems": problems})
        tasks = EventTally(
            started_tasks=memory.pending_events.started_tasks, stopped_tasks=memory.pending_events.stopped_tasks
        )
        notes: list[str] = []
        for event in news:
            if _is_task_event(event):
                tasks = tasks.add(event)
            else:
                notes.append(event)
        last_word: Digest | None = None
        if problems and finished.digest_lines < MAX_DIGEST_LINES:
            last_word = _digest(finished.model_copy(update={"pending_events": tasks}), now)
            finished = finished.model_copy(
                update={"digest_lines": finished.digest_lines + 1, "pending_problems": (), "last_digest_at": now}
            )
        return ThreadDecision(
            memory=finished, publish_progress=True, digest=last_word, closing_notes=_distinct_notes(notes)
        )
    tally = memory.pending_events
    for event in news:
        tally = tally.add(event)
    problems = _count_problems(memory.pending_problems, new_units)
    has_news = bool(problems) or not tally.is_empty
    memory = memory.model_copy(
        update={
            "told_units": told,
            "pending_problems": problems,
            "pending_events": tally,
            "pending_since": (memory.pending_since or now) if has_news else None,
        }
    )
    digest: Digest | None = None
    if _is_digest_due(memory, now):
        digest = _digest(memory, now)
        memory = memory.model_copy(
            update={
                "last_digest_at": now,
                "digest_lines": memory.digest_lines + 1,
                "pending_problems": (),
                "pending_events": EventTally(),
                "pending_since": None,
            }
        )
    publish = is_progress_due(memory, status, now)
    refresh = False
    if publish:
        memory = memory.model_copy(update={"last_progress_at": now})
        since_refresh = now - (memory.last_request_refresh_at or memory.watch_started_at)
        if since_refresh >= REQUEST_REFRESH_INTERVAL:
            refresh = True
            memory = memory.model_copy(update={"last_request_refresh_at": now})
    return ThreadDecision(memory=memory, publish_progress=publish, refresh_request=refresh, digest=digest)
