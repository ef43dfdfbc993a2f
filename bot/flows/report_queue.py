"""Per-operation ordered reporting: what the bot tells Slack about an operation leaves in the order it happened,
on reporting workers, so nothing that changes the world waits for Slack's budget.

Slack allows about one post per second per channel and fifty `chat.update` a minute for the workspace; when
thirty operations are busy, a thread line can wait a minute for its turn. Before, the approval's Slack effects
were applied before the executor started, so the backend write waited behind them. Now every report about an
operation (a lifecycle effect, a thread line from the rollout watch, a progress refresh) is queued under the
operation's id and the caller returns at once. One drain per operation at a time runs the queue on the `submit`
the composition root provides (a pool of reporting workers), so:

- the reports of one operation keep their order (the "approved" line before "rolling back", before the final
  line), whichever thread queued them;
- the reports of different operations do not wait for one another beyond Slack's own budget;
- a newer progress refresh replaces an older one still waiting (`coalesce`), so a slow Slack sees fewer calls.

`add` queues without starting a drain and `kick` starts one: a caller that must hand work on between queueing
its reports and letting them go (the approval starting its execution) keeps its reports ahead of everything the
handed-on work queues. `settle` is the barrier for code that still talks to Slack directly about an operation
(the batch's progress message): it returns once what was queued before has gone, helping to drain when nobody
is. With an inline `submit` (flow tests) every drain runs in the thread that kicks it, top to bottom.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass

log = logging.getLogger("rollbot.flows")

Submit = Callable[[Callable[[], None]], None]


@dataclass
class _Report:
    action: Callable[[], object]
    coalesce: Hashable | None


@dataclass
class _Lane:
    """One operation's queue; `drainer` is the thread running it (None while a drain is only scheduled)."""

    reports: deque[_Report]
    scheduled: bool = False
    drainer: int | None = None


class ReportQueue:
    def __init__(self, submit: Submit) -> None:
        self._submit = submit
        self._changed = threading.Condition()
        self._lanes: dict[str, _Lane] = {}

    def later(self, key: str, action: Callable[[], object], *, coalesce: Hashable | None = None) -> None:
        """Queue `action` after everything queued under `key`, and make sure a drain runs."""
        self.add(key, action, coalesce=coalesce)
        self.kick(key)

    def add(self, key: str, action: Callable[[], object], *, coalesce: Hashable | None = None) -> None:
        """Queue without starting a drain (the caller kicks later). A waiting report with the same `coalesce`
        tag is replaced in its place by this newer one."""
        with self._changed:
            lane = self._lanes.get(key)
            if lane is None:
                lane = self._lanes[key] = _Lane(deque())
            if coalesce is not None:
                for index, waiting in enumerate(lane.reports):
                    if waiting.coalesce == coalesce:
                        lane.reports[index] = _Report(action, coalesce)
                        return
            lane.reports.append(_Report(action, coalesce))

    def kick(self, key: str) -> None:
        """Start draining `key` unless a drain is already scheduled or running."""
        with self._changed:
            lane = self._lanes.get(key)
            if lane is None or lane.scheduled or not lane.reports:
                return
            lane.scheduled = True
        try:
            self._submit(lambda: self._drain(key))
        except Exception:  # the pool is shutting down: the caller's thread says it itself
            log.warning("no reporting worker left; reporting from this thread", extra={"operation_id": key})
            self._drain(key)

    def settle(self, key: str) -> None:
        """Return once every report queued under `key` so far has been made (drain them here if nobody does)."""
        me = threading.get_ident()
        with self._changed:
            while True:
                lane = self._lanes.get(key)
                if lane is None or lane.drainer == me:
                    return
                if not lane.scheduled:
                    lane.scheduled = True  # nobody drains it: this thread does
                    break
                self._changed.wait()
        self._drain(key)

    def pending(self) -> int:
        """Reports waiting across every operation (for shutdown and tests)."""
        with self._changed:
            return sum(len(lane.reports) for lane in self._lanes.values())

    def _drain(self, key: str) -> None:
        me = threading.get_ident()
        with self._changed:
            lane = self._lanes.get(key)
            if lane is None:
                return
            if lane.drainer is not None and lane.drainer != me:  # pragma: no cover (scheduled exactly once)
                return
            lane.drainer = me
        while True:
            with self._changed:
                if not lane.reports:
                    del self._lanes[key]
                    self._changed.notify_all()
                    return
                report = lane.reports.popleft()
            try:
                report.action()
            except Exception:  # one report failing never stops the next
                log.exception("a report failed", extra={"operation_id": key})
