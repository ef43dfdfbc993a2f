"""Execution: claim an approved operation, roll back once, watch the rollout to its end, report it.

Exactly once across replicas: execution starts by storing the `ExecutionClaimed` transition (compare-and-set),
which raises the operation's fencing token; whoever loses stops. The winner holds a `Lease` (renewed in the
background) and passes its token with every write. When a replica dies its lease lapses and the sweeper of any
replica takes the operation over, calling `roll_back` again (the backends recognise their own earlier rollback
by the operation id they recorded) and watching again. A replica paused past its lease wakes up fenced out: it
stops without writing or posting anything. An approved operation whose target someone else took meanwhile
fails at once, saying who holds it, instead of waiting to run later.

The executor never waits for Slack: what it tells the thread is queued on the operation's reporting lane
(`Reporter.in_order`), so the rollback starts as soon as the claim is stored and the watch keeps pace with the
rollout however busy Slack is.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta

from bot.core import messages
from bot.core.catalog import BackendKind, Target
from bot.core.errors import (
    FencedOut,
    PermanentError,
    TargetBusy,
    TemporaryError,
    UserError,
)
from bot.core.lifecycle import (
    ClaimRefused,
    ExecutionClaimed,
    ReceiptRecorded,
    RollbackErrored,
    RolloutObserved,
)
from bot.core.operations import Operation, OperationId, Phase
from bot.core.outbound import Priority
from bot.core.rollouts import RollbackReceipt, RolloutStatus
from bot.core.thread_digest import ThreadDecision, ThreadMemory, decide_thread
from bot.flows.gitops import SyncControl
from bot.flows.journal import Journal
from bot.flows.lease import Lease
from bot.flows.reporting import Reporter
from bot.flows.retrying import MAX_ROLL_BACK_ATTEMPTS, MAX_WATCH_ATTEMPTS, Sleep, backend_calls
from bot.ports import Backend, Clock, Metrics, OperationStore

log = logging.getLogger("rollbot.flows")

Submit = Callable[[Callable[[], None]], None]


@dataclass
class _Watch:
    """What one execution has already told the thread (kept across interrupted watches), so it stays bounded."""

    memory: ThreadMemory | None = None


class Executor:
    def __init__(
        self,
        *,
        backends: Mapping[BackendKind, Backend],
        journal: Journal,
        reporter: Reporter,
        store: OperationStore,
        clock: Clock,
        metrics: Metrics,
        submit: Submit,
        replica_id: str,
        rollout_timeout: timedelta,
        lease: timedelta,
        sleep: Sleep,
        stopping: threading.Event,
        gitops: SyncControl,
        run_batch: Callable[[Lease], None] | None = None,
    ) -> None:
        self._gitops = gitops
        self._backends = backends
        self._run_batch = run_batch  # batches run their members in parallel (bot.flows.batch)
        self._journal = journal
        self._reporter = reporter
        self._store = store
        self._clock = clock
        self._metrics = metrics
        self._submit = submit
        self.replica_id = replica_id
        self._rollout_timeout = rollout_timeout
        self._lease = lease
        self._sleep = sleep
        self._stopping = stopping
        self._mutex = threading.Lock()
        self._running: set[OperationId] = set()
        self._queued: set[OperationId] = set()  # handed to the executor, not started yet

    def backend(self, target: Target) -> Backend:
        backend = self._backends.get(target.backend)
        if backend is None:
            raise UserError(f"the {target.backend.value} backend is not configured in this bot")
        return backend

    def is_busy_with(self, operation_id: OperationId) -> bool:
        with self._mutex:
            return operation_id in self._running or operation_id in self._queued

    def running(self) -> Sequence[OperationId]:
        with self._mutex:
            return sorted(self._running)

    def hand_over(self, operation_id: OperationId) -> None:
        """Queue an execution once; the sweeper does not queue it again while it waits for a worker."""
        with self._mutex:
            if operation_id in self._queued or operation_id in self._running:
                return
            self._queued.add(operation_id)
        try:
            self._submit(lambda: self.execute(operation_id))
        except Exception:
            with self._mutex:
                self._queued.discard(operation_id)
            raise

    def execute(self, operation_id: OperationId) -> None:
        """Run an approved operation to its end, unless another replica has it. Never raises."""
        with self._mutex:
            self._queued.discard(operation_id)
            if operation_id in self._running:
                return
            self._running.add(operation_id)
        lease: Lease | None = None
        try:
            lease = self._claim(operation_id)
            if lease is not None:
                self._run(lease)
        except FencedOut:
            pass  # logged by the lease; the new executor owns the record and the thread
        except Exception:  # the per-operation guard: a bug fails this operation, not the bot
            log.exception("internal error while executing", extra={"operation_id": operation_id})
            if lease is not None and not lease.lost.is_set():
                self._reporter.quietly(operation_id, self._fail, lease, messages.internal_error_text(operation_id))
        finally:
            if lease is not None:
                lease.release()
            with self._mutex:
                self._running.discard(operation_id)

    def _claim(self, operation_id: OperationId) -> Lease | None:
        """Win the execution of `operation_id` with compare-and-set, or learn that someone else has it."""
        operation = self._store.get(operation_id)
        if operation is None:
            return None
        now = self._clock.now()
        takeover = operation.phase is Phase.ROLLING_BACK
        if takeover and operation.lease_until is not None and operation.lease_until > now:
            if operation.executor != self.replica_id:
                return None  # alive elsewhere
        elif operation.phase not in {Phase.APPROVED, Phase.ROLLING_BACK}:
            return None
        claim = ExecutionClaimed(executor=self.replica_id, lease_until=now + self._lease)
        try:
            transition = self._journal.decide(operation_id, claim, lock_ttl=self._lease * 2)
        except TargetBusy as exc:
            # The target was taken while this waited (its lock lapsed): end it now rather than run it later.
            self._journal.decide(operation_id, ClaimRefused(reason=str(exc)))
            log.warning("approved operation could not take its target", extra={"operation_id": operation_id})
            return None
        if transition is None or not transition.changed or transition.operation.executor != self.replica_id:
            return None
        claimed = transition.operation
        lease = Lease(
            claimed,
            journal=self._journal,
            store=self._store,
            clock=self._clock,
            duration=self._lease,
            stopping=self._stopping,
        )
        if takeover:
            self._reporter.in_order(
                operation_id, self._reporter.post_in_thread, claimed, messages.takeover_line(claimed), Priority.NORMAL
            )
        log.info("execution claimed", extra={"operation_id": operation_id, "takeover": takeover})
        return lease

    def _run(self, lease: Lease) -> None:
        operation = lease.confirm()
        if operation.is_batch and self._run_batch is not None:
            lease.keep()
            self._run_batch(lease)
            return
        backend = self.backend(operation.target)
        lease.keep()
        if operation.is_resume_sync:
            self._resume_sync(lease, operation)
            return
        if operation.receipt is None:
            paused = self._pause_reconciler(lease, operation)
            if paused is None:
                return
            operation = paused
            receipt = self._roll_back(backend, operation, lease)
            if receipt is None:
                return
            operation = lease.decide(ReceiptRecorded(receipt=receipt))
        self._watch(backend, operation, lease)

    def _pause_reconciler(self, lease: Lease, operation: Operation) -> Operation | None:
        """With `--suspend-sync` / `gitops: suspend`: pause the reconciler first; None when that failed."""
        was_paused = operation.gitops is not None and operation.gitops.paused
        try:
            for attempt in backend_calls(self._sleep, MAX_ROLL_BACK_ATTEMPTS):
                with attempt:
                    operation = self._gitops.pause(lease, lease.confirm())
        except (TemporaryError, PermanentError, UserError) as exc:
            # Rolling back anyway would be undone by the reconciler: stop before changing anything.
            self._fail(lease, f"could not pause the GitOps sync, so nothing was rolled back: {exc}")
            return None
        line = self._gitops.paused_line(operation)
        if line is not None and not was_paused:
            self._reporter.quietly(
                operation.id,
                self._reporter.post_in_thread,
                operation,
                messages.plain(line),
                Priority.URGENT,
                lease.holds,
            )
        return operation

    def _resume_sync(self, lease: Lease, operation: Operation) -> None:
        try:
            for attempt in backend_calls(self._sleep, MAX_ROLL_BACK_ATTEMPTS):
                with attempt:
                    lease.confirm()
                    status = self._gitops.resume(operation)
        except TemporaryError as exc:
            self._fail(lease, f"the Kubernetes API stayed unavailable: {exc}")
            return
        except (PermanentError, UserError) as exc:
            self._fail(lease, str(exc))
            return
        self._finish(lease, status)

    def _roll_back(self, backend: Backend, operation: Operation, lease: Lease) -> RollbackReceipt | None:
        try:
            for attempt in backend_calls(self._sleep, MAX_ROLL_BACK_ATTEMPTS):
                with attempt:
                    lease.confirm()  # never call the backend for an execution that is no longer ours
                    return backend.roll_back(operation.target, operation.plan, operation.id)
        except TemporaryError as exc:
            self._fail(lease, f"the backend stayed unavailable: {exc}")
        except (PermanentError, UserError) as exc:
            self._fail(lease, str(exc))
        return None

    def _watch(self, backend: Backend, operation: Operation, lease: Lease) -> None:
        """Follow the rollout to its end; a watch cut by a temporary error is picked up again where it was."""
        watch = _Watch()
        try:
            for attempt in backend_calls(self._sleep, MAX_WATCH_ATTEMPTS):
                with attempt:
                    if attempt.retry_state.attempt_number > 1:
                        log.warning("rollout watch interrupted; watching again", extra={"operation_id": operation.id})
                        operation = lease.confirm()
                    resume = operation.last_status.resume_token if operation.last_status else None
                    statuses = backend.watch_rollout(operation.target, operation.plan, self._rollout_timeout, resume)
                    self._follow(lease, statuses, watch)
        except TemporaryError as exc:
            self._fail(lease, f"lost track of the rollout: {exc}")
        except (PermanentError, UserError) as exc:
            self._fail(lease, str(exc))

    def _follow(self, lease: Lease, statuses: Iterator[RolloutStatus], watch: _Watch) -> None:
        last: RolloutStatus | None = None
        for status in statuses:
            if lease.lost.is_set():
                return  # another replica has it now: say nothing more
            if self._stopping.is_set():
                self._hand_over(lease)
                return
            last = status
            operation = lease.confirm()
            now = self._clock.now()
            memory = watch.memory or ThreadMemory(watch_started_at=now)
            decision = decide_thread(memory, status, now)
            watch.memory = decision.memory
            self._tell_news(lease, operation, decision)
            if status.is_finished:
                break
            if decision.publish_progress:
                operation = lease.decide(RolloutObserved(status=status))
                self._publish_progress(lease, operation, status)
                if decision.refresh_request:
                    # The channel message shows the latest summary too, but rarely (chat.update is tier 3).
                    operation = lease.confirm()
                    self._reporter.in_order(
                        operation.id,
                        self._reporter.refresh_request,
                        operation,
                        Priority.PROGRESS,
                        lease.holds,
                        coalesce="refresh",
                    )
        if lease.lost.is_set():
            return
        if self._stopping.is_set() and (last is None or not last.is_finished):
            self._hand_over(lease)
            return
        if last is None or not last.is_finished:
            self._fail(lease, "the rollout watch ended without an outcome")
            return
        self._finish(lease, last)

    def _hand_over(self, lease: Lease) -> None:
        transition = lease.hand_over()
        if transition is not None:
            operation = transition.operation
            self._reporter.in_order(
                operation.id,
                self._reporter.post_in_thread,
                operation,
                messages.handover_line(operation),
                Priority.NORMAL,
            )
        log.info("handed the rollout over on shutdown", extra={"operation_id": lease.operation_id})

    def _tell_news(self, lease: Lease, operation: Operation, decision: ThreadDecision) -> None:
        """At most one line per observation, and few per rollout: `thread_digest` decided which."""
        post = self._reporter.post_in_thread
        if decision.digest is not None:
            line = messages.digest_line(operation, decision.digest)
            self._reporter.in_order(operation.id, post, operation, line, Priority.NORMAL, lease.holds)
        if decision.closing_notes:
            line = messages.closing_notes_line(operation, decision.closing_notes)
            self._reporter.in_order(operation.id, post, operation, line, Priority.NORMAL, lease.holds)

    def _publish_progress(self, lease: Lease, operation: Operation, status: RolloutStatus) -> None:
        lease.confirm()  # not a line from a replica that was paused past its lease

        def remember(ref: object) -> None:
            lease.write(lambda op: op.model_copy(update={"progress_message": ref}))

        self._reporter.publish_progress(operation, status, remember, lease.holds)

    def _finish(self, lease: Lease, status: RolloutStatus) -> None:
        operation = lease.decide(RolloutObserved(status=status))
        self._after_finish(lease, operation, status)

    def _fail(self, lease: Lease, reason: str) -> None:
        operation = lease.decide(RollbackErrored(reason=reason))
        self._after_finish(lease, operation, operation.last_status)

    def _after_finish(self, lease: Lease, operation: Operation, status: RolloutStatus | None) -> None:
        if not operation.phase.is_terminal:
            return
        if status is not None:
            self._publish_progress(lease, operation, status)
        # The final thread line is the lifecycle's own PostInThread effect, already applied.
        if operation.started_at is not None and operation.finished_at is not None:
            seconds = (operation.finished_at - operation.started_at).total_seconds()
            self._metrics.rollout_finished(operation.target.backend.value, operation.phase.value, seconds)
        log.info("rollback finished", extra={"operation_id": operation.id, "phase": operation.phase.value})
