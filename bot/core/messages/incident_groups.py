"""The mass-failure summary card: one message for a group of incidents, kept true in place until all are over.

It lists the members grouped by the cause they visibly share (the same new image tag, else the same reason),
each with its state, and offers one "Roll back all N" button while a click can lead somewhere. Every version
carries the `rollbot_incident_group` metadata (`group_id`, `incident_ids`, `state`). Backend strings are escaped.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from bot.core.incident_groups import (
    GROUP_EVENT_TYPE,
    GroupMember,
    GroupState,
    IncidentGroup,
    shared_causes,
)
from bot.core.incidents import IncidentState, Resolution
from bot.core.messages.blocks import (
    ChatMessage,
    context,
    cut,
    escape,
    escape_keeping_mentions,
    format_elapsed,
    format_time,
    mention,
    section,
)
from bot.core.slack_limits import MAX_BLOCKS, MAX_SECTION_TEXT, MAX_TEXT

# The summary card's button; the handler listens for exactly this action id, and its value is the group id.
GROUP_ROLLBACK_ACTION: Final = "rollbot_incident_group_rollback"
GROUP_ACTIONS_BLOCK: Final = "rollbot_incident_group_actions"
# Rows shown per cause; the rest are counted (each member's own thread or `/rollback incidents` has them all).
MAX_ROWS_PER_CAUSE: Final = 25

_MEMBER_ICONS: Final = {
    IncidentState.OPEN: ":red_circle:",
    IncidentState.ROLLING_BACK: ":arrows_counterclockwise:",
    IncidentState.RESOLVED: ":large_green_circle:",
}


def group_metadata(group: IncidentGroup) -> dict[str, Any]:
    return {"event_type": GROUP_EVENT_TYPE, "event_payload": group.metadata_payload()}


def group_card(group: IncidentGroup, now: datetime) -> ChatMessage:
    """The summary card, for every state; `now` only says how long it has been going on."""
    blocks: list[dict[str, Any]] = [section(_headline(group, now), block_id="rollbot_group_headline")]
    for cause in shared_causes(group.members):
        title = f"*{escape(cause.label)}*" if cause.label else "*No shared cause visible*"
        rows = [_row(member) for member in cause.members[:MAX_ROWS_PER_CAUSE]]
        if len(cause.members) > MAX_ROWS_PER_CAUSE:
            rows.append(f"…and {len(cause.members) - MAX_ROWS_PER_CAUSE} more")
        blocks.append(section(cut(f"{title} ({len(cause.members)})\n" + "\n".join(rows), MAX_SECTION_TEXT)))
    if group.note:
        blocks.append(context(f":warning: {escape_keeping_mentions(group.note)}"))
    if group.operation_id is not None and group.state is not GroupState.RESOLVED:
        who = f" by {mention(group.rollback_requested_by)}" if group.rollback_requested_by else ""
        blocks.append(context(f"Rollback of all of them requested as `{group.operation_id}`{who}."))
    if group.has_button:
        left_out = len(group.members) - len(group.to_roll_back)
        if left_out and group.state is GroupState.OPEN:
            blocks.append(context(f"{left_out} of them cannot be rolled back from here (see their rows)."))
        blocks.append(_button(group))
    text = _fallback(group)
    return ChatMessage(text=cut(text, MAX_TEXT), blocks=tuple(blocks)[:MAX_BLOCKS], metadata=group_metadata(group))


def _headline(group: IncidentGroup, now: datetime) -> str:
    count = f"{len(group.members)} incidents"
    if group.state is GroupState.RESOLVED:
        lasted = format_elapsed((group.resolved_at or now) - group.opened_at)
        return f":large_green_circle: Mass failure resolved · {count} · lasted {lasted}"
    first = min(member.opened_at for member in group.members)
    since = f"since {format_time(first)} ({format_elapsed(now - first)})"
    if group.state is GroupState.ROLLING_BACK:
        return f":arrows_counterclockwise: Mass failure · rolling back · {count} {since} · `{group.operation_id}`"
    return f":rotating_light: Mass failure · {count} {since}"


def _row(member: GroupMember) -> str:
    row = f"{_MEMBER_ICONS[member.state]} *{escape(member.label)}*: {escape(member.reason)} "
    row += f"on revision {escape(member.revision)}"
    if member.state is IncidentState.RESOLVED:
        how = member.resolution.value.replace("_", " ") if member.resolution else "resolved"
        return f"{row} · {how}"
    if member.state is IncidentState.ROLLING_BACK:
        return f"{row} · rollback requested"
    if member.rollback_to is None:
        return f"{row} · no rollback from here"
    return f"{row} · back to {member.rollback_to}"


def _button(group: IncidentGroup) -> dict[str, Any]:
    count = len(group.to_roll_back)
    return {
        "type": "actions",
        "block_id": GROUP_ACTIONS_BLOCK,
        "elements": [
            {
                "type": "button",
                "action_id": GROUP_ROLLBACK_ACTION,
                "text": {"type": "plain_text", "text": f"Roll back all {count}", "emoji": True},
                "style": "danger",
                "value": group.id,
            }
        ],
    }


def _fallback(group: IncidentGroup) -> str:
    count = len(group.members)
    if group.state is GroupState.RESOLVED:
        rolled_back = sum(1 for m in group.members if m.resolution is Resolution.ROLLED_BACK)
        return f"Mass failure resolved: {count} incidents ({rolled_back} rolled back)"
    return f"Mass failure: {count} incidents are failing ({group.id})"
