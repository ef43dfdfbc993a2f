"""Reporting: what the bot writes to Slack about an operation, after the change it reports is stored.

The lifecycle's effects (thread lines, request-message refreshes, ephemeral answers) are applied here; rollout
progress goes to one thread message updated in place. Nothing that changes the world waits for Slack: every
report about an operation goes through its ordered lane of the `ReportQueue` (the effects of one operation leave
in order, on reporting workers), and an approval's `StartExecution` hands the execution over at once, after its
lines are queued and before they are sent. A chat call after a committed change is retried while Slack is
briefly unavailable, and a failure is logged, never undoing the change ("quietly"); what Slack keeps refusing is
owed. Every text comes from `bot.core.messages`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable
from typing import Final, TypeVar

from bot.core import messages
from bot.core.effects import Effect, PostInThread, RefreshRequestMessage, StartExecution, TellUser
from bot.core.errors import FencedOut
from bot.core.lifecycle import Transition
from bot.core.messages import ChatMessage
from bot.core.operations import MessageRef, Operation, OperationId
from bot.core.outbound import Priority
from bot.core.rollouts import RolloutStatus
from bot.flows.report_queue import ReportQueue
from bot.flows.retrying import Sleep, chat_calls
from bot.ports import Chat, Metrics, OperationStore

log = logging.getLogger("rollbot.flows")

_T = TypeVar("_T")

# How long a report waits for the ref of a request message just posted (written right after the post).
REQUEST_REF_DELAYS: Final = (0.05, 0.1, 0.2, 0.4, 0.8)


class Reporter:
    def __init__(
        self,
        *,
        chat: Chat,
        store: OperationStore,
        metrics: Metrics,
        start_execution: Callable[[OperationId], None],
        sleep: Sleep,
        reports: ReportQueue,
        owe: Callable[[OperationId, tuple[str, ...], bool], None] | None = None,
    ) -> None:
        self._chat = chat
        self._store = store
        self._metrics = metrics
        self._start_execution = start_execution
        self._sleep = sleep
        self._reports = reports
        # Where reports Slack kept refusing go, to be made good later: (operation, thread lines, refresh?).
        self._owe = owe

    def apply(
        self,
        transition: Transition,
        told: list[str] | None = None,
        still_current: Callable[[], bool] | None = None,
        then: Callable[[], None] | None = None,
    ) -> None:
        """Apply a stored transition's effects once: answers to `told` now, Slack effects queued in order on the
        operation's lane, an execution handed over at once (after its lines are queued, before they are sent).

        `still_current` (executor writes) is asked before each Slack effect; once it says no, the rest is left to
        the replica that took the operation over. `then` runs on the lane after the effects (whoever listens for
        finished operations).
        """
        operation = transition.operation
        to_report: list[Effect] = []
        to_start: list[OperationId] = []
        for effect in transition.effects:
            match effect:
                case TellUser(text=text) if told is not None:
                    told.append(text)
                case StartExecution(operation_id=operation_id):
                    to_start.append(operation_id)
                case TellUser() | PostInThread() | RefreshRequestMessage():
                    to_report.append(effect)
        if to_report or then is not None:
            self._reports.add(operation.id, lambda: self._report(transition, to_report, still_current, then))
        try:
            for operation_id in to_start:
                self._quietly(operation.id, self._start_execution, operation_id)
        finally:
            self._reports.kick(operation.id)

    def in_order(
        self,
        operation_id: OperationId,
        action: Callable[..., object],
        *args: object,
        coalesce: Hashable | None = None,
        lane: str | None = None,
    ) -> None:
        """Queue a chat side effect on the operation's lane, after what is queued already; failures are logged.

        A waiting report with the same `coalesce` tag (a progress refresh) is replaced by this newer one. A named
        `lane` is a second queue of the operation, for what need not keep pace with its thread (reactions).
        """

        def report() -> None:
            try:
                self._quietly(operation_id, action, *args)
            except FencedOut:
                log.warning("lost the lease before reporting; saying nothing", extra={"operation_id": operation_id})

        key = operation_id if lane is None else f"{operation_id}/{lane}"
        self._reports.later(key, report, coalesce=coalesce)

    def _report(
        self,
        transition: Transition,
        effects: list[Effect],
        still_current: Callable[[], bool] | None,
        then: Callable[[], None] | None,
    ) -> None:
        try:
            self._report_effects(transition, effects, still_current)
        except FencedOut:
            log.warning(
                "lost the lease while reporting; saying nothing more", extra={"operation_id": transition.operation.id}
            )
        if then is not None:
            then()

    def _report_effects(
        self, transition: Transition, effects: list[Effect], still_current: Callable[[], bool] | None
    ) -> None:
        """The Slack effects of one transition, in order; one failing does not stop the next."""
        operation = transition.operation
        owed_lines: list[str] = []
        owe_refresh = False
        for effect in effects:
            if still_current is not None and not self._asks(operation.id, still_current):
                log.warning("lost the lease before reporting; saying nothing", extra={"operation_id": operation.id})
                return
            match effect:
                case TellUser(user=user, text=text):
                    self._metrics.approval_recorded("refused")
                    self._quietly(
                        operation.id, self._chat.post_ephemeral, operation.channel, user, messages.not_allowed(text)
                    )
                case PostInThread(text=text):
                    # Lifecycle lines (approvals, outcomes, final lines) are what people act on.
                    line = messages.thread_line(operation, text)
                    if not self._quietly(
                        operation.id, self.post_in_thread, operation, line, Priority.URGENT, still_current
                    ):
                        owed_lines.append(text)
                case RefreshRequestMessage():
                    if not self._quietly(operation.id, self.refresh_request, operation, Priority.URGENT, still_current):
                        owe_refresh = True
        if (owed_lines or owe_refresh) and self._owe is not None:
            # Slack outlasted the retries: the report is owed, not dropped; the sweeper makes it good.
            self._owe(operation.id, tuple(owed_lines), owe_refresh)

    def make_good(self, operation_id: OperationId, lines: tuple[str, ...], refresh: bool) -> None:
        """Post what an earlier report could not: the request message as it is now, and the owed thread lines.

        Raises ChatUnavailable while Slack still refuses, so the caller keeps the debt for the next sweep.
        """
        operation = self._store.get(operation_id)
        if operation is None:
            return
        if refresh:
            self.refresh_request(operation, Priority.URGENT)
        for text in lines:
            self.post_in_thread(operation, messages.thread_line(operation, text), Priority.URGENT)

    def post_in_thread(
        self,
        operation: Operation,
        message: ChatMessage,
        priority: Priority = Priority.NORMAL,
        still_current: Callable[[], bool] | None = None,
    ) -> MessageRef | None:
        """`still_current` (an executor's lease) is asked again right before the message leaves for Slack."""
        request_message = self._request_message(operation)
        if request_message is None:
            return None
        return self.patiently(
            lambda: self._chat.post(
                operation.channel, message, thread=request_message, priority=priority, still_current=still_current
            )
        )

    def refresh_request(
        self,
        operation: Operation,
        priority: Priority = Priority.URGENT,
        still_current: Callable[[], bool] | None = None,
    ) -> None:
        """Re-render the request message: URGENT for a phase change, PROGRESS for the periodic summary."""
        request_message = self._request_message(operation)
        if request_message is None:
            return
        rendered = messages.request_message(operation)
        ref = self.patiently(
            lambda: self._chat.update(request_message, rendered, priority=priority, still_current=still_current)
        )
        if ref is not None and ref != request_message:
            # The original was deleted; the bot re-posted it. Votes on the new message must count too.
            self._store.link_message(operation.id, ref)

    def publish_progress(
        self,
        operation: Operation,
        status: RolloutStatus,
        remember: Callable[[MessageRef], object],
        still_current: Callable[[], bool] | None = None,
    ) -> None:
        """Post the progress message once, then edit it in place; `remember` stores the ref of the first post.

        Queued on the operation's lane; a newer state replaces one still waiting there. Refreshes are PROGRESS
        (coalesced, they give way under Slack's limits); the final state is URGENT.
        """
        message = messages.progress_message(operation, status)
        priority = Priority.URGENT if operation.phase.is_terminal else Priority.PROGRESS

        def publish() -> None:
            ref = operation.progress_message
            if ref is None:  # maybe posted since this state was queued: the store knows
                stored = self._store.get(operation.id)
                ref = stored.progress_message if stored is not None else None
            if ref is None:
                posted = self.post_in_thread(operation, message, priority, still_current)
                if posted is not None:
                    remember(posted)
            else:
                self._chat.update(ref, message, priority=priority, still_current=still_current)

        self.in_order(operation.id, publish, coalesce="progress")

    def _request_message(self, operation: Operation) -> MessageRef | None:
        """The request message to report under. A vote can be stored in the moment between the request message's
        post and the write of its ref (the vote finds the operation by the message's link, written first): its
        lines wait on the lane, briefly, until the store knows the ref. None for an operation never posted."""
        if operation.request_message is not None:
            return operation.request_message
        for delay in (*REQUEST_REF_DELAYS, None):
            stored = self._store.get(operation.id)
            if stored is None or stored.request_message is not None or not stored.phase.is_in_flight:
                return stored.request_message if stored is not None else None
            if delay is not None:
                self._sleep(delay)
        return None

    def patiently(self, call: Callable[[], _T]) -> _T:
        """A chat call after a committed change: Slack being briefly unavailable must not lose the line."""
        for attempt in chat_calls(self._sleep):
            with attempt:
                return call()
        raise AssertionError("unreachable")  # pragma: no cover

    def _asks(self, operation_id: OperationId, still_current: Callable[[], bool]) -> bool:
        try:
            return still_current()
        except Exception:  # the store is unreachable: better a late line than a lost one
            log.warning("could not confirm the lease before reporting", extra={"operation_id": operation_id})
            return True

    def quietly(self, operation_id: OperationId | str, action: Callable[..., object], *args: object) -> bool:
        """Chat side effects after a committed state change, from the caller's thread, once the reports queued
        for the operation have gone (so they stay in order): log failures, never undo the change.

        False when the action failed (the caller may owe it).
        """
        self._reports.settle(operation_id)
        return self._quietly(operation_id, action, *args)

    def _quietly(self, operation_id: OperationId | str, action: Callable[..., object], *args: object) -> bool:
        try:
            action(*args)
        except FencedOut:
            raise  # not a failure to report: another replica owns the operation now, and says what happens
        except Exception:
            log.exception("side effect failed", extra={"operation_id": operation_id})
            return False
        return True
