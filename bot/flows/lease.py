"""`Lease`: one replica's claim on one execution, renewed in the background and fenced in the store.

The claim is the `ExecutionClaimed` transition; it gives the executor a fencing token (`fence`). Every write the
executor makes afterwards passes that token, and the store refuses it once another replica has claimed the
execution (after this one was paused or cut off past its lease). The heartbeat renews the claim and the
target's lock every lease/3; when a renewal is refused, or any write is, the lease is `lost`: the executor stops
and says nothing more, because the record, the lock and the thread now belong to the new executor.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import timedelta

from bot.core.errors import FencedOut, TargetBusy
from bot.core.lifecycle import Event, LeaseRenewed, Transition
from bot.core.operations import Operation, OperationId
from bot.flows.journal import Journal
from bot.ports import Clock, OperationStore

log = logging.getLogger("rollbot.flows")


class Lease:
    def __init__(
        self,
        operation: Operation,
        *,
        journal: Journal,
        store: OperationStore,
        clock: Clock,
        duration: timedelta,
        stopping: threading.Event,
    ) -> None:
        self.operation_id: OperationId = operation.id
        self.executor = operation.executor or ""
        self.fence = operation.fence
        self.lost = threading.Event()
        self._journal = journal
        self._store = store
        self._clock = clock
        self._duration = duration
        self._stopping = stopping
        self._heartbeat: threading.Thread | None = None

    def decide(self, event: Event) -> Operation:
        """Store an executor event with this lease's token; FencedOut (and `lost`) once someone else has it."""
        try:
            transition = self._journal.decide(self.operation_id, event, fence=self.fence)
        except FencedOut:
            self._lose()
            raise
        if transition is None:
            self._lose()
            raise FencedOut(f"{self.operation_id} disappeared from the store")
        return transition.operation

    def write(self, change: Callable[[Operation], Operation]) -> Operation:
        try:
            return self._journal.write(self.operation_id, change, fence=self.fence)
        except FencedOut:
            self._lose()
            raise

    def confirm(self) -> Operation:
        """The stored operation, if this lease still holds it (before a Slack write no store write precedes)."""
        operation = self._store.get(self.operation_id)
        if operation is None or operation.fence != self.fence:
            self._lose()
            raise FencedOut(f"{self.operation_id} is executed by {operation.executor if operation else 'nobody'} now")
        return operation

    def holds(self) -> bool:
        """Whether the stored operation still carries this lease's token (asked right before a Slack write)."""
        operation = self._store.get(self.operation_id)
        return operation is not None and operation.fence == self.fence

    def keep(self) -> None:
        """Start renewing in the background until `release()`."""
        self._heartbeat = threading.Thread(target=self._renew, name=f"lease-{self.operation_id}", daemon=True)
        self._heartbeat.start()

    def release(self) -> None:
        self.lost.set()  # stops the heartbeat; nothing more is written under this lease
        if self._heartbeat is not None:
            self._heartbeat.join(timeout=5)

    def hand_over(self) -> Transition | None:
        """Shutting down mid-rollout: end the lease now, so another replica takes over at its next sweep."""
        return self._journal.decide(
            self.operation_id, LeaseRenewed(executor=self.executor, lease_until=self._clock.now()), fence=self.fence
        )

    def _renew(self) -> None:
        interval = max(self._duration.total_seconds() / 3, 0.05)
        while not self.lost.wait(interval) and not self._stopping.is_set():
            try:
                until = self._clock.now() + self._duration
                operation = self.decide(LeaseRenewed(executor=self.executor, lease_until=until))
                if operation.phase.is_terminal:
                    return
                self._store.refresh_lock(operation, self._duration * 2, fence=self.fence)
            except (FencedOut, TargetBusy):
                self._lose()
                return
            except Exception:  # a hiccup renewing must not kill the watch; the next renewal retries
                log.exception("lease renewal failed", extra={"operation_id": self.operation_id})

    def _lose(self) -> None:
        if not self.lost.is_set():
            log.warning("lost the lease: another replica executes it now", extra={"operation_id": self.operation_id})
        self.lost.set()
