"""The journal: the one path through which every stored change of an operation passes.

`Journal.decide(operation_id, event)` reads the operation, asks the pure lifecycle what the event means, stores
the new version with compare-and-set (re-reading and deciding again when someone else moved first), counts it
in the metrics, and only then applies the effects the lifecycle returned. Executor writes pass their fencing
token, so the store refuses them once another replica has taken the execution over (`FencedOut`, raised to the
caller, who must stop). `Journal.write` does the same for bookkeeping the lifecycle has no event for (the
progress message's ref).

The lock's lifetime follows the phase: a request holds its target until it expires; approval extends that
from the moment of approval, so a queued execution never loses its target while it waits for a worker.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from functools import partial
from typing import Final, Protocol

from bot.core.catalog import SlackUserId
from bot.core.errors import ConcurrentUpdate
from bot.core.lifecycle import (
    ButtonPressed,
    Event,
    ExecutionClaimed,
    ReactionAdded,
    ReactionRemoved,
    Transition,
    advance,
)
from bot.core.operations import Operation, OperationId, Phase
from bot.flows.retrying import MAX_CAS_ATTEMPTS, Sleep, compare_and_set
from bot.ports import Clock, Metrics, OperationStore

# Lock of an operation awaiting approval or approved: until it expires, plus slack for the sweeper to act.
LOCK_MARGIN: Final = timedelta(minutes=2)
# Lock stripes for per-operation writes within one process.
OPERATION_LOCK_STRIPES: Final = 64


class EffectApplier(Protocol):
    def __call__(
        self, transition: Transition, told: list[str] | None, still_current: Callable[[], bool] | None
    ) -> None: ...


class Journal:
    def __init__(
        self,
        *,
        store: OperationStore,
        clock: Clock,
        metrics: Metrics,
        members: Callable[[Operation], frozenset[SlackUserId]],
        apply: EffectApplier,
        sleep: Sleep,
    ) -> None:
        self._store = store
        self._clock = clock
        self._metrics = metrics
        self._members = members
        self._apply = apply
        self._sleep = sleep
        # Writes to one operation from this process (executor, lease heartbeat) take turns; striped, so the
        # number of locks stays fixed however many operations pass through.
        self._op_locks = tuple(threading.Lock() for _ in range(OPERATION_LOCK_STRIPES))

    def decide(
        self,
        operation_id: OperationId,
        event: Event,
        *,
        actor: SlackUserId | None = None,
        fence: int | None = None,
        lock_ttl: timedelta | None = None,
        told: list[str] | None = None,
    ) -> Transition | None:
        """Advance one operation by one event, store it, then apply its effects once. None if it does not exist.

        Raises FencedOut (the writer lost the execution), TargetBusy (another operation holds the target) and
        ConcurrentUpdate after `MAX_CAS_ATTEMPTS` lost compare-and-sets.
        """
        stored: tuple[Transition, Callable[[], bool] | None] | None = None
        with self._serialised(operation_id, fence):
            for attempt in compare_and_set(self._sleep):
                with attempt:
                    stored = self._decide_once(operation_id, event, actor, fence, lock_ttl)
        if stored is None:
            return None
        transition, still_current = stored
        # Outside the per-operation lock: Slack may make these wait for its budget, and the lease heartbeat of
        # the same operation must not wait behind them (its lease would lapse while it is alive).
        self._apply(transition, told, still_current)
        return transition

    def write(
        self, operation_id: OperationId, change: Callable[[Operation], Operation], *, fence: int | None = None
    ) -> Operation:
        """A bookkeeping change (message refs) with the same compare-and-set and fencing; no effects."""
        with self._serialised(operation_id, fence):
            for attempt in compare_and_set(self._sleep):
                with attempt:
                    operation = self._store.get(operation_id)
                    if operation is None:
                        raise ConcurrentUpdate(f"{operation_id} disappeared from the store")
                    new = change(operation).model_copy(
                        update={"version": operation.version + 1, "updated_at": self._clock.now()}
                    )
                    self._store.replace(new, expected_version=operation.version, fence=fence)
                    return new
        raise AssertionError("unreachable")  # pragma: no cover

    def _decide_once(
        self,
        operation_id: OperationId,
        event: Event,
        actor: SlackUserId | None,
        fence: int | None,
        lock_ttl: timedelta | None,
    ) -> tuple[Transition, Callable[[], bool] | None] | None:
        """Store the event's transition; returns it with the check its reports must pass (executor writes)."""
        operation = self._store.get(operation_id)
        if operation is None:
            return None
        transition = advance(operation, event, self._clock.now(), group_members=self._members(operation))
        if transition.changed:
            after = transition.operation
            self._store.replace(
                after,
                expected_version=operation.version,
                actor=transition.actor or actor,
                note=transition.note,
                fence=fence,
                lock_ttl=lock_ttl if lock_ttl is not None else _lock_ttl_on_approval(operation, after),
            )
            self._count(event, operation, after)
        # An executor may be paused between its write and the Slack calls that report it; by then another replica
        # may have taken over. Slack has no fencing, so check the token again before each call: a narrow window
        # instead of a whole pause.
        reporting_fence = fence
        if reporting_fence is None and isinstance(event, ExecutionClaimed) and transition.changed:
            reporting_fence = transition.operation.fence  # the claim's own lines ("rolling back") are fenced too
        still_current = None if reporting_fence is None else partial(self._holds, operation_id, reporting_fence)
        return transition, still_current

    def _holds(self, operation_id: OperationId, fence: int) -> bool:
        operation = self._store.get(operation_id)
        return operation is not None and operation.fence == fence

    def _count(self, event: Event, before: Operation, after: Operation) -> None:
        if after.phase is not before.phase:
            self._metrics.phase_entered(after.target.backend.value, after.phase.value)
        if isinstance(event, ReactionAdded | ButtonPressed | ReactionRemoved):
            if len(after.approvals) > len(before.approvals):
                self._metrics.approval_recorded("counted")
            elif len(after.approvals) < len(before.approvals):
                self._metrics.approval_recorded("withdrawn")
            elif after.phase is Phase.REJECTED:
                self._metrics.approval_recorded("rejected")

    @contextmanager
    def _serialised(self, operation_id: OperationId, fence: int | None) -> Iterator[None]:
        if fence is None:  # people's gestures race freely; compare-and-set sorts them out
            yield
            return
        with self._op_locks[zlib.crc32(operation_id.encode()) % OPERATION_LOCK_STRIPES]:
            yield


def _lock_ttl_on_approval(before: Operation, after: Operation) -> timedelta | None:
    if after.phase is Phase.APPROVED and before.phase is not Phase.APPROVED:
        return after.target.policy.expires_after + LOCK_MARGIN
    return None


__all__ = ["LOCK_MARGIN", "MAX_CAS_ATTEMPTS", "EffectApplier", "Journal"]
