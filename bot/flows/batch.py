"""Batch execution: roll every member of an approved batch back in parallel, under the batch's one lease.

One owner thread (the executor that claimed the batch) holds the lease and is the only writer of the record.
Each member that has not ended runs in a worker of a bounded pool (`BATCH_CONCURRENCY` at once): it calls
`roll_back` (with the batch's operation id, which each backend records on that member's own workload, so a
takeover recognises its earlier rollback) and watches the rollout, pushing what it sees into a queue. The owner
stores those as member events through the lease: receipts and endings at once, progress coalesced to one
write per `publish_interval`, so there is never a compare-and-set storm however many members run. One progress
message in the thread shows a row per member; each member's final line is the lifecycle's own effect.

A member that fails does not stop the others; the batch ends when its last member ends, FAILED unless all
succeeded. After a crash, the takeover runs this again and resumes only the members that have not ended
(watching again, or calling `roll_back` again, which the backends make idempotent per operation id).
On shutdown the workers stop watching and the lease is handed over, as for one target.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from bot.core import messages
from bot.core.batches import MemberErrored, MemberEvent, MemberObserved, MemberReceiptRecorded
from bot.core.catalog import Target
from bot.core.errors import FencedOut, PermanentError, TemporaryError, UserError
from bot.core.operations import BatchMember, Operation, OperationId
from bot.core.outbound import Priority
from bot.core.rollouts import RolloutStatus
from bot.flows.batch_requests import BATCH_CONCURRENCY
from bot.flows.lease import Lease
from bot.flows.reporting import Reporter
from bot.flows.retrying import MAX_ROLL_BACK_ATTEMPTS, MAX_WATCH_ATTEMPTS, Sleep, backend_calls
from bot.ports import Backend, Chat, Clock, Metrics

log = logging.getLogger("rollbot.flows")

# Sent by a worker when its member's work is over, whatever happened (the owner counts these).
_DONE: Final = object()


@dataclass(frozen=True)
class _Settings:
    rollout_timeout: timedelta
    publish_interval: timedelta


class BatchRunner:
    def __init__(
        self,
        *,
        backend_of: Callable[[Target], Backend],
        reporter: Reporter,
        chat: Chat,
        clock: Clock,
        metrics: Metrics,
        rollout_timeout: timedelta,
        publish_interval: timedelta,
        sleep: Sleep,
        stopping: threading.Event,
        concurrency: int = BATCH_CONCURRENCY,
    ) -> None:
        self._backend = backend_of
        self._reporter = reporter
        self._chat = chat
        self._clock = clock
        self._metrics = metrics
        self._settings = _Settings(rollout_timeout, publish_interval)
        self._sleep = sleep
        self._stopping = stopping
        self._concurrency = concurrency

    def run(self, lease: Lease) -> None:
        """Run the batch under `lease` until every member has ended (or the lease is lost, or we shut down)."""
        operation = lease.confirm()
        pending = [member for member in operation.members if not member.phase.is_terminal]
        events: queue.Queue[object] = queue.Queue()
        workers = max(1, min(self._concurrency, len(pending)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"batch-{operation.id}") as pool:
            for member in pending:
                pool.submit(self._member, lease, operation.id, member, events)
            operation = self._own(lease, operation, len(pending), events)
        if lease.lost.is_set():
            return
        if not operation.phase.is_terminal:
            if self._stopping.is_set():
                self._hand_over(lease)
            return
        if not pending:
            self._publish(lease, operation)  # otherwise the owner published the last member's ending already
        self._count(operation)
        log.info("batch finished", extra={"operation_id": operation.id, "phase": operation.phase.value})

    # --- the owner: the only writer ------------------------------------------------------------------------------

    def _own(self, lease: Lease, operation: Operation, running: int, events: queue.Queue[object]) -> Operation:
        progress: dict[str, MemberObserved] = {}  # the latest unfinished status per member, not stored yet
        last_flush: datetime | None = None
        wait = max(self._settings.publish_interval.total_seconds(), 0.05)
        while running:
            try:
                item = events.get(timeout=wait)
            except queue.Empty:
                item = None
            if item is _DONE:
                running -= 1
            elif lease.lost.is_set():
                continue  # another replica owns the record now: drain quietly
            elif isinstance(item, MemberObserved) and not item.status.is_finished:
                progress[item.target] = item
            elif isinstance(item, MemberReceiptRecorded | MemberObserved | MemberErrored):
                progress.pop(item.target, None)  # its ending supersedes any progress still waiting
                operation = self._store(lease, item)
                if isinstance(item, MemberObserved | MemberErrored):
                    self._publish(lease, operation)
            now = self._clock.now()
            is_due = last_flush is None or now - last_flush >= self._settings.publish_interval
            if progress and is_due and not lease.lost.is_set():
                for observed in progress.values():
                    operation = self._store(lease, observed)
                progress.clear()
                last_flush = now
                self._publish(lease, operation)
        return operation

    def _store(self, lease: Lease, event: MemberEvent) -> Operation:
        return lease.decide(event)

    def _publish(self, lease: Lease, operation: Operation) -> None:
        """The batch's one progress message: posted once in the thread, then edited in place.

        Refreshes are PROGRESS (coalesced; under Slack's limits they slow down or give way to a newer one); the
        batch's final state is URGENT, so the message never stays behind showing a member still running.
        """
        message = messages.batch_progress_message(operation)
        is_final = operation.phase.is_terminal
        priority = Priority.URGENT if is_final else Priority.PROGRESS

        def publish() -> None:
            ref = operation.progress_message
            if ref is None:
                first = Priority.URGENT if is_final else Priority.NORMAL
                posted = self._reporter.post_in_thread(operation, message, first, lease.holds)
                if posted is not None:
                    lease.write(lambda op: op.model_copy(update={"progress_message": posted}))
            else:
                self._chat.update(ref, message, priority=priority, still_current=lease.holds)

        try:
            self._reporter.quietly(operation.id, publish)
        except FencedOut:
            # Another replica took the batch over while this one waited for Slack: the workers stop, the
            # owner drains quietly, and the new owner's progress message is the one that counts.
            log.warning("lost the batch while publishing its progress", extra={"operation_id": operation.id})
            lease.lost.set()

    def _hand_over(self, lease: Lease) -> None:
        transition = lease.hand_over()
        if transition is not None:
            operation = transition.operation
            self._reporter.quietly(
                operation.id, self._reporter.post_in_thread, operation, messages.handover_line(operation)
            )
        log.info("handed the batch over on shutdown", extra={"operation_id": lease.operation_id})

    def _count(self, operation: Operation) -> None:
        if operation.started_at is None or operation.finished_at is None:
            return
        seconds = (operation.finished_at - operation.started_at).total_seconds()
        for member in operation.members:
            self._metrics.rollout_finished(member.target.backend.value, member.phase.value, seconds)

    # --- the workers: one member each, talking to the owner only through the queue --------------------------

    def _member(
        self, lease: Lease, operation_id: OperationId, member: BatchMember, events: queue.Queue[object]
    ) -> None:
        try:
            self._roll_back_and_watch(lease, operation_id, member, events.put)
        except Exception:  # a bug in one member fails that member, never the batch or the bot
            log.exception("internal error in a batch member", extra={"operation_id": operation_id})
            events.put(MemberErrored(member.name, messages.internal_error_text(operation_id)))
        finally:
            events.put(_DONE)

    def _roll_back_and_watch(
        self, lease: Lease, operation_id: OperationId, member: BatchMember, tell: Callable[[object], None]
    ) -> None:
        backend = self._backend(member.target)
        if member.receipt is None:
            if self._stopping.is_set():
                # A member still waiting for a worker when the replica is told to stop is not started here: a
                # rollback begun now (helm's waits for its pods) would hold the shutdown up or be cut off halfway.
                # The replica that takes the batch over starts it.
                return
            receipt = None
            try:
                for attempt in backend_calls(self._sleep, MAX_ROLL_BACK_ATTEMPTS):
                    with attempt:
                        if lease.lost.is_set():
                            return  # never call the backend for an execution that is no longer ours
                        receipt = backend.roll_back(member.target, member.plan, operation_id)
            except TemporaryError as exc:
                tell(MemberErrored(member.name, f"the backend stayed unavailable: {exc}"))
                return
            except (PermanentError, UserError) as exc:
                tell(MemberErrored(member.name, str(exc)))
                return
            if receipt is None:
                return
            tell(MemberReceiptRecorded(member.name, receipt))
        resume = member.last_status.resume_token if member.last_status else None
        last: RolloutStatus | None = None
        try:
            for attempt in backend_calls(self._sleep, MAX_WATCH_ATTEMPTS):
                with attempt:
                    timeout = self._settings.rollout_timeout
                    for status in backend.watch_rollout(member.target, member.plan, timeout, resume):
                        if lease.lost.is_set() or self._stopping.is_set():
                            return  # the owner hands the batch over (or already lost it)
                        last = status
                        resume = status.resume_token or resume
                        if status.is_finished:
                            break
                        tell(MemberObserved(member.name, status))
        except TemporaryError as exc:
            tell(MemberErrored(member.name, f"lost track of the rollout: {exc}"))
            return
        except (PermanentError, UserError) as exc:
            tell(MemberErrored(member.name, str(exc)))
            return
        if last is None or not last.is_finished:
            tell(MemberErrored(member.name, "the rollout watch ended without an outcome"))
            return
        tell(MemberObserved(member.name, last))
