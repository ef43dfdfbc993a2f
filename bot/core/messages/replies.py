"""Replies to slash commands (ephemeral): usage, help, history, status, and why something did not happen."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from bot.core.catalog import Catalog, Target
from bot.core.messages.blocks import (
    MAX_HISTORY_ROWS,
    ChatMessage,
    context,
    cut,
    escape,
    escape_keeping_mentions,
    format_time,
    mention,
    message,
    plain,
    section,
    target_coordinates,
)
from bot.core.messages.operation import _revision_arrow, unhealthy_text
from bot.core.operations import Operation
from bot.core.rollouts import (
    BackendOption,
    Revision,
    RevisionNumber,
    TargetStatus,
)

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
        f"`{command} incidents` · `{command} auto status` · `{command} help`"
    )


def usage_error(problem: str, command: str) -> ChatMessage:
    """A malformed command: the problem (with a suggestion when we have one) and the usage."""
    text = f":warning: {problem}\n{usage_text(command)}"
    return message(text, [section(text)])


def help_message(catalog: Catalog, command: str, options: Sequence[tuple[str, BackendOption]] = ()) -> ChatMessage:
    lines = []
    for name in catalog.names:
        target = catalog.get(name)
        if target is None:  # pragma: no cover - names come from the catalog itself
            continue
        description = f" {escape(target.spec.description)}" if target.spec.description else ""
        lines.append(f"• `{escape(name)}`: {target_coordinates(target)}{description}")
    targets = "\n".join(lines) if lines else "_no targets configured_"
    blocks = [section(usage_text(command)), section(f"*Targets*\n{targets}")]
    if options:
        flags = "\n".join(f"• `--{escape(o.name)}` ({escape(kind)}): {escape(o.help)}" for kind, o in options)
        blocks.append(section(f"*Backend flags*\n{flags}"))
    blocks.append(
        section(
            "*Argo CD and Flux*\n"
            f"• `{command} <target> --suspend-sync`: pause the reconciler's sync with this rollback, so it sticks\n"
            f"• `{command} resume-sync <target>`: restore the sync settings rollbot recorded (approved like a "
            "rollback)"
        )
    )
    blocks.append(context("Approve with :white_check_mark: on the request message, reject with :x:."))
    return message(f"{usage_text(command)}\nTargets: {', '.join(catalog.names)}", blocks)


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
        lines.append(cut(line, 200))
    header = f"*History of {escape(target.name)}* ({target_coordinates(target)})"
    table = "\n".join(lines) if lines else "(no revisions)"
    # Code blocks are not mrkdwn-formatted, but &, <, > must still be escaped for Slack to show them.
    body = f"```\n  rev   deployed (UTC)    status       images  cause\n{escape(table)}\n```"
    blocks = [section(header), section(body)]
    if len(revisions) > MAX_HISTORY_ROWS:
        blocks.append(context(f"{len(revisions) - MAX_HISTORY_ROWS} older revisions not shown"))
    return message(f"History of {target.name}: {len(revisions)} revisions", blocks)


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
    return message(text, [section(text)])


def lock_line(operation_id: str, requester: str, since: datetime) -> str:
    return f":lock: locked by `{escape(operation_id)}` requested by {mention(requester)} at {format_time(since)}"


def cancel_done(operation: Operation) -> ChatMessage:
    return plain(f":no_entry_sign: Cancelled `{operation.id}` ({escape(operation.target.name)}).")


def nothing_to_cancel(operation_id: str, phase: str) -> ChatMessage:
    return plain(f"`{escape(operation_id)}` is {phase.replace('_', ' ')}; nothing to cancel.")


def vote_refused_busy(reason: str) -> ChatMessage:
    """A vote on a request whose target another operation took meanwhile (its lock lapsed)."""
    return plain(f":lock: Your vote was not counted: {escape_keeping_mentions(reason)}.")


def request_queued(operation: Operation, seconds: float) -> ChatMessage:
    """Slack's rate limits hold the request message back: it is queued, not lost, and nothing needs retyping."""
    return plain(
        f":hourglass_flowing_sand: Queued `{operation.id}`: Slack is busy, so the request for "
        f"{escape(operation.target.name)} will be posted in about {max(1, round(seconds))} s. No need to retype it."
    )
