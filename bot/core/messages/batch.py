"""Messages about a batch: its request message (a row per member), its progress message, and the busy answer.

The single-target layouts in `operation` stay untouched; `request_message` and `progress_message` come here
when the operation has members. Rows are packed into as few sections as Slack's 3000-character section limit
allows, so a batch of a hundred targets still fits the 50-block ceiling.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Final

from bot.core.messages.blocks import (
    _PHASE_BADGES,
    ChatMessage,
    escape,
    format_time,
    mention,
    message,
    plain,
    section,
    target_coordinates,
)
from bot.core.operations import BatchMember, Operation, Phase
from bot.core.rollouts import RolloutStatus
from bot.core.slack_limits import MAX_SECTION_TEXT

# Each member shows a few of its changes; the full preview of one target is `/rollback <target> --dry-run`.
MEMBER_CHANGES_SHOWN: Final = 3
_MEMBER_ICONS: Final = {
    Phase.SUCCEEDED: ":large_green_circle:",
    Phase.FAILED: ":red_circle:",
    Phase.ROLLING_BACK: ":arrows_counterclockwise:",
}


def batch_headline(operation: Operation) -> str:
    badge = _PHASE_BADGES[operation.phase]
    count = f"{len(operation.members)} targets"
    name = escape(operation.target.name)
    if operation.phase is Phase.PREVIEW:
        return f"{badge} · batch *{name}* · {count}"
    return f"{badge} · batch *{name}* · {count} · `{operation.id}`"


def batch_request_blocks(operation: Operation) -> list[dict[str, Any]]:
    """The facts and a row per member (coordinates, current → previous, preview, then how it ended)."""
    facts = [f"*Requested by* {mention(operation.requester)} at {format_time(operation.created_at)}"]
    if operation.reason:
        facts.append(f"*Reason:* {escape(operation.reason)}")
    facts.append("Each target rolls back to its previous revision; one approval covers them all.")
    blocks = [section(batch_headline(operation), block_id="rollbot_headline"), section("\n".join(facts))]
    blocks.extend(section(text) for text in _packed(_member_row(member) for member in operation.members))
    return blocks


def batch_request_text(operation: Operation) -> str:
    badge = _PHASE_BADGES[operation.phase]
    names = ", ".join(member.name for member in operation.members)
    return f"{badge}: batch {operation.target.name} ({names}) ({operation.id})"


def batch_progress_message(operation: Operation, now: datetime | None = None) -> ChatMessage:
    """One message for the whole batch, updated in place: a row per member with its latest status."""
    done = sum(1 for member in operation.members if member.phase.is_terminal)
    # Once the batch has ended, its icon says how (as its members' rows do), not that it is still moving.
    icon = _MEMBER_ICONS.get(operation.phase, ":arrows_counterclockwise:")
    head = f"{icon} *Batch rollout* {done}/{len(operation.members)} finished"
    rows = [_progress_row(member) for member in operation.members]
    blocks = [section(head), *(section(text) for text in _packed(rows))]
    text = f"Batch rollout of {operation.target.name}: {done}/{len(operation.members)} finished"
    return message(text, blocks, operation)


def batch_busy(holders: Mapping[str, tuple[str, str, datetime]]) -> ChatMessage:
    """Nothing started because some members are held: name each one and who holds it."""
    rows = [
        f"• {escape(name)} is locked by `{escape(operation_id)}` requested by {mention(requester)} "
        f"at {format_time(since)}"
        for name, (operation_id, requester, since) in holders.items()
    ]
    return plain(":lock: Nothing was started — these targets are busy:\n" + "\n".join(rows))


def batch_request_posted(operation: Operation) -> ChatMessage:
    return plain(
        f":white_check_mark: Requested `{operation.id}`: batch {escape(operation.target.name)} "
        f"({len(operation.members)} targets). Waiting for {operation.required_approvals} approval(s)."
    )


def _member_row(member: BatchMember) -> str:
    plan = member.plan
    head = (
        f"*{escape(member.name)}* · {target_coordinates(member.target)} · `{member.target.backend.value}` · "
        f"revision {plan.from_revision} → {plan.to_revision}"
    )
    lines = [head]
    changes = [
        f"   {escape(c.scope)} {escape(c.field)}: `{escape(c.before or '-')}` → `{escape(c.after or '-')}`"
        for c in plan.changes[:MEMBER_CHANGES_SHOWN]
    ]
    if len(plan.changes) > MEMBER_CHANGES_SHOWN:
        changes.append(f"   …and {len(plan.changes) - MEMBER_CHANGES_SHOWN} more changes")
    lines.extend(changes)
    if member.phase in {Phase.SUCCEEDED, Phase.FAILED, Phase.ROLLING_BACK}:
        lines.append(f"   {_MEMBER_ICONS[member.phase]} {escape(member.outcome or _status_summary(member))}")
    return "\n".join(lines)


def _progress_row(member: BatchMember) -> str:
    icon = _MEMBER_ICONS.get(member.phase, ":hourglass:")
    detail = member.outcome if member.phase.is_terminal and member.outcome else _status_summary(member)
    return f"{icon} *{escape(member.name)}* → revision {member.plan.to_revision}: {escape(detail)}"


def _status_summary(member: BatchMember) -> str:
    status: RolloutStatus | None = member.last_status
    return status.summary if status is not None else "starting"


def _packed(rows: Iterable[str]) -> list[str]:
    """Rows joined into as few section texts as Slack's section limit allows."""
    packed: list[str] = []
    for row in rows:
        if packed and len(packed[-1]) + 1 + len(row) <= MAX_SECTION_TEXT:
            packed[-1] += "\n" + row
        else:
            packed.append(row)
    return packed
