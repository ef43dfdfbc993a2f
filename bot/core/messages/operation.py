"""Messages about one operation: the request message, its thread lines and the progress message."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from bot.core.catalog import BackendKind
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
    cut,
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
from bot.core.thread_digest import MAX_REASONS_SHOWN, Digest, EventTally

# An example message or event quoted in a digest is cut here: the count is the news, the text a hint (long
# enough for a registry's answer, "…manifest for nginx:x not found: manifest unknown").
MAX_QUOTED: Final = 300
# The same in a rollout's final line, which may name three reasons after the failure itself.
MAX_QUOTED_IN_FINAL_LINE: Final = 120


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
    if operation.is_resume_sync and operation.gitops is not None:
        return f"resume sync of {escape(operation.gitops.reconciler.ref.display)}"
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
        (
            f"*Resumes:* {escape(operation.gitops.reconciler.ref.display)} · revision {operation.plan.from_revision} "
            "stays as it is"
            if operation.is_resume_sync and operation.gitops is not None
            else f"*Current:* revision {operation.plan.from_revision} · "
            f"*Rolls back to:* revision {operation.plan.to_revision}"
        ),
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
    if operation.required_approvals == 0:
        return ":robot_face: started by the automatic rollback policy (approvals: 0)"
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
        blocks.append(context(*_problems_now(operation, status.unhealthy)))
    return message(text, blocks, operation)


def _quote(text: str) -> str:
    """A platform's message or event, on one line and cut short: the count is the news, the text only a hint."""
    return escape(cut(" ".join(text.split()), MAX_QUOTED))


def _units(operation: Operation, count: int, name: str | None = None) -> str:
    """ "12 pods", "3 tasks"; a lone unit by its name, which is what people then look up."""
    if count == 1 and name:
        return f"`{escape(name)}`"
    noun = "task" if operation.target.backend is BackendKind.ECS else "pod"
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _problems_now(operation: Operation, units: tuple[UnhealthyUnit, ...]) -> list[str]:
    """The units unhealthy right now, counted per reason (a handful of lines for 100 tasks as for 1)."""
    by_reason = Counter(unit.reason for unit in units)
    example = {unit.reason: unit.message for unit in reversed(units) if unit.message}
    named = {unit.reason: unit.name for unit in reversed(units)}
    lines = []
    for reason, count in by_reason.most_common(MAX_REASONS_SHOWN):
        detail = f": {_quote(example[reason])}" if reason in example else ""
        lines.append(f":warning: {_units(operation, count, named[reason])} {escape(reason)}{detail}")
    hidden = by_reason.most_common()[MAX_REASONS_SHOWN:]
    if hidden:
        lines.append(f"…and {_units(operation, sum(n for _, n in hidden))} for {len(hidden)} more reasons")
    return lines


def stuck_pods_text(units: Sequence[UnhealthyUnit]) -> str:
    """The pods stuck as a rollout ended, for its final line: counted per reason, at most `MAX_REASONS_SHOWN`
    reasons, each with one pod's own message ("38 pods CrashLoopBackOff (back-off 40s restarting failed
    container …)"); a lone pod by its name, the other reasons counted. Never a list of pod names."""
    by_reason = Counter(unit.reason for unit in units)
    example = {unit.reason: unit.message for unit in reversed(units) if unit.message}
    named = {unit.reason: unit.name for unit in reversed(units)}
    parts = []
    for reason, count in by_reason.most_common(MAX_REASONS_SHOWN):
        who = f"pod {named[reason]}" if count == 1 else f"{count} pods"
        detail = f" ({cut(' '.join(example[reason].split()), MAX_QUOTED_IN_FINAL_LINE)})" if reason in example else ""
        parts.append(f"{who} {reason}{detail}")
    hidden = by_reason.most_common()[MAX_REASONS_SHOWN:]
    if hidden:
        pods = sum(count for _, count in hidden)
        more = "1 more reason" if len(hidden) == 1 else f"{len(hidden)} more reasons"
        parts.append(f"{pods} pod{'' if pods == 1 else 's'} for {more}")
    return "; ".join(parts)


def unhealthy_text(unit: UnhealthyUnit) -> str:
    detail = f": {escape(unit.message)}" if unit.message else ""
    return f":warning: `{escape(unit.name)}` {escape(unit.reason)}{detail}"


def thread_line(operation: Operation, text: str) -> ChatMessage:
    """A line in the operation's thread. `text` is already mrkdwn (built here or by the lifecycle)."""
    return message(text, [section(text)], operation)


def _events_text(events: EventTally, window: str) -> str:
    parts = []
    if events.started_tasks or events.stopped_tasks:
        parts.append(f"started {events.started_tasks} tasks, stopped {events.stopped_tasks} in the last {window}")
    for event in reversed(events.others):
        times = f" ({event.count}×)" if event.count > 1 else ""
        parts.append(f"{_quote(event.latest)}{times}")
    if events.other_omitted:
        parts.append(f"and {events.other_omitted} more events")
    return ":information_source: " + " · ".join(parts)


def digest_line(operation: Operation, digest: Digest) -> ChatMessage:
    """News of the last while in one line: problems counted per reason, events summarised, never one per unit."""
    lines = []
    for problem in digest.problems:
        detail = f": {_quote(problem.example)}" if problem.example else ""
        who = _units(operation, problem.count, problem.first_unit)
        lines.append(f":warning: {who} {escape(problem.reason)}{detail}")
    if digest.more_reasons:
        lines.append(f"…and {_units(operation, digest.more_units)} for {digest.more_reasons} more reasons")
    if not digest.events.is_empty:
        lines.append(_events_text(digest.events, format_elapsed(digest.window)))
    return thread_line(operation, "\n".join(lines))


def closing_notes_line(operation: Operation, notes: tuple[str, ...]) -> ChatMessage:
    """What the backend said as the rollout ended (e.g. a task definition it did not deregister), in one line."""
    return thread_line(operation, "\n".join(f":information_source: {escape(cut(note, 500))}" for note in notes))


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
