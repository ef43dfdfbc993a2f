"""The rollback flow: the use cases of the bot, written against the ports only.

`RollbackFlow` turns what people do in Slack (a slash command, a reaction, a button, a cancel) into
operations in the store, and runs approved operations through the target's backend. It decides nothing by
itself: the grammar (`core.commands`), the catalog (`core.targets`) and the state machine (`core.lifecycle`)
decide; the flow reads the store, asks the core, writes back with compare-and-set and applies the effects
the core returned. What it owns is the choreography:

- **One writer per change.** Every write is `store.replace(new, expected_version=old.version)`. A lost
  compare-and-set means someone else (another replica, another thread) moved the operation first: re-read
  and decide again, a bounded number of times.
- **Exactly once across replicas.** Execution starts by winning the `ExecutionClaimed` transition with this
  replica's id and a lease. Whoever loses the compare-and-set stops. The winner renews the lease (and the
  target's lock) while it watches; when a replica dies its lease lapses and the sweeper of any replica takes
  the operation over, calling `roll_back` again (idempotent by the backend contract) and watching again.
- **Slack stays truthful.** The request message is re-rendered on every phase change; rollout progress goes
  to one thread message updated in place at most once a second; unhealthy pods and backend events get their
  own thread lines; the end gets a final thread line.
- **Bugs are not user errors.** A `UserError` is answered as written. Anything else inside an operation is
  logged with the operation id, and the operation fails with "Internal error, reference op-…" — no traceback
  ever reaches Slack.

It is deliberately not a scheduler: long work goes to the `submit` callable the composition root provides
(a bounded executor), and time comes from the `Clock` port.
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final, TypeVar

from bot.core import messages
from bot.core.approvals import action_of, vote_of
from bot.core.catalog import BackendKind, Catalog, ChannelId, SlackGroupId, SlackUserId, Target
from bot.core.commands import (
    CancelCommand,
    Command,
    HelpCommand,
    HistoryCommand,
    RollbackCommand,
    StatusCommand,
    parse_command,
    validate_options,
)
from bot.core.effects import Effect, PostInThread, RefreshRequestMessage, ReleaseTarget, StartExecution, TellUser
from bot.core.errors import (
    BotError,
    ChatUnavailable,
    CommandSyntaxError,
    ConcurrentUpdate,
    NothingToDo,
    PermanentError,
    RevisionNotFound,
    TargetBusy,
    TemporaryError,
    UserError,
)
from bot.core.lifecycle import (
    ButtonPressed,
    CancelRequested,
    Event,
    ExecutionClaimed,
    ExpiryDue,
    LeaseRenewed,
    ReactionAdded,
    ReactionRemoved,
    ReceiptRecorded,
    RollbackErrored,
    RolloutObserved,
    Transition,
    advance,
    missed_votes,
)
from bot.core.messages import ChatMessage
from bot.core.operations import MessageRef, Operation, OperationId, Phase
from bot.core.rollouts import BackendOption, RollbackReceipt, RolloutStatus, should_publish
from bot.core.targets import check_channel, resolve_target
from bot.ports import Backend, Chat, Clock, LockInfo, Metrics, OperationStore

log = logging.getLogger("rollbot.flows")

Reply = Callable[[ChatMessage], None]
_T = TypeVar("_T")
Submit = Callable[[Callable[[], None]], None]

# How often a compare-and-set may be lost before we give up; each loss means someone else made progress.
MAX_CAS_ATTEMPTS: Final = 8
# Slack redelivers an event up to 3 times within ~5 minutes; remember event ids well past that.
EVENT_DEDUP_TTL: Final = timedelta(hours=1)
# Transient backend errors while calling roll_back are retried this many times before the operation fails.
MAX_ROLL_BACK_ATTEMPTS: Final = 3
# How long a vote on a message the bot wrote waits for that message to be linked to its operation.
LINK_RETRY_DELAYS: Final = (0.1, 0.2, 0.4, 0.8)
# Chat calls that follow a committed state change are tried this often when Slack is briefly unavailable
# (429s are already retried inside the adapter), waiting at most this long between tries.
CHAT_ATTEMPTS: Final = 3
MAX_CHAT_RETRY_DELAY: Final = timedelta(seconds=5)
# Lock stripes for per-operation writes within one process.
OPERATION_LOCK_STRIPES: Final = 64
# How often the request message in the channel is re-rendered with the latest rollout summary.
REQUEST_REFRESH_INTERVAL: Final = timedelta(seconds=10)
# A rollout watch interrupted by temporary errors (API server restarting…) is resumed this many times.
MAX_WATCH_ATTEMPTS: Final = 5
# An APPROVED operation nobody claimed for this long was left behind by a replica that died before claiming.
UNCLAIMED_GRACE: Final = timedelta(seconds=10)
# How often the sweeper recounts the votes on a request message from Slack itself (reactions.get is tier 3), so a
# reaction event that Slack never delivered (or delivered out of order) still counts.
RECONCILE_INTERVAL: Final = timedelta(seconds=30)
# Lock of an operation awaiting approval: until it expires, plus slack for the sweeper to expire it.
LOCK_MARGIN: Final = timedelta(minutes=2)


@dataclass
class _Watch:
    """What one execution has already told the thread, so repeated observations stay quiet."""

    last_published: datetime | None = None
    last_request_refresh: datetime | None = None
    seen_unhealthy: set[str] = field(default_factory=set)
    seen_events: set[str] = field(default_factory=set)
    lost: threading.Event = field(default_factory=threading.Event)


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
        new_operation_id: Callable[[], OperationId],
        replica_id: str,
        command_name: str = "/rollback",
        rollout_timeout: timedelta = timedelta(minutes=10),
        lease: timedelta = timedelta(seconds=30),
        publish_interval: timedelta = timedelta(seconds=1),
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._backends = backends
        self._chat = chat
        self._store = store
        self._clock = clock
        self._metrics = metrics
        self._catalog = catalog
        self._submit = submit
        # Short work (answering commands, counting votes) must not queue behind long rollouts.
        self._submit_request = submit_request if submit_request is not None else submit
        self._new_id = new_operation_id
        self.replica_id = replica_id
        self._command = command_name
        self._rollout_timeout = rollout_timeout
        self._lease = lease
        self._publish_interval = publish_interval
        self._sleep = sleep
        self._mutex = threading.Lock()
        self._running: set[OperationId] = set()
        self._queued: set[OperationId] = set()  # handed to the executor, not started yet
        self._reconciled: dict[OperationId, datetime] = {}  # when each request's votes were last recounted
        # Writes to one operation from this process (executor, lease heartbeat) take turns; striped, so the
        # number of locks stays fixed however many operations pass through.
        self._op_locks = tuple(threading.Lock() for _ in range(OPERATION_LOCK_STRIPES))
        self._stopping = threading.Event()

    @property
    def catalog(self) -> Catalog:
        return self._catalog

    @property
    def command_name(self) -> str:
        return self._command

    def stop(self) -> None:
        """Stop watching rollouts (the operations stay ROLLING_BACK; another replica or a restart takes over)."""
        self._stopping.set()

    # --- the entry points listeners call: return at once, the work runs on the executor ------------------------

    def accept_command(self, text: str, user: SlackUserId, channel: ChannelId, reply: Reply) -> ChatMessage:
        """The slash command's immediate ack; anything needing I/O is answered later through `reply`."""
        quick = self.answer_now(text)
        if quick is not None:
            return quick
        self._submit_request(lambda: self._guarded(lambda: self.handle_command(text, user, channel, reply), reply))
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
        self._submit_request(
            lambda: self._guarded(
                lambda: self.handle_reaction(ref, user, emoji, added=added, event_id=event_id, author=author)
            )
        )

    def accept_button(self, ref: MessageRef, user: SlackUserId, action_id: str) -> None:
        self._submit_request(lambda: self._guarded(lambda: self.handle_button(ref, user, action_id)))

    def _guarded(self, work: Callable[[], object], reply: Reply | None = None) -> None:
        """Run listener work on the executor: a bug is logged with a reference, never shown as a traceback."""
        try:
            work()
        except UserError as exc:
            if reply is not None:
                self._quietly("-", reply, messages.user_error(str(exc)))
        except Exception:
            reference = "err-" + self._new_id().removeprefix("op-")
            log.exception("internal error handling a request", extra={"reference": reference})
            if reply is not None:
                self._quietly(reference, reply, messages.plain(messages.internal_error_text(reference)))

    # --- slash commands --------------------------------------------------------------------------------------

    def answer_now(self, text: str) -> ChatMessage | None:
        """The reply to a command that needs no I/O (usage errors, help), fast enough for the 3 s ack; else None."""
        try:
            command = parse_command(text, self._declared_options())
        except CommandSyntaxError as exc:
            self._metrics.command_received("invalid")
            return messages.usage_error(str(exc), self._command)
        if isinstance(command, HelpCommand):
            self._metrics.command_received("help")
            return self._help()
        return None

    def handle_command(self, text: str, user: SlackUserId, channel: ChannelId, reply: Reply) -> Operation | None:
        """Answer a slash command: always exactly one `reply`; returns the operation it created, if any."""
        try:
            command = parse_command(text, self._declared_options())
        except CommandSyntaxError as exc:
            self._metrics.command_received("invalid")
            reply(messages.usage_error(str(exc), self._command))
            return None
        self._metrics.command_received(_verb(command))
        try:
            match command:
                case HelpCommand():
                    reply(self._help())
                case HistoryCommand():
                    target = resolve_target(command.target, self._catalog)
                    backend = self._backend(target)
                    backend.check_target(target)
                    reply(messages.history_message(target, backend.history(target)))
                case StatusCommand():
                    reply(self._status(resolve_target(command.target, self._catalog)))
                case CancelCommand():
                    reply(self.handle_cancel(command.operation_id, user))
                case RollbackCommand():
                    return self._request(command, user, channel, reply)
        except UserError as exc:
            reply(messages.user_error(str(exc)))
        except TemporaryError as exc:
            # The backend or Slack is briefly unreachable: nothing was started, asking again is safe.
            log.warning("command hit a temporary error", extra={"error": str(exc)})
            reply(messages.try_again(str(exc)))
        return None

    def _request(
        self, command: RollbackCommand, user: SlackUserId, channel: ChannelId, reply: Reply
    ) -> Operation | None:
        check_channel(self._catalog, channel)
        target = resolve_target(command.target, self._catalog)
        backend = self._backend(target)
        backend.check_target(target)
        validate_options(command, backend.options())
        try:
            plan = backend.plan_rollback(target, command.to_revision, command.options)
        except NothingToDo:
            reply(messages.already_at_revision(target, backend.current_revision(target)))
            return None
        except RevisionNotFound as exc:
            reply(messages.revision_not_found(target, command.to_revision, exc.available, str(exc) or None))
            return None
        now = self._clock.now()
        operation = Operation(
            id=self._new_id(),
            phase=Phase.PREVIEW if command.dry_run else Phase.AWAITING_APPROVAL,
            target=target,
            requester=user,
            channel=channel,
            created_at=now,
            updated_at=now,
            expires_at=now + target.policy.expires_after,
            requested_revision=command.to_revision,
            plan=plan,
            reason=command.reason,
            is_dry_run=command.dry_run,
        )
        try:
            self._store.create(operation, lock_ttl=target.policy.expires_after + LOCK_MARGIN)
        except TargetBusy as exc:
            holder = exc.holder if isinstance(exc.holder, LockInfo) else self._store.lock_holder(target.lock_key)
            if holder is None:
                reply(messages.user_error(str(exc)))
            else:
                reply(messages.target_busy(target, holder.operation_id, holder.requester, holder.since))
            return None
        self._metrics.phase_entered(target.backend.value, operation.phase.value)
        if command.dry_run:
            reply(messages.request_message(operation))
            return operation
        try:
            ref = self._chat.post(channel, messages.request_message(operation))
        except BotError:
            # Nobody can see the request, so nobody could approve it: give the target back at once.
            self._abandon(operation, "the request message could not be posted")
            raise
        self._store.link_message(operation.id, ref)
        operation = self._write(operation.id, lambda op: op.model_copy(update={"request_message": ref}))
        for emoji in (messages.APPROVE_EMOJI, messages.REJECT_EMOJI):
            self._quietly(operation.id, self._chat.add_reaction, ref, emoji)
        # A vote cast before the link above existed may have been dropped; count what the message shows now.
        self._quietly(operation.id, self._reconcile, operation.id)
        reply(messages.request_posted(operation))
        log.info("rollback requested", extra={"operation_id": operation.id, "target": target.name})
        return operation

    def _abandon(self, operation: Operation, why: str) -> None:
        def cancel(op: Operation) -> Operation:
            return op.model_copy(update={"phase": Phase.CANCELLED, "outcome": why, "finished_at": self._clock.now()})

        self._quietly(operation.id, self._write, operation.id, cancel)

    def _help(self) -> ChatMessage:
        options: list[tuple[str, BackendOption]] = []
        for kind, backend in sorted(self._backends.items()):
            options.extend((kind.value, option) for option in backend.options())
        return messages.help_message(self._catalog, self._command, options)

    def _status(self, target: Target) -> ChatMessage:
        backend = self._backend(target)
        backend.check_target(target)
        status = backend.status(target)
        holder = self._store.lock_holder(target.lock_key)
        lock = messages.lock_line(holder.operation_id, holder.requester, holder.since) if holder else None
        return messages.status_message(target, status, lock)

    def _declared_options(self) -> dict[str, BackendOption]:
        return {option.name: option for backend in self._backends.values() for option in backend.options()}

    def _backend(self, target: Target) -> Backend:
        backend = self._backends.get(target.backend)
        if backend is None:
            raise UserError(f"the {target.backend.value} backend is not configured in this bot")
        return backend

    # --- votes: reactions, buttons, cancel -------------------------------------------------------------------

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
        """A ✅/❌ added to or removed from a message. Anything that is not a vote on a request is ignored.

        `author` is who wrote the message (Slack's `item_user`), when known.
        """
        if vote_of(emoji) is None:
            return
        if event_id is not None and not self._store.first_delivery(f"event:{event_id}", EVENT_DEDUP_TTL):
            return
        may_be_ours = author is None or self._chat.is_bot(author)
        operation = self._find_request(ref, patiently=may_be_ours)
        if operation is None:
            return
        event: Event
        if added:
            event = ReactionAdded(user=user, emoji=emoji, is_bot=self._chat.is_bot(user))
        else:
            event = ReactionRemoved(user=user, emoji=emoji)
        self._decide(operation.id, event, actor=user)

    def handle_button(self, ref: MessageRef, user: SlackUserId, action_id: str) -> None:
        """Approve/Reject on the request message: the same as ✅/❌."""
        action = action_of(action_id)
        if action is None:
            return
        operation = self._find_request(ref, patiently=True)  # our buttons are only on our messages
        if operation is None:
            return
        self._decide(operation.id, ButtonPressed(user=user, action=action), actor=user)

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

    def handle_cancel(self, operation_id: OperationId, user: SlackUserId) -> ChatMessage:
        """`/rollback cancel op-…`; the answer goes back to whoever asked."""
        operation = self._store.get(operation_id)
        if operation is None:
            return messages.operation_not_found(operation_id)
        told: list[str] = []
        transition = self._decide(operation_id, CancelRequested(user=user), actor=user, told=told)
        if transition is not None and transition.changed and transition.operation.phase is Phase.CANCELLED:
            return messages.cancel_done(transition.operation)
        if told:
            return messages.not_allowed(told[-1])
        return messages.plain(f"`{operation_id}` is {operation.phase.value.replace('_', ' ')}; nothing to cancel.")

    def _decide(
        self, operation_id: OperationId, event: Event, actor: SlackUserId | None, told: list[str] | None = None
    ) -> Transition | None:
        """Advance one operation by one event with compare-and-set, then apply the effects once."""
        for _ in range(MAX_CAS_ATTEMPTS):
            operation = self._store.get(operation_id)
            if operation is None:
                return None
            transition = advance(operation, event, self._clock.now(), group_members=self._members(operation))
            if transition.changed:
                try:
                    self._store.replace(
                        transition.operation,
                        expected_version=operation.version,
                        actor=transition.actor or actor,
                        note=transition.note,
                    )
                except ConcurrentUpdate:
                    continue
                self._count(event, operation, transition.operation)
            self._apply(transition, told)
            return transition
        raise ConcurrentUpdate(f"{operation_id} kept changing; gave up after {MAX_CAS_ATTEMPTS} attempts")

    def _members(self, operation: Operation) -> frozenset[SlackUserId]:
        members: set[SlackUserId] = set()
        for group in operation.target.policy.approver_groups:
            members |= self._chat.group_members(SlackGroupId(group))
        return frozenset(members)

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

    def _apply(self, transition: Transition, told: list[str] | None = None) -> None:
        operation = transition.operation
        for effect in transition.effects:
            self._quietly(operation.id, self._apply_one, operation, effect, told)

    def _apply_one(self, operation: Operation, effect: Effect, told: list[str] | None) -> None:
        match effect:
            case TellUser(user=user, text=text):
                if told is not None:
                    told.append(text)
                else:
                    self._metrics.approval_recorded("refused")
                    self._chat.post_ephemeral(operation.channel, user, messages.not_allowed(text))
            case PostInThread(text=text):
                self._post_in_thread(operation, messages.thread_line(operation, text))
            case RefreshRequestMessage():
                self._refresh_request(operation)
            case StartExecution(operation_id=operation_id):
                self._hand_to_executor(operation_id)
            case ReleaseTarget():
                pass  # the store releases the lock when it stores a terminal phase

    def _post_in_thread(self, operation: Operation, message: ChatMessage) -> MessageRef | None:
        if operation.request_message is None:
            return None
        request_message = operation.request_message
        return self._patiently(lambda: self._chat.post(operation.channel, message, thread=request_message))

    def _patiently(self, call: Callable[[], _T]) -> _T:
        """A chat call after a committed change: Slack being briefly unavailable must not lose the line."""
        for attempt in range(1, CHAT_ATTEMPTS + 1):
            try:
                return call()
            except ChatUnavailable as exc:
                if attempt == CHAT_ATTEMPTS:
                    raise
                self._sleep(min(exc.delay.total_seconds(), MAX_CHAT_RETRY_DELAY.total_seconds()))
        raise AssertionError("unreachable")  # pragma: no cover

    def _refresh_request(self, operation: Operation) -> None:
        if operation.request_message is None:
            return
        request_message = operation.request_message
        ref = self._patiently(lambda: self._chat.update(request_message, messages.request_message(operation)))
        if ref is not None and ref != operation.request_message:
            # The original was deleted; the bot re-posted it. Votes on the new message must count too.
            self._store.link_message(operation.id, ref)

    # --- execution -------------------------------------------------------------------------------------------

    def _hand_to_executor(self, operation_id: OperationId) -> None:
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
        try:
            self._execute(operation_id)
        except Exception:  # the per-operation guard: a bug fails this operation, not the bot
            log.exception("internal error while executing", extra={"operation_id": operation_id})
            self._quietly(operation_id, self._fail, operation_id, messages.internal_error_text(operation_id))
        finally:
            with self._mutex:
                self._running.discard(operation_id)

    def _execute(self, operation_id: OperationId) -> None:
        operation = self._claim(operation_id)
        if operation is None:
            return
        backend = self._backend(operation.target)
        watch = _Watch()
        heartbeat = threading.Thread(
            target=self._keep_lease, args=(operation_id, watch), name=f"lease-{operation_id}", daemon=True
        )
        heartbeat.start()
        try:
            if operation.receipt is None:
                receipt = self._roll_back(backend, operation)
                if receipt is None:
                    return
                operation = self._decide_as_executor(operation_id, ReceiptRecorded(receipt=receipt))
            self._watch(backend, operation, watch)
        finally:
            watch.lost.set()
            heartbeat.join(timeout=5)

    def _watch(self, backend: Backend, operation: Operation, watch: _Watch) -> None:
        """Follow the rollout to its end; a watch cut by a temporary error is picked up again where it was."""
        delay = 0.5
        for attempt in range(1, MAX_WATCH_ATTEMPTS + 1):
            resume = operation.last_status.resume_token if operation.last_status else None
            try:
                statuses = backend.watch_rollout(operation.target, operation.plan, self._rollout_timeout, resume)
                self._follow(operation.id, statuses, watch)
                return
            except TemporaryError as exc:
                if attempt == MAX_WATCH_ATTEMPTS:
                    self._fail(operation.id, f"lost track of the rollout: {exc}")
                    return
                log.warning("rollout watch interrupted; watching again", extra={"operation_id": operation.id})
                self._sleep(max(delay, exc.delay.total_seconds()))
                delay *= 2
                operation = self._store.get(operation.id) or operation
            except (PermanentError, UserError) as exc:
                self._fail(operation.id, str(exc))
                return

    def _claim(self, operation_id: OperationId) -> Operation | None:
        """Win the execution of `operation_id` with compare-and-set, or learn that someone else has it."""
        for _ in range(MAX_CAS_ATTEMPTS):
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
            transition = advance(
                operation,
                ExecutionClaimed(executor=self.replica_id, lease_until=now + self._lease),
                now,
                group_members=frozenset(),
            )
            if not transition.changed:
                return None
            try:
                self._store.replace(
                    transition.operation, expected_version=operation.version, note=f"claimed by {self.replica_id}"
                )
            except ConcurrentUpdate:
                continue
            claimed = transition.operation
            if not takeover:
                self._metrics.phase_entered(claimed.target.backend.value, claimed.phase.value)
            self._apply(transition)
            if takeover:
                self._quietly(operation_id, self._post_in_thread, claimed, messages.takeover_line(claimed))
            log.info("execution claimed", extra={"operation_id": operation_id, "takeover": takeover})
            return claimed
        return None

    def _roll_back(self, backend: Backend, operation: Operation) -> RollbackReceipt | None:
        delay = 0.5
        for attempt in range(1, MAX_ROLL_BACK_ATTEMPTS + 1):
            try:
                return backend.roll_back(operation.target, operation.plan, operation.id)
            except TemporaryError as exc:
                if attempt == MAX_ROLL_BACK_ATTEMPTS:
                    self._fail(operation.id, f"the backend stayed unavailable: {exc}")
                    return None
                self._sleep(max(delay, exc.delay.total_seconds()))
                delay *= 2
            except (PermanentError, UserError) as exc:
                self._fail(operation.id, str(exc))
                return None
        return None  # pragma: no cover - the loop always returns

    def _follow(self, operation_id: OperationId, statuses: Iterator[RolloutStatus], watch: _Watch) -> None:
        last: RolloutStatus | None = None
        for status in statuses:
            if watch.lost.is_set():
                return  # another replica has it now: say nothing more
            if self._stopping.is_set():
                self._hand_over(operation_id)
                return
            last = status
            operation = self._store.get(operation_id)
            if operation is None:
                return
            self._tell_news(operation, status, watch)
            if status.is_finished:
                break
            now = self._clock.now()
            if should_publish(watch.last_published, now, status, self._publish_interval):
                watch.last_published = now
                operation = self._decide_as_executor(operation_id, RolloutObserved(status=status))
                self._publish_progress(operation, status)
                if should_publish(watch.last_request_refresh, now, status, REQUEST_REFRESH_INTERVAL):
                    # The channel message shows the latest summary too, but less often (chat.update is tier 3).
                    watch.last_request_refresh = now
                    self._quietly(operation_id, self._refresh_request, operation)
        if watch.lost.is_set():
            return
        if self._stopping.is_set() and (last is None or not last.is_finished):
            self._hand_over(operation_id)
            return
        if last is None or not last.is_finished:
            self._fail(operation_id, "the rollout watch ended without an outcome")
            return
        self._finish(operation_id, last)

    def _hand_over(self, operation_id: OperationId) -> None:
        """Shutting down mid-rollout: end our lease now, so another replica takes over at its next sweep."""
        operation = self._decide_as_executor(
            operation_id, LeaseRenewed(executor=self.replica_id, lease_until=self._clock.now())
        )
        self._quietly(operation_id, self._post_in_thread, operation, messages.handover_line(operation))
        log.info("handed the rollout over on shutdown", extra={"operation_id": operation_id})

    def _tell_news(self, operation: Operation, status: RolloutStatus, watch: _Watch) -> None:
        for unit in status.unhealthy:
            key = f"{unit.name}:{unit.reason}"
            if key not in watch.seen_unhealthy:
                watch.seen_unhealthy.add(key)
                self._quietly(operation.id, self._post_in_thread, operation, messages.unhealthy_line(operation, unit))
        for event in status.events:
            if event not in watch.seen_events:
                watch.seen_events.add(event)
                line = messages.rollout_event_line(operation, event)
                self._quietly(operation.id, self._post_in_thread, operation, line)

    def _publish_progress(self, operation: Operation, status: RolloutStatus) -> None:
        message = messages.progress_message(operation, status)

        def publish() -> None:
            if operation.progress_message is None:
                ref = self._post_in_thread(operation, message)
                if ref is not None:
                    self._write(operation.id, lambda op: op.model_copy(update={"progress_message": ref}))
            else:
                self._chat.update(operation.progress_message, message)

        self._quietly(operation.id, publish)

    def _finish(self, operation_id: OperationId, status: RolloutStatus) -> None:
        operation = self._decide_as_executor(operation_id, RolloutObserved(status=status))
        self._after_finish(operation, status)

    def _fail(self, operation_id: OperationId, reason: str) -> None:
        operation = self._decide_as_executor(operation_id, RollbackErrored(reason=reason))
        self._after_finish(operation, operation.last_status)

    def _after_finish(self, operation: Operation, status: RolloutStatus | None) -> None:
        if not operation.phase.is_terminal:
            return
        if status is not None:
            self._publish_progress(operation, status)
        # The final thread line is the lifecycle's own PostInThread effect, already applied.
        if operation.started_at is not None and operation.finished_at is not None:
            seconds = (operation.finished_at - operation.started_at).total_seconds()
            self._metrics.rollout_finished(operation.target.backend.value, operation.phase.value, seconds)
        log.info("rollback finished", extra={"operation_id": operation.id, "phase": operation.phase.value})

    def _decide_as_executor(self, operation_id: OperationId, event: Event) -> Operation:
        """Advance an operation this replica executes; serialised with the lease heartbeat of the same process."""
        with self._operation_lock(operation_id):
            for _ in range(MAX_CAS_ATTEMPTS):
                operation = self._store.get(operation_id)
                if operation is None:
                    raise ConcurrentUpdate(f"{operation_id} disappeared from the store")
                transition = advance(operation, event, self._clock.now(), group_members=frozenset())
                if not transition.changed:
                    return operation
                try:
                    self._store.replace(transition.operation, expected_version=operation.version, note=transition.note)
                except ConcurrentUpdate:
                    continue
                if transition.operation.phase is not operation.phase:
                    self._metrics.phase_entered(operation.target.backend.value, transition.operation.phase.value)
                self._apply(transition)
                return transition.operation
        raise ConcurrentUpdate(f"{operation_id} kept changing; gave up after {MAX_CAS_ATTEMPTS} attempts")

    def _write(self, operation_id: OperationId, change: Callable[[Operation], Operation]) -> Operation:
        """Bookkeeping writes the lifecycle has no event for (message refs), with the same compare-and-set."""
        with self._operation_lock(operation_id):
            for _ in range(MAX_CAS_ATTEMPTS):
                operation = self._store.get(operation_id)
                if operation is None:
                    raise ConcurrentUpdate(f"{operation_id} disappeared from the store")
                new = change(operation).model_copy(
                    update={"version": operation.version + 1, "updated_at": self._clock.now()}
                )
                try:
                    self._store.replace(new, expected_version=operation.version)
                except ConcurrentUpdate:
                    continue
                return new
        raise ConcurrentUpdate(f"{operation_id} kept changing; gave up after {MAX_CAS_ATTEMPTS} attempts")

    def _keep_lease(self, operation_id: OperationId, watch: _Watch) -> None:
        """Renew this replica's claim and the target's lock until the execution ends or the claim is lost."""
        interval = max(self._lease.total_seconds() / 3, 0.05)
        while not watch.lost.wait(interval) and not self._stopping.is_set():
            try:
                operation = self._store.get(operation_id)
                if operation is None or operation.phase.is_terminal:
                    return
                if operation.executor != self.replica_id:
                    log.warning("lost the execution to another replica", extra={"operation_id": operation_id})
                    watch.lost.set()
                    return
                now = self._clock.now()
                self._decide_as_executor(
                    operation_id, LeaseRenewed(executor=self.replica_id, lease_until=now + self._lease)
                )
                self._store.refresh_lock(operation, self._lease * 2)
            except TargetBusy:
                watch.lost.set()
                return
            except Exception:  # a hiccup renewing must not kill the watch; the next renewal retries
                log.exception("lease renewal failed", extra={"operation_id": operation_id})

    @contextmanager
    def _operation_lock(self, operation_id: OperationId) -> Iterator[None]:
        with self._op_locks[zlib.crc32(operation_id.encode()) % OPERATION_LOCK_STRIPES]:
            yield

    # --- start-up and the sweeper ----------------------------------------------------------------------------

    def resume_in_flight(self) -> int:
        """At start-up: finish what a previous process left. Returns how many operations were handed on."""
        return self.sweep(at_startup=True)

    def sweep(self, *, at_startup: bool = False) -> int:
        """Expire due approvals; hand orphaned approved or rolling-back operations to the executor."""
        handed = 0
        now = self._clock.now()
        in_flight = self._store.in_flight()
        with self._mutex:
            # Forget recount times of operations that have finished, so the map stays as small as the journal.
            still_open = {operation.id for operation in in_flight}
            self._reconciled = {key: at for key, at in self._reconciled.items() if key in still_open}
        for operation in in_flight:
            try:
                if operation.phase is Phase.AWAITING_APPROVAL and now >= operation.expires_at:
                    self._decide(operation.id, ExpiryDue(), actor=None)
                elif self._reconcile_due(operation, now):
                    self._reconcile(operation.id)
                elif self._is_orphaned(operation, now, at_startup):
                    handed += 1
                    self._hand_to_executor(operation.id)
            except Exception:
                log.exception("sweeping an operation failed", extra={"operation_id": operation.id})
        return handed

    def _reconcile_due(self, operation: Operation, now: datetime) -> bool:
        # Only while votes are still being collected: an APPROVED operation is claimed within seconds.
        if operation.phase is not Phase.AWAITING_APPROVAL or operation.request_message is None:
            return False
        with self._mutex:
            last = self._reconciled.get(operation.id)
            if last is not None and now - last < RECONCILE_INTERVAL:
                return False
            self._reconciled[operation.id] = now
            return True

    def _reconcile(self, operation_id: OperationId) -> None:
        """Replay the votes the request message shows but the operation has not recorded (lost events)."""
        operation = self._store.get(operation_id)
        if operation is None or operation.request_message is None:
            return
        reactions = self._chat.reactions(operation.request_message)
        for gesture in missed_votes(operation, reactions, group_members=self._members(operation)):
            log.info("counting a vote whose event never arrived", extra={"operation_id": operation_id})
            transition = self._decide(operation_id, gesture, actor=gesture.user)
            if transition is None or transition.operation.phase.is_terminal:
                return

    def _is_orphaned(self, operation: Operation, now: datetime, at_startup: bool) -> bool:
        with self._mutex:
            if operation.id in self._running or operation.id in self._queued:
                return False
        if operation.phase is Phase.APPROVED:
            return at_startup or now - operation.updated_at >= UNCLAIMED_GRACE
        if operation.phase is Phase.ROLLING_BACK:
            if at_startup and operation.executor == self.replica_id:
                return True  # our own previous life: nobody else is running it
            return operation.lease_until is None or operation.lease_until <= now
        return False

    # --- helpers ---------------------------------------------------------------------------------------------

    def _quietly(self, operation_id: OperationId | str, action: Callable[..., object], *args: object) -> None:
        """Chat side effects after a committed state change: log failures, never undo the change."""
        try:
            action(*args)
        except Exception:
            log.exception("side effect failed", extra={"operation_id": operation_id})

    def operations_running(self) -> Sequence[OperationId]:
        with self._mutex:
            return sorted(self._running)


def _verb(command: Command) -> str:
    match command:
        case RollbackCommand():
            return "dry-run" if command.dry_run else "rollback"
        case HistoryCommand():
            return "history"
        case StatusCommand():
            return "status"
        case CancelCommand():
            return "cancel"
        case HelpCommand():
            return "help"
