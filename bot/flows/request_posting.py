"""A new operation's request, from the store to Slack: stored with its locks, then shown as a preview (a dry
run) or as the request message people vote on. A command handled twice (a replay) is answered as the first
handling would have been, posting what that one did not post.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Final

from bot.core import messages
from bot.core.errors import BotError, DuplicateOperation, TargetBusy
from bot.core.messages import ChatMessage
from bot.core.operations import Operation, Phase
from bot.core.outbound import Priority
from bot.flows.journal import LOCK_MARGIN, Journal
from bot.flows.reporting import Reporter
from bot.flows.votes import Votes
from bot.ports import Chat, Clock, LockInfo, Metrics, OperationStore

log = logging.getLogger("rollbot.flows")

# A request message that waits longer than this for Slack's budget is announced to the requester as queued.
QUEUED_NOTICE_AFTER: Final = timedelta(seconds=2)

Reply = Callable[[ChatMessage], None]


class RequestPoster:
    """Opens the operations `bot.flows.requests` builds: one store write, then one reply to the requester."""

    def __init__(
        self,
        *,
        journal: Journal,
        votes: Votes,
        reporter: Reporter,
        chat: Chat,
        store: OperationStore,
        clock: Clock,
        metrics: Metrics,
    ) -> None:
        self._journal = journal
        self._votes = votes
        self._reporter = reporter
        self._chat = chat
        self._store = store
        self._clock = clock
        self._metrics = metrics

    def open(self, operation: Operation, reply: Reply) -> Operation | None:
        """Store the new operation (taking its locks), then show it: the preview, or the request message."""
        target = operation.target
        try:
            self._store.create(operation, lock_ttl=target.policy.expires_after + LOCK_MARGIN)
        except DuplicateOperation:
            existing = self._store.get(operation.id)
            if existing is None:
                raise
            return self.resume(existing, reply)  # the same command, handled twice at once
        except TargetBusy as exc:
            if operation.is_batch and exc.holders:
                held = {
                    name: (holder.operation_id, holder.requester, holder.since)
                    for name, holder in exc.holders.items()
                    if isinstance(holder, LockInfo)
                }
                reply(messages.batch_busy(held))
                return None
            holder = exc.holder if isinstance(exc.holder, LockInfo) else self._store.lock_holder(target.lock_key)
            if holder is None:
                reply(messages.user_error(str(exc)))
            else:
                reply(messages.target_busy(target, holder.operation_id, holder.requester, holder.since))
            return None
        self._metrics.phase_entered(target.backend.value, operation.phase.value)
        return self._show(operation, reply)

    def resume(self, operation: Operation, reply: Reply) -> Operation:
        """A command handled again: answer as the first handling would have, posting what it did not post."""
        if operation.is_dry_run or operation.request_message is not None or not operation.phase.is_in_flight:
            reply(self._posted(operation) if operation.request_message is not None else self._preview(operation))
            return operation
        log.info("posting the request message of a replayed command", extra={"operation_id": operation.id})
        return self._show(operation, reply) or operation

    def _show(self, operation: Operation, reply: Reply) -> Operation | None:
        """The preview of a dry run, or the request message people vote on."""
        if operation.is_dry_run:
            reply(self._preview(operation))
            return operation

        def queued(seconds: float) -> None:
            if seconds >= QUEUED_NOTICE_AFTER.total_seconds():
                reply(messages.request_queued(operation, seconds))

        try:
            ref = self._reporter.patiently(
                lambda: self._chat.post(
                    operation.channel, messages.request_message(operation), priority=Priority.URGENT, on_queued=queued
                )
            )
        except BotError:
            # Nobody can see the request, so nobody could approve it: give the target back at once.
            self._abandon(operation, "the request message could not be posted")
            raise
        self._store.link_message(operation.id, ref)
        operation = self._journal.write(operation.id, lambda op: op.model_copy(update={"request_message": ref}))
        if operation.phase is Phase.AWAITING_APPROVAL:  # an automatic rollback with no approvals needs no votes
            # The voting reactions (Tier 3) wait for Slack on their own lane: not the requester's answer, not the lines.
            for emoji in (messages.APPROVE_EMOJI, messages.REJECT_EMOJI):
                self._reporter.in_order(operation.id, self._chat.add_reaction, ref, emoji, lane="reactions")
        # A vote cast before the link above existed may have been dropped; count what the message shows now.
        self._reporter.in_order(operation.id, self._votes.reconcile, operation.id, lane="reactions")
        reply(self._posted(operation))
        log.info("rollback requested", extra={"operation_id": operation.id, "target": operation.target.name})
        return operation

    @staticmethod
    def _posted(operation: Operation) -> ChatMessage:
        return messages.batch_request_posted(operation) if operation.is_batch else messages.request_posted(operation)

    @staticmethod
    def _preview(operation: Operation) -> ChatMessage:
        return messages.request_message(operation)

    def _abandon(self, operation: Operation, why: str) -> None:
        def cancel(op: Operation) -> Operation:
            return op.model_copy(update={"phase": Phase.CANCELLED, "outcome": why, "finished_at": self._clock.now()})

        self._reporter.quietly(operation.id, self._journal.write, operation.id, cancel)
