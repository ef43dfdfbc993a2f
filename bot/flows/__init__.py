"""The rollback flow: the use cases of the bot, written against the ports only.

`RollbackFlow` turns what people do in Slack (a slash command, a reaction, a button, a cancel) into operations
in the store, and runs approved operations through the target's backend. It decides nothing by itself: the
grammar (`core.commands`), the catalog (`core.targets`) and the state machine (`core.lifecycle`) decide. The
package is split by responsibility, around one journal:

- `journal`   every stored transition: compare-and-set retries, fencing, metrics, then the effects;
- `requests`  slash commands, up to the request message (`request_posting` stores and posts it);
- `votes`     reactions, buttons and cancels; lost votes recounted;
- `execution` claim, roll back once, watch, finish — under a fenced `lease`;
- `batch`     a batch's members rolled back in parallel under its one lease (`batch_requests` plans them);
- `reporting` what goes to Slack after a stored change, queued in order per operation (`report_queue`);
- `sweeper`   expiry, recounts, orphaned operations and gestures;
- `inbox`     acknowledged gestures parked until their effect is stored;
- `retrying`  every retry policy (tenacity, injected sleep).

Bugs are not user errors: a `UserError` is answered as written; anything else is logged with a reference, and
the person sees "Internal error, reference …", never a traceback. Long work goes to the `submit` callable the
composition root provides (a bounded executor), and time comes from the `Clock` port. Commands, votes and
reports each have their own worker pool (`submit_request`, `submit_vote`, `submit_report`), so an approval is
never queued behind commands waiting for Slack to post their request messages, and nothing waits behind Slack.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from functools import partial
from typing import Final

from bot.core import messages
from bot.core.approvals import vote_of
from bot.core.catalog import BackendKind, Catalog, ChannelId, SlackUserId, Target
from bot.core.errors import TemporaryError, UserError
from bot.core.incidents import Incident
from bot.core.lifecycle import Transition
from bot.core.messages import ChatMessage
from bot.core.messages.incident_groups import GROUP_ROLLBACK_ACTION
from bot.core.messages.incidents import AUTO_CANCEL_ACTION, INCIDENT_ROLLBACK_ACTION
from bot.core.operations import MessageRef, Operation, OperationId, Phase
from bot.core.rollouts import RevisionNumber
from bot.flows.batch import BatchRunner
from bot.flows.execution import Executor, Submit
from bot.flows.gitops import SyncControl
from bot.flows.inbox import Gesture, GestureParking
from bot.flows.journal import Journal
from bot.flows.report_queue import ReportQueue
from bot.flows.reporting import Reporter
from bot.flows.request_posting import Reply
from bot.flows.requests import Requests
from bot.flows.sweeper import RECONCILE_INTERVAL, UNCLAIMED_GRACE, Sweeper
from bot.flows.votes import Votes, approver_group_members
from bot.ports import Backend, Chat, Clock, Inbox, Metrics, OperationStore, Reconcilers, SyncPauses

__all__ = ["RECONCILE_INTERVAL", "UNCLAIMED_GRACE", "Reply", "RollbackFlow", "Submit"]

log = logging.getLogger("rollbot.flows")

# A replica that has not been heard of for this long is gone: what it parked may be adopted.
DEFAULT_HEARTBEAT_TTL: Final = timedelta(seconds=30)


def _inline(work: Callable[[], None]) -> None:
    work()


class RollbackFlow:
    """Every use case of the bot. Thread-safe: Bolt listeners and executor threads call it concurrently."""

    def __init__(
        self,
        *,
        backends: Mapping[BackendKind, Backend],
        chat: Chat,
        store: OperationStore,
        clock: Clock,
        metrics: Metrics,
        catalog: Catalog,
        submit: Submit,
        submit_request: Submit | None = None,
        submit_vote: Submit | None = None,
        submit_report: Submit | None = None,
        new_operation_id: Callable[[], OperationId],
        replica_id: str,
        command_name: str = "/rollback",
        rollout_timeout: timedelta = timedelta(minutes=10),
        lease: timedelta = timedelta(seconds=30),
        # How often a batch's owner stores its members' progress (one writer, so one write per interval).
        publish_interval: timedelta = timedelta(seconds=1),
        sleep: Callable[[float], None] = time.sleep,
        inbox: Inbox | None = None,
        heartbeat_ttl: timedelta = DEFAULT_HEARTBEAT_TTL,
        reconcilers: Reconcilers | None = None,
        sync_pauses: SyncPauses | None = None,
    ) -> None:
        self._backends = backends
        self._chat = chat
        self._catalog = catalog
        # Short work (answering commands, counting votes) must not queue behind long rollouts.
        self._submit_request = submit_request if submit_request is not None else submit
        # Votes start rollbacks: they must not wait behind commands that wait for Slack's budget.
        self._submit_vote = submit_vote if submit_vote is not None else self._submit_request
        # Without reporting workers (flow tests), reports are made by the thread that lets them go, in order.
        self._reports = ReportQueue(submit_report if submit_report is not None else _inline)
        self._new_id = new_operation_id
        self.replica_id = replica_id
        self._command = command_name
        self._heartbeat_ttl = heartbeat_ttl
        self._stopping = threading.Event()
        self._parking = GestureParking(inbox, replica_id)
        self._executor: Executor  # the reporter starts executions through it; built below
        self._reporter = Reporter(
            chat=chat,
            store=store,
            metrics=metrics,
            start_execution=lambda operation_id: self._executor.hand_over(operation_id),
            sleep=sleep,
            reports=self._reports,
            owe=self._owe_report,
        )
        self._finished_listeners: list[Callable[[Operation], None]] = []
        self._incident_clicks: Callable[[str, SlackUserId], None] | None = None
        self._group_clicks: Callable[[str, SlackUserId], None] | None = None
        self._auto_cancels: Callable[[str, SlackUserId], None] | None = None
        self._journal = Journal(
            store=store,
            clock=clock,
            metrics=metrics,
            members=approver_group_members(chat),
            apply=self._apply_and_tell,
            sleep=sleep,
        )
        self._votes = Votes(journal=self._journal, store=store, chat=chat, sleep=sleep)
        self._gitops = SyncControl(
            reconcilers=reconcilers,
            pauses=sync_pauses,
            chat=chat,
            store=store,
            clock=clock,
            reminder_every=catalog.defaults.gitops_reminder,
            command_name=command_name,
        )
        batches = BatchRunner(
            backend_of=lambda target: self._executor.backend(target),
            reporter=self._reporter,
            chat=chat,
            clock=clock,
            metrics=metrics,
            rollout_timeout=rollout_timeout,
            publish_interval=publish_interval,
            sleep=sleep,
            stopping=self._stopping,
        )
        self._executor = Executor(
            backends=backends,
            journal=self._journal,
            reporter=self._reporter,
            store=store,
            clock=clock,
            metrics=metrics,
            submit=submit,
            replica_id=replica_id,
            rollout_timeout=rollout_timeout,
            lease=lease,
            sleep=sleep,
            stopping=self._stopping,
            gitops=self._gitops,
            run_batch=batches.run,
        )
        self._requests = Requests(
            backends=backends,
            backend_of=self._executor.backend,
            journal=self._journal,
            votes=self._votes,
            reporter=self._reporter,
            chat=chat,
            store=store,
            clock=clock,
            metrics=metrics,
            catalog=catalog,
            new_operation_id=new_operation_id,
            command_name=command_name,
            gitops=self._gitops,
        )
        self._sweeper = Sweeper(
            journal=self._journal,
            votes=self._votes,
            executor=self._executor,
            store=store,
            clock=clock,
            replica_id=replica_id,
            adopt_gestures=self._adopt_gestures,
        )

    def _apply_and_tell(
        self, transition: Transition, told: list[str] | None, still_current: Callable[[], bool] | None
    ) -> None:
        """Report a stored change; an operation that just finished is also told to whoever listens (incidents),
        after its own lines."""
        operation = transition.operation
        finished = transition.changed and operation.phase.is_terminal and operation.phase is not Phase.PREVIEW
        then = partial(self._tell_finished, operation) if finished and self._finished_listeners else None
        self._reporter.apply(transition, told, still_current, then)

    def _tell_finished(self, operation: Operation) -> None:
        for listener in self._finished_listeners:
            try:
                listener(operation)
            except Exception:  # an incident's bookkeeping must never undo a finished rollback
                log.exception("a finished-operation listener failed", extra={"operation_id": operation.id})

    def on_finished(self, listener: Callable[[Operation], None]) -> None:
        """Call `listener` with every operation that reaches a terminal phase in this process."""
        self._finished_listeners.append(listener)

    def on_incidents_listing(self, listing: Callable[[], ChatMessage]) -> None:
        """What `/rollback incidents` answers (open incidents with links to their cards)."""
        self._requests.incidents_listing = listing

    def backend_of(self, target: Target) -> Backend:
        return self._executor.backend(target)

    def on_incident_click(self, handler: Callable[[str, SlackUserId], None]) -> None:
        """Who handles the incident card's button (incident id, clicker); without one the click is ignored."""
        self._incident_clicks = handler

    def on_incident_group_click(self, handler: Callable[[str, SlackUserId], None]) -> None:
        """Who handles the summary card's "Roll back all" (group id, clicker); without one it is ignored."""
        self._group_clicks = handler

    def request_for_incident_group(
        self, members: Sequence[tuple[Target, RevisionNumber]], user: SlackUserId, channel: ChannelId, group_id: str
    ) -> Operation | None:
        """One batch request for a mass failure's members; the clicker is told the outcome."""

        def reply(message: ChatMessage) -> None:
            self._reporter.quietly(group_id, self._chat.post_ephemeral, channel, user, message)

        return self._requests.request_for_incident_group(members, user, channel, group_id, reply)

    def request_for_incident(
        self, target: Target, to_revision: RevisionNumber, user: SlackUserId, incident: Incident
    ) -> Operation | None:
        """The normal request path for a click on an incident card; the clicker is told the outcome."""

        def reply(message: ChatMessage) -> None:
            self._reporter.quietly(incident.id, self._chat.post_ephemeral, incident.channel, user, message)

        return self._requests.request_for_incident(target, to_revision, user, incident.channel, incident.id, reply)

    def request_automatic(
        self, target: Target, to_revision: RevisionNumber, incident: Incident, operation_id: OperationId, approvals: int
    ) -> Operation | None:
        """The automatic-rollback policy's request (see `Requests.request_automatic`); run at once when approved."""
        operation = self._requests.request_automatic(target, to_revision, incident, operation_id, approvals)
        if operation is not None and operation.phase is Phase.APPROVED:
            self._executor.hand_over(operation.id)
        return operation

    def on_auto_cancel(self, handler: Callable[[str, SlackUserId], None]) -> None:
        """Who handles the countdown's Cancel button (incident id, user); without one the press is ignored."""
        self._auto_cancels = handler

    def on_auto_commands(
        self, status: Callable[[], ChatMessage], resume: Callable[[str, SlackUserId], ChatMessage]
    ) -> None:
        """What `/rollback auto status` and `/rollback auto resume <context>` answer."""
        self._requests.auto_status = status
        self._requests.auto_resume = resume

    def record_verification(self, operation_id: OperationId, state: str) -> None:
        """A bookkeeping write on a finished operation: its payload's `verification`."""
        if state not in ("pending", "healthy", "failing"):
            raise ValueError(f"unknown verification state {state!r}")
        self._journal.write(operation_id, lambda op: op.model_copy(update={"verification": state}))

    @property
    def catalog(self) -> Catalog:
        return self._catalog

    @property
    def command_name(self) -> str:
        return self._command

    def stop(self) -> None:
        """Stop watching rollouts (the operations stay ROLLING_BACK; another replica or a restart takes over)."""
        self._stopping.set()

    def say_goodbye(self) -> None:
        """After the last request work ran: gestures this replica still has parked go to the other replicas."""
        self._parking.goodbye()

    # --- the entry points listeners call: park, return at once; the work runs on the executor -----------------

    def accept_command(self, text: str, user: SlackUserId, channel: ChannelId, reply: Reply) -> ChatMessage:
        """The slash command's immediate ack; anything needing I/O is answered later through `reply`."""
        quick = self._requests.answer_now(text)
        if quick is not None:
            return quick
        gesture = Gesture(kind="command", user=user, channel=channel, text=text, operation_id=self._new_id())
        self._submit_gesture(gesture, reply)
        return messages.command_received(self._command, text)

    def accept_reaction(
        self,
        ref: MessageRef,
        user: SlackUserId,
        emoji: str,
        *,
        added: bool,
        event_id: str | None = None,
        author: SlackUserId | None = None,
    ) -> None:
        if vote_of(emoji) is None:
            return  # most reactions in a busy channel are not votes: don't even queue them
        gesture = Gesture(
            kind="reaction", user=user, ref=ref, emoji=emoji, added=added, event_id=event_id, author=author
        )
        self._submit_gesture(gesture)

    def accept_button(self, ref: MessageRef, user: SlackUserId, action_id: str, value: str = "") -> None:
        self._submit_gesture(Gesture(kind="button", user=user, ref=ref, action_id=action_id, value=value))

    def _submit_gesture(self, gesture: Gesture, reply: Reply | None = None, parked: str | None = None) -> None:
        """Park the gesture (unless it is an adopted one, parked already), then queue its handling."""
        if parked is None:
            parked = self._parking.park(f"gesture:{secrets.token_hex(8)}", gesture)
        answer = reply if reply is not None else self._ephemeral_reply(gesture)

        def work() -> None:
            handled = self._guarded(
                lambda: self._handle(gesture, answer), answer if gesture.kind == "command" else None
            )
            if handled:
                self._parking.unpark(parked)
            else:  # Redis or Slack briefly away: the gesture stays parked and the next sweep handles it again
                self._parking.retry_later(parked, gesture)

        if gesture.kind in ("reaction", "button") and gesture.action_id != INCIDENT_ROLLBACK_ACTION:
            self._submit_vote(work)
        else:
            self._submit_request(work)

    def _handle(self, gesture: Gesture, reply: Reply) -> None:
        match gesture.kind:
            case "command":
                channel = gesture.channel or ChannelId("")
                self._requests.handle(gesture.text, gesture.user, channel, reply, gesture.operation_id)
            case "reaction" if gesture.ref is not None:
                self._votes.on_reaction(
                    gesture.ref,
                    gesture.user,
                    gesture.emoji,
                    added=gesture.added,
                    event_id=gesture.event_id,
                    author=gesture.author,
                )
            case "button" if gesture.action_id == INCIDENT_ROLLBACK_ACTION:
                if self._incident_clicks is not None:
                    self._incident_clicks(gesture.value, gesture.user)
            case "button" if gesture.action_id == GROUP_ROLLBACK_ACTION:
                if self._group_clicks is not None:
                    self._group_clicks(gesture.value, gesture.user)
            case "button" if gesture.action_id == AUTO_CANCEL_ACTION:
                if self._auto_cancels is not None:
                    self._auto_cancels(gesture.value, gesture.user)
            case "button" if gesture.ref is not None:
                self._votes.on_button(gesture.ref, gesture.user, gesture.action_id)
            case "report" if gesture.operation_id is not None:
                self._reporter.make_good(gesture.operation_id, gesture.lines, gesture.refresh)

    def _owe_report(self, operation_id: OperationId, lines: tuple[str, ...], refresh: bool) -> None:
        """A report Slack kept refusing: parked (so another replica makes it good if this one dies) and retried
        at the next sweep until Slack takes it."""
        debt = Gesture(kind="report", operation_id=operation_id, lines=lines, refresh=refresh)
        key = self._parking.park(f"report:{operation_id}:{secrets.token_hex(4)}", debt)
        self._parking.retry_later(key, debt)
        log.warning("Slack refused a report; it will be made good", extra={"operation_id": operation_id})

    def _ephemeral_reply(self, gesture: Gesture) -> Reply:
        """How an adopted command answers: the requester's response_url died with the other replica."""

        def reply(message: ChatMessage) -> None:
            if gesture.channel is not None:
                self._chat.post_ephemeral(gesture.channel, gesture.user, message)

        return reply

    def _adopt_gestures(self) -> int:
        self._parking.heartbeat(self._heartbeat_ttl.total_seconds())
        adopted = [*self._parking.take_retries(), *self._parking.adopt()]
        for key, gesture in adopted:
            log.info("handling a parked gesture again", extra={"key": key, "kind": gesture.kind})
            self._submit_gesture(gesture, parked=key)
        return len(adopted)

    def _guarded(self, work: Callable[[], object], reply: Reply | None = None) -> bool:
        """Run listener work on the executor: a bug is logged with a reference, never shown as a traceback.

        False when a temporary failure (Redis or Slack briefly away) left the work undone and worth another try.
        """
        try:
            work()
        except UserError as exc:
            if reply is not None:
                self._reporter.quietly("-", reply, messages.user_error(str(exc)))
        except TemporaryError:
            log.warning("a gesture hit a temporary failure; it will be handled again", exc_info=True)
            return False
        except Exception:
            reference = "err-" + self._new_id().removeprefix("op-")
            log.exception("internal error handling a request", extra={"reference": reference})
            if reply is not None:
                self._reporter.quietly(reference, reply, messages.plain(messages.internal_error_text(reference)))
        return True

    # --- the use cases, synchronously (tests and the executor call these) ---------------------------------------

    def answer_now(self, text: str) -> ChatMessage | None:
        return self._requests.answer_now(text)

    def handle_command(self, text: str, user: SlackUserId, channel: ChannelId, reply: Reply) -> Operation | None:
        return self._requests.handle(text, user, channel, reply)

    def handle_reaction(
        self,
        ref: MessageRef,
        user: SlackUserId,
        emoji: str,
        *,
        added: bool,
        event_id: str | None = None,
        author: SlackUserId | None = None,
    ) -> None:
        self._votes.on_reaction(ref, user, emoji, added=added, event_id=event_id, author=author)

    def handle_button(self, ref: MessageRef, user: SlackUserId, action_id: str) -> None:
        self._votes.on_button(ref, user, action_id)

    def handle_cancel(self, operation_id: OperationId, user: SlackUserId) -> ChatMessage:
        return self._votes.on_cancel(operation_id, user)

    def execute(self, operation_id: OperationId) -> None:
        self._executor.execute(operation_id)

    def resume_in_flight(self) -> int:
        """At start-up: finish what a previous process left. Returns how many operations were handed on."""
        return self._sweeper.sweep(at_startup=True)

    def sweep(self) -> int:
        swept = self._sweeper.sweep()
        self._gitops.remind_soon(self._submit_request)
        return swept

    def operations_running(self) -> Sequence[OperationId]:
        return self._executor.running()
