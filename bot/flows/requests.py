"""Requests: the slash command, from its text to a request message waiting for approval (or an answer).

Always exactly one reply per command. Usage errors and help are answered inside the 3-second ack; everything
that needs Slack, Redis or a backend runs on the request executor and answers through `reply`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence

from bot.core import messages
from bot.core.catalog import BackendKind, Catalog, ChannelId, SlackUserId, Target
from bot.core.command_gitops import ResumeSyncCommand, parse_resume_sync, suspend_requested
from bot.core.commands import (
    AutoResumeCommand,
    AutoStatusCommand,
    CancelCommand,
    Command,
    HelpCommand,
    HistoryCommand,
    IncidentsCommand,
    RollbackCommand,
    StatusCommand,
    parse_command,
    validate_options,
)
from bot.core.errors import (
    CommandSyntaxError,
    NothingToDo,
    RevisionNotFound,
    TemporaryError,
    UserError,
)
from bot.core.incident_auto import POLICY_REQUESTER
from bot.core.incidents import Incident
from bot.core.messages import ChatMessage
from bot.core.messages import gitops as gitops_words
from bot.core.messages.auto import automatic_rollback_off
from bot.core.operations import Operation, OperationId, Phase
from bot.core.rollouts import BackendOption, RevisionNumber
from bot.core.targets import check_channel, resolve_target
from bot.flows.batch_requests import is_batch, plan_batch, plan_incident_batch
from bot.flows.gitops import SyncControl
from bot.flows.journal import Journal
from bot.flows.reporting import Reporter
from bot.flows.request_posting import Reply, RequestPoster
from bot.flows.votes import Votes
from bot.ports import Backend, Chat, Clock, Metrics, OperationStore

log = logging.getLogger("rollbot.flows")


class Requests:
    def __init__(
        self,
        *,
        backends: Mapping[BackendKind, Backend],
        backend_of: Callable[[Target], Backend],
        journal: Journal,
        votes: Votes,
        reporter: Reporter,
        chat: Chat,
        store: OperationStore,
        clock: Clock,
        metrics: Metrics,
        catalog: Catalog,
        new_operation_id: Callable[[], OperationId],
        command_name: str,
        gitops: SyncControl,
    ) -> None:
        self._gitops = gitops
        self._backends = backends
        self._backend = backend_of
        self._votes = votes
        self._store = store
        self._clock = clock
        self._metrics = metrics
        self._catalog = catalog
        self._new_id = new_operation_id
        self._command = command_name
        self._poster = RequestPoster(
            journal=journal, votes=votes, reporter=reporter, chat=chat, store=store, clock=clock, metrics=metrics
        )
        # What `/rollback incidents` answers; wired by the composition root when incidents are on.
        self.incidents_listing: Callable[[], ChatMessage] | None = None
        # What `/rollback auto status` and `/rollback auto resume <context>` answer (the automatic-rollback flow).
        self.auto_status: Callable[[], ChatMessage] | None = None
        self.auto_resume: Callable[[str, SlackUserId], ChatMessage] | None = None

    def answer_now(self, text: str) -> ChatMessage | None:
        """The reply to a command that needs no I/O (usage errors, help), fast enough for the 3 s ack; else None."""
        try:
            if parse_resume_sync(text) is not None:
                return None
            command = parse_command(text, self._declared_options(), self._known_names())
        except CommandSyntaxError as exc:
            self._metrics.command_received("invalid")
            return messages.usage_error(str(exc), self._command)
        if isinstance(command, HelpCommand):
            self._metrics.command_received("help")
            return self._help()
        return None

    def handle(
        self,
        text: str,
        user: SlackUserId,
        channel: ChannelId,
        reply: Reply,
        operation_id: OperationId | None = None,
    ) -> Operation | None:
        """Answer a slash command: always one final `reply`; returns the operation it created, if any.

        `operation_id` is the id the command's operation gets, chosen when the command was acknowledged: a replay
        of the same command (its first replica died while handling it) continues that operation instead of
        requesting a second one.
        """
        try:
            command: Command | ResumeSyncCommand | None = parse_resume_sync(text)
            if command is None:
                command = parse_command(text, self._declared_options(), self._known_names())
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
                    reply(self._votes.on_cancel(command.operation_id, user))
                case IncidentsCommand():
                    listing = self.incidents_listing
                    reply(listing() if listing is not None else messages.plain("Failure detection is off."))
                case AutoStatusCommand():
                    reply(self.auto_status() if self.auto_status else automatic_rollback_off())
                case AutoResumeCommand():
                    reply(self.auto_resume(command.context, user) if self.auto_resume else automatic_rollback_off())
                case RollbackCommand():
                    return self._request(command, user, channel, reply, operation_id)
                case ResumeSyncCommand():
                    return self._resume_sync(command, user, channel, reply, operation_id)
        except CommandSyntaxError as exc:
            reply(messages.usage_error(str(exc), self._command))
        except UserError as exc:
            reply(messages.user_error(str(exc)))
        except TemporaryError as exc:
            # The backend or Slack is briefly unreachable: nothing was started, asking again is safe.
            log.warning("command hit a temporary error", extra={"error": str(exc)})
            reply(messages.try_again(str(exc)))
        return None

    def _request(
        self,
        command: RollbackCommand,
        user: SlackUserId,
        channel: ChannelId,
        reply: Reply,
        operation_id: OperationId | None,
    ) -> Operation | None:
        if operation_id is not None:
            existing = self._store.get(operation_id)
            if existing is not None:
                return self._poster.resume(existing, reply)
        check_channel(self._catalog, channel)
        new_id = operation_id if operation_id is not None else self._new_id()
        if is_batch(command, self._catalog):
            suspend, command = suspend_requested(command)
            batch = plan_batch(
                command,
                catalog=self._catalog,
                backend_of=self._backend,
                user=user,
                channel=channel,
                operation_id=new_id,
                now=self._clock.now(),
            )
            reconciled = self._gitops.batch_refusal(batch, suspend)
            if reconciled is not None:
                reply(reconciled)
                return None
            return self._poster.open(batch, reply)
        suspend, command = suspend_requested(command)
        target = resolve_target(command.target, self._catalog)
        backend = self._backend(target)
        backend.check_target(target)
        validate_options(command, backend.options())
        decision, gitops = self._gitops.judge(target, suspend)
        if decision.action == "refuse" and decision.line is not None:
            reply(gitops_words.refused(target, decision.line, self._command))
            return None
        try:
            plan = backend.plan_rollback(target, command.to_revision, command.options)
        except NothingToDo:
            reply(messages.already_at_revision(target, backend.current_revision(target)))
            return None
        except RevisionNotFound as exc:
            reply(messages.revision_not_found(target, command.to_revision, exc.available, str(exc) or None))
            return None
        if decision.line is not None:
            plan = plan.model_copy(update={"notes": (*plan.notes, decision.line)})
        now = self._clock.now()
        operation = Operation(
            id=new_id,
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
            gitops=gitops,
        )
        return self._poster.open(operation, reply)

    def _resume_sync(
        self,
        command: ResumeSyncCommand,
        user: SlackUserId,
        channel: ChannelId,
        reply: Reply,
        operation_id: OperationId | None,
    ) -> Operation | None:
        """`resume-sync <target>`: a request people approve like a rollback, restoring the recorded settings."""
        if operation_id is not None:
            existing = self._store.get(operation_id)
            if existing is not None:
                return self._poster.resume(existing, reply)
        check_channel(self._catalog, channel)
        target = resolve_target(command.target, self._catalog)
        backend = self._backend(target)
        backend.check_target(target)
        found = self._gitops.resume_request(target, backend.current_revision(target))
        if found is None:
            reply(gitops_words.nothing_to_resume(target, self._gitops.reconciler(target)))
            return None
        plan, gitops = found
        now = self._clock.now()
        operation = Operation(
            id=operation_id if operation_id is not None else self._new_id(),
            phase=Phase.AWAITING_APPROVAL,
            target=target,
            requester=user,
            channel=channel,
            created_at=now,
            updated_at=now,
            expires_at=now + target.policy.expires_after,
            plan=plan,
            action="resume-sync",
            gitops=gitops,
        )
        return self._poster.open(operation, reply)

    def request_for_incident(
        self,
        target: Target,
        to_revision: RevisionNumber,
        user: SlackUserId,
        channel: ChannelId,
        incident_id: str,
        reply: Reply,
    ) -> Operation | None:
        """The card's button: the same request as `/rollback TARGET N`, posted in the card's channel.

        The detect channel is the operator's choice, so `allowed_channels` does not apply to it.
        """
        backend = self._backend(target)
        backend.check_target(target)
        decision, gitops = self._gitops.judge(target, suspend_requested=False)
        if decision.action == "refuse" and decision.line is not None:
            reply(gitops_words.refused(target, decision.line, self._command))
            return None
        try:
            plan = backend.plan_rollback(target, to_revision, {})
        except NothingToDo:
            reply(messages.already_at_revision(target, backend.current_revision(target)))
            return None
        if decision.line is not None:
            plan = plan.model_copy(update={"notes": (*plan.notes, decision.line)})
        now = self._clock.now()
        operation = Operation(
            id=self._new_id(),
            phase=Phase.AWAITING_APPROVAL,
            target=target,
            requester=user,
            channel=channel,
            created_at=now,
            updated_at=now,
            expires_at=now + target.policy.expires_after,
            requested_revision=to_revision,
            plan=plan,
            source="detected",
            incident_id=incident_id,
            gitops=gitops,
        )
        return self._poster.open(operation, reply)

    def request_for_incident_group(
        self,
        members: Sequence[tuple[Target, RevisionNumber]],
        user: SlackUserId,
        channel: ChannelId,
        group_id: str,
        reply: Reply,
    ) -> Operation | None:
        """A mass failure's "Roll back all": one batch request, posted in the summary card's channel."""
        batch = plan_incident_batch(
            members,
            backend_of=self._backend,
            user=user,
            channel=channel,
            operation_id=self._new_id(),
            group_id=group_id,
            now=self._clock.now(),
        )
        if batch is None:
            reply(messages.plain("Every one of them is already at its last good revision: nothing to roll back."))
            return None
        return self._poster.open(batch, reply)

    def request_automatic(
        self,
        target: Target,
        to_revision: RevisionNumber,
        incident: Incident,
        operation_id: OperationId,
        approvals: int,
    ) -> Operation | None:
        """The automatic-rollback policy's request, posted in the card's channel: approved at once (`approvals`
        0) or waiting for `approvals` approvals under the target's approvers. Requested again under the same
        `operation_id` (a replica died in between), it continues that operation instead of making a second.

        Raises UserError when it cannot be requested (the target is busy, the plan refused…).
        """
        existing = self._store.get(operation_id)
        if existing is not None:
            return self._poster.resume(existing, _unanswered)
        backend = self._backend(target)
        backend.check_target(target)
        try:
            plan = backend.plan_rollback(target, to_revision, {})
        except NothingToDo:
            raise UserError(f"{target.name} already runs revision {to_revision}") from None
        now = self._clock.now()
        operation = Operation(
            id=operation_id,
            phase=Phase.APPROVED if approvals == 0 else Phase.AWAITING_APPROVAL,
            target=target,
            requester=POLICY_REQUESTER,
            channel=incident.channel,
            created_at=now,
            updated_at=now,
            expires_at=now + target.policy.expires_after,
            requested_revision=to_revision,
            plan=plan,
            reason=f"automatic rollback: {incident.signal.reason} on revision {incident.revision} ({incident.id})",
            source="policy",
            incident_id=incident.id,
            approvals_needed=approvals,
        )
        busy: list[ChatMessage] = []
        opened = self._poster.open(operation, busy.append)
        if opened is None:
            raise UserError(busy[0].text if busy else "the request could not be posted")
        return opened

    def _help(self) -> ChatMessage:
        options: list[tuple[str, BackendOption]] = []
        for kind, backend in sorted(self._backends.items()):
            options.extend((kind.value, option) for option in backend.options())
        return messages.help_message(self._catalog, self._command, options)

    def _status(self, target: Target) -> ChatMessage:
        backend = self._backend(target)
        backend.check_target(target)
        status = backend.status(target)
        gitops = self._gitops.status_lines(target)
        if gitops:
            status = status.model_copy(update={"details": (*status.details, *gitops)})
        holder = self._store.lock_holder(target.lock_key)
        lock = messages.lock_line(holder.operation_id, holder.requester, holder.since) if holder else None
        return messages.status_message(target, status, lock)

    def _known_names(self) -> list[str]:
        return [*self._catalog.names, *self._catalog.groups]

    def _declared_options(self) -> dict[str, BackendOption]:
        return {option.name: option for backend in self._backends.values() for option in backend.options()}


def _unanswered(message: ChatMessage) -> None:
    """Nobody typed the policy's request: what a command would be told goes to the log only."""
    log.info("automatic rollback request", extra={"answer": message.text})


def _verb(command: Command | ResumeSyncCommand) -> str:
    match command:
        case ResumeSyncCommand():
            return "resume-sync"
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
        case IncidentsCommand():
            return "incidents"
        case AutoStatusCommand() | AutoResumeCommand():
            return "auto"
