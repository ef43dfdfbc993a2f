"""Every piece of chat text and Block Kit layout the bot produces, as pure functions of core data.

Nothing here talks to Slack; adapters send what these functions return. Keeping all wording in one module is
what lets us keep messages exact, short and consistent (bolt keeps its error texts the same way).

Two rules hold for everything built here. Strings that come from users or backends (reasons, change causes,
image names, error texts) are mrkdwn-escaped, so `<!channel>` in a change cause never pings anyone. And the
Block Kit limits of Slack (slack.md §6) are respected by construction: at most 50 blocks, section text cut at
3000 characters, fallback text cut at 4000 (the ceiling `chat.update` enforces). Every message about an
operation carries the `rollbot_operation` metadata, so workflows can follow the operation without parsing text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from bot.core.catalog import Catalog, SlackGroupId, SlackUserId, Target
from bot.core.operations import METADATA_EVENT_TYPE, Operation, OperationId, Phase
from bot.core.rollouts import (
    BackendOption,
    Change,
    Revision,
    RevisionNumber,
    RolloutStatus,
    TargetStatus,
    UnhealthyUnit,
)
from bot.core.slack_limits import MAX_BLOCKS, MAX_SECTION_TEXT, MAX_TEXT


class ChatMessage(BaseModel):
    """A message ready to send: fallback text, Block Kit blocks and (for operation messages) metadata."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    text: str
    blocks: tuple[dict[str, Any], ...] = ()
    # Slack message metadata: {"event_type": ..., "event_payload": {...}}; None for messages about nothing.
    metadata: dict[str, Any] | None = None
    # Only used for replies to a slash command: ephemeral (default) or in_channel.
    response_type: str = Field(default="ephemeral")


# A preview longer than this many changes is summarised; the thread is no place for a full manifest diff.
MAX_CHANGES_SHOWN = 20
# History shows the newest revisions only; people roll back to recent ones.
MAX_HISTORY_ROWS = 15
# The action ids of the request message's buttons; handlers listen for exactly these.
APPROVE_ACTION = "rollbot_approve"
REJECT_ACTION = "rollbot_reject"
DECISION_BLOCK = "rollbot_decision"
APPROVE_EMOJI = "white_check_mark"
REJECT_EMOJI = "x"

_PHASE_BADGES: dict[Phase, str] = {
    Phase.PREVIEW: ":mag: Dry run: preview only, nothing will change",
    Phase.AWAITING_APPROVAL: ":hourglass_flowing_sand: Awaiting approval",
    Phase.APPROVED: ":white_check_mark: Approved, starting",
    Phase.ROLLING_BACK: ":arrows_counterclockwise: Rolling back",
    Phase.SUCCEEDED: ":large_green_circle: Rolled back",
    Phase.FAILED: ":red_circle: Rollback failed",
    Phase.REJECTED: ":no_entry: Rejected",
    Phase.EXPIRED: ":alarm_clock: Expired: not approved in time",
    Phase.CANCELLED: ":no_entry_sign: Cancelled",
}


# --- small pieces ---------------------------------------------------------------------------------------


def escape(text: str) -> str:
    """Mrkdwn-escape a user- or backend-provided string (`&`, `<`, `>`; Slack needs nothing else)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# Slack's own markup for people, groups and channels, which texts written by the core may contain.
_SLACK_REFERENCE = re.compile(r"&lt;([@#][UWCGD][A-Z0-9]+|!subteam\^S[A-Z0-9]+)&gt;")


def escape_keeping_mentions(text: str) -> str:
    """Escape like `escape`, but keep `<@U…>`, `<#C…>` and `<!subteam^S…>` working (never `<!channel>`)."""
    return _SLACK_REFERENCE.sub(r"<\1>", escape(text))


def mention(user: SlackUserId | str) -> str:
    return f"<@{user}>"


def group_mention(group: SlackGroupId | str) -> str:
    return f"<!subteam^{group}>"


def format_time(moment: datetime) -> str:
    """Times in messages are UTC, always labelled: incident channels span time zones."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def format_elapsed(elapsed: timedelta) -> str:
    seconds = max(0, int(elapsed.total_seconds()))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _section(text: str, block_id: str | None = None) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "section", "text": {"type": "mrkdwn", "text": _cut(text, MAX_SECTION_TEXT)}}
    if block_id is not None:
        block["block_id"] = block_id
    return block


def _context(*texts: str) -> dict[str, Any]:
    # A context block holds at most 10 elements; each is a section-sized mrkdwn text.
    return {
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": _cut(text, MAX_SECTION_TEXT)} for text in texts[:10]],
    }


def operation_metadata(operation: Operation) -> dict[str, Any]:
    return {"event_type": METADATA_EVENT_TYPE, "event_payload": operation.metadata_payload()}


def _message(text: str, blocks: Iterable[dict[str, Any]] = (), operation: Operation | None = None) -> ChatMessage:
    return ChatMessage(
        text=_cut(text, MAX_TEXT),
        blocks=tuple(blocks)[:MAX_BLOCKS],
        metadata=operation_metadata(operation) if operation is not None else None,
    )


def plain(text: str) -> ChatMessage:
    """A short reply that needs no layout (acks, confirmations)."""
    return ChatMessage(text=_cut(text, MAX_TEXT))


def target_coordinates(target: Target) -> str:
    """Where the target lives, in the backend's own words: `helm release default/workshop (context sandbox)`."""
    spec = target.spec
    where = spec.display
    context = getattr(spec, "kube_context", None)
    region = getattr(spec, "region", None)
    if context:
        where += f" (context {context})"
    if region:
        where += f" ({region})"
    return escape(where)


def approvers_text(operation: Operation) -> str:
    """Who may approve, as Slack renders it: user and group mentions, and the four-eyes rule."""
    policy = operation.target.policy
    who = [mention(user) for user in policy.approvers] + [group_mention(group) for group in policy.approver_groups]
    text = ", ".join(who) if who else "nobody (check the catalog)"
    if not policy.allow_self_approval:
        text += f" (not {mention(operation.requester)})"
    return text


def _change_line(change: Change) -> str:
    before = f"`{escape(change.before)}`" if change.before is not None else "_(none)_"
    after = f"`{escape(change.after)}`" if change.after is not None else "_(none)_"
    return f"• {escape(change.scope)} {escape(change.field)}: {before} → {after}"


def changes_text(operation: Operation) -> str:
    plan = operation.plan
    lines = [_change_line(change) for change in plan.changes[:MAX_CHANGES_SHOWN]]
    if len(plan.changes) > MAX_CHANGES_SHOWN:
        lines.append(f"…and {len(plan.changes) - MAX_CHANGES_SHOWN} more changes")
    if not plan.changes:
        lines.append("• no differences reported by the backend")
    lines.extend(f"_{escape(note)}_" for note in plan.notes)
    return "\n".join(lines)


def _revision_arrow(operation: Operation) -> str:
    return f"revision {operation.plan.from_revision} → {operation.plan.to_revision}"


# --- the request message (posted in the channel, updated in place until the end) --------------------------


def request_message(operation: Operation, now: datetime | None = None) -> ChatMessage:
    """The one channel message that shows what will change and collects approvals, for every phase."""
    target = operation.target
    badge = _PHASE_BADGES[operation.phase]
    headline = (
        f"{badge} · *{escape(target.name)}* {_revision_arrow(operation)} · `{operation.id}`"
        if operation.phase is not Phase.PREVIEW
        else f"{badge} · *{escape(target.name)}* {_revision_arrow(operation)}"
    )
    facts = [
        f"*Target:* {target_coordinates(target)} · backend `{target.backend.value}`",
        f"*Current:* revision {operation.plan.from_revision} · *Rolls back to:* revision {operation.plan.to_revision}",
        f"*Requested by* {mention(operation.requester)} at {format_time(operation.created_at)}",
    ]
    if operation.reason:
        facts.append(f"*Reason:* {escape(operation.reason)}")
    blocks: list[dict[str, Any]] = [
        _section(headline, block_id="rollbot_headline"),
        _section("\n".join(facts), block_id="rollbot_facts"),
        _section(f"*What will change*\n{changes_text(operation)}", block_id="rollbot_changes"),
    ]
    blocks.append(_context(_decision_status(operation)))
    if operation.phase is Phase.AWAITING_APPROVAL:
        blocks.append(_decision_buttons(operation))
    text = f"{badge}: {target.name} {_revision_arrow(operation)} ({operation.id})"
    return _message(text, blocks, operation)


def _approvals_line(operation: Operation) -> str:
    count = len(operation.approvals)
    who = ", ".join(mention(user) for user in operation.approvers)
    line = f":white_check_mark: approvals {count}/{operation.required_approvals}"
    return line + (f" ({who})" if who else "")


def _decision_status(operation: Operation) -> str:
    phase = operation.phase
    if phase is Phase.PREVIEW:
        return (
            "Dry run: run the same command without `--dry-run` to request this rollback. "
            f"Allowed approvers: {approvers_text(operation)}"
        )
    if phase is Phase.AWAITING_APPROVAL:
        return (
            f"{_approvals_line(operation)} · approvers: {approvers_text(operation)} · "
            f"expires {format_time(operation.expires_at)} · "
            f"react :{APPROVE_EMOJI}: to approve, :{REJECT_EMOJI}: to reject"
        )
    if phase in {Phase.REJECTED, Phase.CANCELLED}:
        by = f" by {mention(operation.decided_by)}" if operation.decided_by else ""
        return f"{_PHASE_BADGES[phase]}{by}" + (f": {escape(operation.outcome)}" if operation.outcome else "")
    if phase is Phase.EXPIRED:
        return f"{_approvals_line(operation)} · expired at {format_time(operation.expires_at)} · :unlock: lock released"
    parts = [_approvals_line(operation)]
    if operation.executor and phase in {Phase.APPROVED, Phase.ROLLING_BACK}:
        parts.append(f":lock: {escape(operation.target.name)} locked by `{operation.id}`")
    if operation.last_status is not None and phase is Phase.ROLLING_BACK:
        parts.append(escape(operation.last_status.summary))
    if phase in {Phase.SUCCEEDED, Phase.FAILED}:
        if operation.outcome:
            parts.append(escape(operation.outcome))
        if operation.started_at and operation.finished_at:
            parts.append(f"took {format_elapsed(operation.finished_at - operation.started_at)}")
        parts.append(":unlock: lock released")
    return " · ".join(parts)


def _decision_buttons(operation: Operation) -> dict[str, Any]:
    return {
        "type": "actions",
        "block_id": DECISION_BLOCK,
        "elements": [
            {
                "type": "button",
                "action_id": APPROVE_ACTION,
                "text": {"type": "plain_text", "text": "Approve", "emoji": True},
                "style": "primary",
                "value": operation.id,
            },
            {
                "type": "button",
                "action_id": REJECT_ACTION,
                "text": {"type": "plain_text", "text": "Reject", "emoji": True},
                "style": "danger",
                "value": operation.id,
                "confirm": {
                    "title": {"type": "plain_text", "text": "Reject this rollback?"},
                    "text": {"type": "plain_text", "text": "The request closes and the target is unlocked."},
                    "confirm": {"type": "plain_text", "text": "Reject"},
                    "deny": {"type": "plain_text", "text": "Keep it open"},
                },
            },
        ],
    }


# --- the thread: progress (one message, updated in place), lines, and the final word -----------------------


def progress_message(operation: Operation, status: RolloutStatus) -> ChatMessage:
    counts = ""
    if status.desired is not None:
        counts = f" · ready {status.ready if status.ready is not None else '?'}/{status.desired}"
        if status.updated is not None:
            counts += f" · updated {status.updated}/{status.desired}"
    icon = {
        "progressing": ":arrows_counterclockwise:",
        "succeeded": ":large_green_circle:",
        "failed": ":red_circle:",
    }[status.phase.value]
    text = (
        f"{icon} Rollout of {operation.target.name} to revision {operation.plan.to_revision}: {status.summary}{counts}"
    )
    blocks = [_section(f"{icon} *Rollout* to revision {operation.plan.to_revision}: {escape(status.summary)}{counts}")]
    if status.unhealthy:
        blocks.append(_context(*(unhealthy_text(unit) for unit in status.unhealthy[:10])))
    return _message(text, blocks, operation)


def unhealthy_text(unit: UnhealthyUnit) -> str:
    detail = f": {escape(unit.message)}" if unit.message else ""
    return f":warning: `{escape(unit.name)}` {escape(unit.reason)}{detail}"


def thread_line(operation: Operation, text: str) -> ChatMessage:
    """A line in the operation's thread. `text` is already mrkdwn (built here or by the lifecycle)."""
    return _message(text, [_section(text)], operation)


def unhealthy_line(operation: Operation, unit: UnhealthyUnit) -> ChatMessage:
    return thread_line(operation, unhealthy_text(unit))


def rollout_event_line(operation: Operation, event: str) -> ChatMessage:
    return thread_line(operation, f":information_source: {escape(event)}")


def takeover_line(operation: Operation) -> ChatMessage:
    return thread_line(
        operation, ":recycle: The replica running this rollback stopped; another one took over and keeps watching."
    )


def handover_line(operation: Operation) -> ChatMessage:
    return thread_line(
        operation,
        ":pause_button: The bot replica running this rollback is restarting; another one takes over the watch.",
    )


def internal_error_text(operation_id: OperationId | str) -> str:
    """What people see when something broke inside the bot: a reference, never a traceback."""
    return f"Internal error, reference {operation_id}"


# --- replies to commands (ephemeral) ----------------------------------------------------------------------


def command_received(command: str, text: str) -> ChatMessage:
    """The immediate ack of a slash command; the real answer follows within seconds."""
    shown = escape(text.strip())[:200]
    return plain(f":hourglass_flowing_sand: Working on `{command} {shown}`…" if shown else f"Working on `{command}`…")


def usage_text(command: str) -> str:
    return (
        f"*Usage:* `{command} <target> [<revision>]` (no revision or 0 = the previous one), "
        f'`--to-revision=N`, `--dry-run`, `--reason "…"`\n'
        f"`{command} history <target>` · `{command} status <target>` · `{command} cancel <operation-id>` · "
        f"`{command} help`"
    )


def usage_error(problem: str, command: str) -> ChatMessage:
    """A malformed command: the problem (with a suggestion when we have one) and the usage."""
    text = f":warning: {problem}\n{usage_text(command)}"
    return _message(text, [_section(text)])


def help_message(catalog: Catalog, command: str, options: Sequence[tuple[str, BackendOption]] = ()) -> ChatMessage:
    lines = []
    for name in catalog.names:
        target = catalog.get(name)
        if target is None:  # pragma: no cover - names come from the catalog itself
            continue
        description = f" {escape(target.spec.description)}" if target.spec.description else ""
        lines.append(f"• `{escape(name)}`: {target_coordinates(target)}{description}")
    targets = "\n".join(lines) if lines else "_no targets configured_"
    blocks = [_section(usage_text(command)), _section(f"*Targets*\n{targets}")]
    if options:
        flags = "\n".join(f"• `--{escape(o.name)}` ({escape(kind)}): {escape(o.help)}" for kind, o in options)
        blocks.append(_section(f"*Backend flags*\n{flags}"))
    blocks.append(_context("Approve with :white_check_mark: on the request message, reject with :x:."))
    return _message(f"{usage_text(command)}\nTargets: {', '.join(catalog.names)}", blocks)


def already_at_revision(target: Target, revision: RevisionNumber | int) -> ChatMessage:
    return plain(f":information_source: {escape(target.name)} is already at revision {revision}; nothing to roll back.")


def revision_not_found(
    target: Target, requested: int | None, available: Sequence[int], reason: str | None = None
) -> ChatMessage:
    """The backend's own reason when it has one (an ECS revision that exists but is INACTIVE is not "missing")."""
    listed = ", ".join(str(number) for number in available) if available else "none"
    what = f"no revision {requested}" if requested is not None else "no earlier revision to roll back to"
    detail = f" ({escape(reason)})" if reason else ""
    return plain(f":warning: {escape(target.name)} has {what}{detail}. Revisions that exist: {listed}.")


def target_busy(target: Target | str, operation_id: str, requester: str, since: datetime) -> ChatMessage:
    name = target.name if isinstance(target, Target) else target
    return plain(
        f":lock: {escape(name)} is locked by `{escape(operation_id)}` requested by {mention(requester)} "
        f"at {format_time(since)}."
    )


def user_error(text: str) -> ChatMessage:
    """A UserError's own text, already written for people (escaped: it may quote what they typed)."""
    return plain(f":warning: {escape_keeping_mentions(text)}")


def try_again(text: str) -> ChatMessage:
    """A temporary failure before anything started: say what is down and that retrying is safe."""
    return plain(f":hourglass: {escape_keeping_mentions(text)}. Nothing was changed; try again in a minute.")


def not_allowed(text: str) -> ChatMessage:
    """Why a vote or a cancel did not count (the lifecycle's words, with mentions of approvers)."""
    return plain(f":no_entry: {escape_keeping_mentions(text)}")


def request_posted(operation: Operation) -> ChatMessage:
    return plain(
        f":white_check_mark: Requested `{operation.id}`: {escape(operation.target.name)} "
        f"{_revision_arrow(operation)}. Waiting for {operation.required_approvals} approval(s)."
    )


def operation_not_found(operation_id: str) -> ChatMessage:
    return plain(f":warning: No operation `{escape(operation_id)}`.")


def history_message(target: Target, revisions: Sequence[Revision]) -> ChatMessage:
    """`helm history`, compact: newest first, one line each, the current one marked."""
    rows = list(reversed(revisions))[:MAX_HISTORY_ROWS]
    lines = []
    for revision in rows:
        marker = "▶" if revision.is_current else " "
        when = revision.deployed_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if revision.deployed_at else "-"
        images = ", ".join(image.image for image in revision.images) or "-"
        cause = revision.change_cause or revision.description or ""
        line = f"{marker} {revision.number:>4}  {when:<16}  {(revision.status or '-'):<11}  {images}"
        if cause:
            line += f"  {cause}"
        lines.append(_cut(line, 200))
    header = f"*History of {escape(target.name)}* ({target_coordinates(target)})"
    table = "\n".join(lines) if lines else "(no revisions)"
    # Code blocks are not mrkdwn-formatted, but &, <, > must still be escaped for Slack to show them.
    body = f"```\n  rev   deployed (UTC)    status       images  cause\n{escape(table)}\n```"
    blocks = [_section(header), _section(body)]
    if len(revisions) > MAX_HISTORY_ROWS:
        blocks.append(_context(f"{len(revisions) - MAX_HISTORY_ROWS} older revisions not shown"))
    return _message(f"History of {target.name}: {len(revisions)} revisions", blocks)


def status_message(target: Target, status: TargetStatus, lock_text: str | None = None) -> ChatMessage:
    icon = ":large_green_circle:" if status.is_healthy else ":red_circle:"
    revision = f"revision {status.revision}" if status.revision is not None else "no revision"
    lines = [f"{icon} *{escape(target.name)}* ({target_coordinates(target)}) at {revision}: {escape(status.summary)}"]
    lines.extend(f"• `{escape(image.container)}`: `{escape(image.image)}`" for image in status.images)
    lines.extend(f"• {escape(detail)}" for detail in status.details)
    lines.extend(unhealthy_text(unit) for unit in status.unhealthy[:10])
    if lock_text:
        lines.append(lock_text)
    text = "\n".join(lines)
    return _message(text, [_section(text)])


def lock_line(operation_id: str, requester: str, since: datetime) -> str:
    return f":lock: locked by `{escape(operation_id)}` requested by {mention(requester)} at {format_time(since)}"


def cancel_done(operation: Operation) -> ChatMessage:
    return plain(f":no_entry_sign: Cancelled `{operation.id}` ({escape(operation.target.name)}).")


def nothing_to_cancel(operation_id: str, phase: str) -> ChatMessage:
    return plain(f"`{escape(operation_id)}` is {phase.replace('_', ' ')}; nothing to cancel.")


def vote_refused_busy(reason: str) -> ChatMessage:
    """A vote on a request whose target another operation took meanwhile (its lock lapsed)."""
    return plain(f":lock: Your vote was not counted: {escape_keeping_mentions(reason)}.")
