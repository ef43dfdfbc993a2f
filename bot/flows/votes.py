"""Votes: ✅/❌ reactions, the Approve/Reject buttons and `/rollback cancel`, as lifecycle events.

A vote is counted once however often Slack delivers it: an event id is remembered only after the vote's effect
is stored (a delivery that arrives while the first is still being handled is counted once by the lifecycle
itself: the same person approving twice counts once). A vote the store refuses because another operation took
the target is answered to the voter. Votes whose events never arrived are recounted from the request message.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Final

from bot.core import messages
from bot.core.approvals import action_of, vote_of
from bot.core.catalog import SlackGroupId, SlackUserId
from bot.core.errors import TargetBusy
from bot.core.lifecycle import ButtonPressed, CancelRequested, Event, ReactionAdded, ReactionRemoved, missed_votes
from bot.core.messages import ChatMessage
from bot.core.operations import MessageRef, Operation, OperationId, Phase
from bot.flows.journal import Journal
from bot.flows.retrying import Sleep
from bot.ports import Chat, OperationStore

log = logging.getLogger("rollbot.flows")

# Slack redelivers an event up to 3 times within ~5 minutes; remember event ids well past that.
EVENT_DEDUP_TTL: Final = timedelta(hours=1)
# How long a vote on a message the bot wrote waits for that message to be linked to its operation.
LINK_RETRY_DELAYS: Final = (0.1, 0.2, 0.4, 0.8)


class Votes:
    def __init__(self, *, journal: Journal, store: OperationStore, chat: Chat, sleep: Sleep) -> None:
        self._journal = journal
        self._store = store
        self._chat = chat
        self._sleep = sleep

    def members(self, operation: Operation) -> frozenset[SlackUserId]:
        return approver_group_members(self._chat)(operation)

    def on_reaction(
        self,
        ref: MessageRef,
        user: SlackUserId,
        emoji: str,
        *,
        added: bool,
        event_id: str | None = None,
        author: SlackUserId | None = None,
    ) -> None:
        """A ✅/❌ added to or removed from a message. Anything that is not a vote on a request is ignored.

        `author` is who wrote the message (Slack's `item_user`), when known.
        """
        if vote_of(emoji) is None:
            return
        key = f"event:{event_id}" if event_id is not None else None
        if key is not None and self._store.is_delivered(key):
            return
        may_be_ours = author is None or self._chat.is_bot(author)
        operation = self._find_request(ref, patiently=may_be_ours)
        if operation is not None:
            event: Event
            if added:
                event = ReactionAdded(user=user, emoji=emoji, is_bot=self._chat.is_bot(user))
            else:
                event = ReactionRemoved(user=user, emoji=emoji)
            self.decide(operation.id, event, actor=user)
        if key is not None:
            self._store.first_delivery(key, EVENT_DEDUP_TTL)  # only now: the vote's effect is stored

    def on_button(self, ref: MessageRef, user: SlackUserId, action_id: str) -> None:
        """Approve/Reject on the request message: the same as ✅/❌."""
        action = action_of(action_id)
        if action is None:
            return
        operation = self._find_request(ref, patiently=True)  # our buttons are only on our messages
        if operation is None:
            return
        self.decide(operation.id, ButtonPressed(user=user, action=action), actor=user)

    def on_cancel(self, operation_id: OperationId, user: SlackUserId) -> ChatMessage:
        """`/rollback cancel op-…`; the answer goes back to whoever asked."""
        operation = self._store.get(operation_id)
        if operation is None:
            return messages.operation_not_found(operation_id)
        told: list[str] = []
        transition = self._journal.decide(operation_id, CancelRequested(user=user), actor=user, told=told)
        if transition is not None and transition.changed and transition.operation.phase is Phase.CANCELLED:
            return messages.cancel_done(transition.operation)
        if told:
            return messages.not_allowed(told[-1])
        return messages.nothing_to_cancel(operation_id, operation.phase.value)

    def decide(self, operation_id: OperationId, event: Event, actor: SlackUserId) -> None:
        try:
            self._journal.decide(operation_id, event, actor=actor)
        except TargetBusy as exc:
            # Another operation took the target (this request's lock lapsed): the vote cannot count; say so.
            operation = self._store.get(operation_id)
            if operation is not None:
                self._chat.post_ephemeral(operation.channel, actor, messages.vote_refused_busy(str(exc)))

    def reconcile(self, operation_id: OperationId) -> None:
        """Replay the votes the request message shows but the operation has not recorded (lost events)."""
        operation = self._store.get(operation_id)
        if operation is None or operation.request_message is None:
            return
        reactions = self._chat.reactions(operation.request_message)
        for gesture in missed_votes(operation, reactions, group_members=self.members(operation)):
            log.info("counting a vote whose event never arrived", extra={"operation_id": operation_id})
            transition = self._journal.decide(operation_id, gesture, actor=gesture.user)
            if transition is None or transition.operation.phase.is_terminal:
                return

    def _find_request(self, ref: MessageRef, *, patiently: bool) -> Operation | None:
        """The operation whose request message is `ref`.

        A quick approver can vote before the replica that posted the request has linked it (the message exists
        from chat.postMessage on; the link is written right after), so for the bot's own messages look again
        briefly before concluding it is not a request.
        """
        operation = self._store.find_by_message(ref)
        for delay in LINK_RETRY_DELAYS if patiently else ():
            if operation is not None:
                break
            self._sleep(delay)
            operation = self._store.find_by_message(ref)
        return operation


def approver_group_members(chat: Chat) -> Callable[[Operation], frozenset[SlackUserId]]:
    """The members of an operation's approver groups, as the lifecycle needs them to judge a vote."""

    def members(operation: Operation) -> frozenset[SlackUserId]:
        found: set[SlackUserId] = set()
        for group in operation.target.policy.approver_groups:
            found |= chat.group_members(SlackGroupId(group))
        return frozenset(found)

    return members
