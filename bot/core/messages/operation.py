"""Messages about one operation: the request message, its thread lines and the progress message."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bot.core.messages.batch import batch_request_blocks, batch_request_text
from bot.core.messages.blocks import (
    _PHASE_BADGES,
    APPROVE_ACTION,
    APPROVE_EMOJI,
    DECISION_BLOCK,
    MAX_CHANGES_SHOWN,
    REJECT_ACTION,
    REJECT_EMOJI,
    ChatMessage,
    context,
    escape,
    format_elapsed,
    format_time,
    group_mention,
    mention,
    message,
    section,
    target_coordinates,
)
from bot.core.operations import Operation, OperationId, Phase
from bot.core.rollouts import (
    Change,
    RolloutStatus,
    UnhealthyUnit,
)


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
    if operation.is_batch:
        rows = [*batch_request_blocks(operation), context(_decision_status(operation))]
        if operation.phase is Phase.AWAITING_APPROVAL:
            rows.append(_decision_buttons(operation))
        return message(batch_request_text(operation), rows, operation)
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
        section(headline, block_id="rollbot_headline"),
        section("\n".join(facts), block_id="rollbot_facts"),
        section(f"*What will change*\n{changes_text(operation)}", block_id="rollbot_changes"),
    ]
    blocks.append(context(_decision_status(operation)))
    if operation.phase is Phase.AWAITING_APPROVAL:
        blocks.append(_decision_buttons(operation))
    text = f"{badge}: {target.name} {_revision_arrow(operation)} ({operation.id})"
    return message(text, blocks, operation)


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
    blocks = [section(f"{icon} *Rollout* to revision {operation.plan.to_revision}: {escape(status.summary)}{counts}")]
    if status.unhealthy:
        blocks.append(context(*(unhealthy_text(unit) for unit in status.unhealthy[:10])))
    return message(text, blocks, operation)


def unhealthy_text(unit: UnhealthyUnit) -> str:
    detail = f": {escape(unit.message)}" if unit.message else ""
    return f":warning: `{escape(unit.name)}` {escape(unit.reason)}{detail}"


def thread_line(operation: Operation, text: str) -> ChatMessage:
    """A line in the operation's thread. `text` is already mrkdwn (built here or by the lifecycle)."""
    return message(text, [section(text)], operation)


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
