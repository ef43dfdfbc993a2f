"""GitOps reconcilers around a rollback: find them at request time, pause before rolling back, resume, remind.

Without a `Reconcilers` port (ECS-only bots, the tests' memory backends) everything here is a no-op, so a
target no reconciler manages behaves as it always did. Pauses are recorded twice on purpose: in the operation
(what it did, for its thread and its `rollbot_operation` payload) and in `SyncPauses` (what is still paused,
which outlives the operation and is what `resume-sync`, the reminders and `/rollback status` read).
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from datetime import timedelta

from bot.core import messages
from bot.core.catalog import Target
from bot.core.errors import FencedOut, TemporaryError, UserError
from bot.core.gitops import (
    GitOpsDecision,
    GitOpsState,
    Reconciler,
    SyncPause,
    decide,
    describe,
    next_reminder,
    pause_patch,
    restore_patch,
)
from bot.core.messages import ChatMessage
from bot.core.messages import gitops as words
from bot.core.operations import MessageRef, Operation
from bot.core.outbound import Priority
from bot.core.rollouts import Change, RollbackPlan, RolloutPhase, RolloutStatus
from bot.flows.lease import Lease
from bot.ports import Chat, Clock, OperationStore, Reconcilers, SyncPauses

log = logging.getLogger("rollbot.flows")


class SyncControl:
    def __init__(
        self,
        *,
        reconcilers: Reconcilers | None,
        pauses: SyncPauses | None,
        chat: Chat,
        store: OperationStore,
        clock: Clock,
        reminder_every: timedelta,
        command_name: str,
    ) -> None:
        self._reconcilers = reconcilers
        self._pauses = pauses
        self._chat = chat
        self._store = store
        self._clock = clock
        self._reminder_every = reminder_every
        self._command = command_name
        self._reminding = threading.Lock()

    # --- request time ---------------------------------------------------------------------------------------

    def reconciler(self, target: Target) -> Reconciler | None:
        return None if self._reconcilers is None else self._reconcilers.reconciler(target)

    def judge(self, target: Target, suspend_requested: bool) -> tuple[GitOpsDecision, GitOpsState | None]:
        """What a rollback request of `target` does about its reconciler, and what the operation records."""
        reconciler = self.reconciler(target)
        decision = decide(reconciler, target.gitops, suspend_requested)
        if reconciler is None:
            return decision, None
        state = GitOpsState(reconciler=reconciler, suspend=decision.action == "suspend")
        if self._pauses is not None and self._pauses.get(reconciler.ref.key) is not None:
            # Paused by an earlier rollback and not resumed yet: it stays paused, and is restored from that record.
            state = state.model_copy(update={"suspend": True})
        return decision, state

    def batch_refusal(self, batch: Operation, suspend_requested: bool) -> ChatMessage | None:
        """A batch pauses nothing: a member whose reconciler would revert it (and is not warned about) is refused.

        Pausing is decided per target, with its own preview; a batch of many would hide it. The member is named,
        so people roll it back on its own.
        """
        for member in batch.members:
            decision, _ = self.judge(member.target, suspend_requested)
            if decision.action in ("refuse", "suspend") and decision.line is not None:
                return words.batch_refused(member.target, decision.line, self._command)
        return None

    def resume_request(self, target: Target, current_revision: int) -> tuple[RollbackPlan, GitOpsState] | None:
        """The plan of `resume-sync`: the recorded settings put back; None when rollbot paused nothing here."""
        reconciler = self.reconciler(target)
        pause = None
        if reconciler is not None and self._pauses is not None:
            pause = self._pauses.get(reconciler.ref.key)
        if reconciler is None or pause is None or self._reconcilers is None:
            return None
        now = self._reconcilers.settings(target, reconciler.ref)
        changes = tuple(
            Change(
                scope=reconciler.ref.display,
                field=field,
                before=words.settings_text(now.get(field)),
                after=words.settings_text(value),
            )
            for field, value in sorted(pause.previous.items())
        )
        plan = RollbackPlan(
            from_revision=current_revision,
            to_revision=current_revision,
            changes=changes,
            notes=(words.resume_note(pause),),
        )
        return plan, GitOpsState(reconciler=reconciler, previous=dict(pause.previous), paused=True)

    # --- execution ------------------------------------------------------------------------------------------

    def pause(self, lease: Lease, operation: Operation) -> Operation:
        """Record the reconciler's settings in the operation, then pause it; idempotent across takeovers."""
        state = operation.gitops
        if state is None or not state.suspend or state.paused or self._reconcilers is None:
            return operation
        ref = state.reconciler.ref
        target = operation.target
        if state.previous is None:
            earlier = self._pauses.get(ref.key) if self._pauses is not None else None
            previous = dict(earlier.previous) if earlier is not None else self._reconcilers.settings(target, ref)
            recorded = state.model_copy(update={"previous": previous})
            operation = lease.write(lambda op: op.model_copy(update={"gitops": recorded}))
            state = recorded
        self._reconcilers.patch(target, ref, pause_patch(ref))
        now = self._clock.now()
        if self._pauses is not None and self._pauses.get(ref.key) is None:
            thread = operation.request_message
            self._pauses.put(
                SyncPause(
                    ref=ref,
                    target=target.name,
                    previous=state.previous or {},
                    operation_id=operation.id,
                    channel=operation.channel,
                    thread_ts=thread.ts if thread is not None else None,
                    paused_at=now,
                    remind_at=now + self._reminder_every,
                )
            )
        paused = state.model_copy(update={"paused": True})
        operation = lease.write(lambda op: op.model_copy(update={"gitops": paused}))
        log.info("reconciler paused", extra={"operation_id": operation.id, "reconciler": ref.key})
        return operation

    def resume(self, operation: Operation) -> RolloutStatus:
        """Put back exactly what the pause recorded, and forget the pause."""
        state = operation.gitops
        if state is None or state.previous is None or self._reconcilers is None:
            return RolloutStatus(phase=RolloutPhase.FAILED, summary="nothing recorded to restore", reason="no record")
        ref = state.reconciler.ref
        self._reconcilers.patch(operation.target, ref, restore_patch(ref, state.previous))
        if self._pauses is not None:
            self._pauses.remove(ref.key)
        log.info("reconciler resumed", extra={"operation_id": operation.id, "reconciler": ref.key})
        return RolloutStatus(
            phase=RolloutPhase.SUCCEEDED, summary=f"sync resumed: {ref.display} has its recorded settings back"
        )

    def paused_line(self, operation: Operation) -> str | None:
        state = operation.gitops
        if state is None or not state.paused or operation.is_resume_sync:
            return None
        return words.paused_line(state.reconciler.ref, operation.target.name, self._command)

    # --- status and reminders -------------------------------------------------------------------------------

    def status_lines(self, target: Target) -> list[str]:
        reconciler = self.reconciler(target)
        if reconciler is None:
            return []
        lines = [words.reconciler_status_line(describe(reconciler))]
        pause = self._pauses.get(reconciler.ref.key) if self._pauses is not None else None
        if pause is not None:
            lines.append(words.pause_status_line(pause, self._clock.now(), self._command))
        return lines

    def remind_soon(self, submit: Callable[[Callable[[], None]], None]) -> None:
        """Hand the reminders to `submit` (a worker), once at a time: a post waiting for Slack's budget must not
        hold up the sweep that called this."""
        if self._pauses is None or not self._reminding.acquire(blocking=False):
            return

        def work() -> None:
            try:
                self.remind()
            except TemporaryError:  # Slack or Redis briefly away: the next sweep reminds
                log.warning("sync-pause reminders postponed", exc_info=True)
            finally:
                self._reminding.release()

        try:
            submit(work)
        except RuntimeError:
            # The reporting pool is shut down (the replica is stopping): another replica's sweep reminds.
            self._reminding.release()
            log.info("sync-pause reminders left to another replica: this one is stopping")
        except BaseException:
            self._reminding.release()
            raise

    def remind(self) -> int:
        """Post the reminders that are due (one replica per reminder); returns how many were posted."""
        if self._pauses is None:
            return 0
        now = self._clock.now()
        posted = 0
        for pause in self._pauses.all():
            if pause.remind_at > now or pause.thread_ts is None:
                continue
            if self._store.first_delivery(
                f"sync-reminder:{pause.ref.key}:{pause.remind_at.isoformat()}", self._reminder_every
            ):
                thread = MessageRef(channel=pause.channel, ts=pause.thread_ts)
                line = words.reminder_line(pause, now, self._command)
                try:
                    # The lowest priority: a reminder never delays what people act on. It may wait for Slack's
                    # budget, so it is dropped if the sync was resumed meanwhile.
                    self._chat.post(
                        pause.channel,
                        messages.plain(line),
                        thread,
                        priority=Priority.PROGRESS,
                        still_current=functools.partial(self._is_paused, pause.ref.key),
                    )
                except FencedOut:
                    continue
                except UserError as exc:  # the thread is gone or the bot left the channel: reschedule, say why
                    log.warning(
                        "sync-pause reminder not posted", extra={"reconciler": pause.ref.key, "error": str(exc)}
                    )
                else:
                    posted += 1
            later = pause.model_copy(update={"remind_at": next_reminder(pause.paused_at, self._reminder_every, now)})
            if self._pauses.get(pause.ref.key) is not None:
                self._pauses.put(later)
        return posted

    def _is_paused(self, reconciler_key: str) -> bool:
        return self._pauses is not None and self._pauses.get(reconciler_key) is not None
