"""Messages about incidents: the card, its thread lines, the `/rollback incidents` list, verification lines.

The card is one message kept true in place: what failed and since when, where, the failed revision and its image
change against the last good one, counts per reason with at most three distinct messages (never one line per
pod), and the "Roll back to revision N" button while a click can lead somewhere. Once resolved, the button is
gone and the card says how it ended and how long it lasted. Every version carries the `rollbot_incident`
metadata. Backend strings (reasons, messages, images, names) are escaped: a pod message is not markup.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from bot.core.catalog import format_duration
from bot.core.detection import Signal, Verification, VerificationState
from bot.core.incident_auto import POLICY_REQUESTER, AutoState
from bot.core.incident_record import INCIDENT_EVENT_TYPE
from bot.core.incidents import Incident, IncidentId, IncidentSource, IncidentState, Resolution
from bot.core.messages.blocks import (
    ChatMessage,
    archive_link,
    context,
    cut,
    escape,
    escape_keeping_mentions,
    format_elapsed,
    format_time,
    section,
)
from bot.core.slack_limits import MAX_BLOCKS, MAX_TEXT

# The card's button; the handler listens for exactly this action id, and its value is the incident id.
INCIDENT_ROLLBACK_ACTION: Final = "rollbot_incident_rollback"
INCIDENT_ACTIONS_BLOCK: Final = "rollbot_incident_actions"
# The countdown's Cancel button (value: the incident id), fixed by contract.
AUTO_CANCEL_ACTION: Final = "rollbot_auto_cancel"
AUTO_BLOCK: Final = "rollbot_incident_auto"
# A listing longer than this is cut, saying how many more there are: it is an ephemeral reply, not a report.
MAX_INCIDENTS_LISTED: Final = 20

_RESOLUTION_TEXT: Final = {
    Resolution.ROLLED_BACK: "rolled back",
    Resolution.ROLLED_BACK_BY_ECS: "rolled back by ECS itself (deployment failed, then rolled back)",
    Resolution.SUPERSEDED: "superseded by a newer revision",
    Resolution.RECOVERED: "recovered by itself",
    Resolution.DELETED: "workload deleted",
}


def incident_metadata(incident: Incident) -> dict[str, Any]:
    return {"event_type": INCIDENT_EVENT_TYPE, "event_payload": incident.metadata_payload()}


def incident_card(incident: Incident, now: datetime) -> ChatMessage:
    """The incident card, for every state; `now` only says how long it has been failing."""
    signal = incident.signal
    blocks: list[dict[str, Any]] = [
        section(_headline(incident, now), block_id="rollbot_incident_headline"),
        section("\n".join(_facts(incident)), block_id="rollbot_incident_facts"),
    ]
    why = _why_text(signal)
    if why:
        blocks.append(section(why, block_id="rollbot_incident_why"))
    if incident.state is not IncidentState.RESOLVED:
        if signal.is_stuck:
            blocks.append(section(_stuck_text(incident)))
        if incident.is_ecs_rolling_back:
            blocks.append(context(":recycle: ECS is rolling it back by itself (circuit breaker); no button needed."))
    if incident.note:
        blocks.append(context(f":warning: {escape_keeping_mentions(incident.note)}"))
    if incident.group_id is not None:
        blocks.append(context(_group_text(incident)))
    blocks.extend(_auto_blocks(incident))
    if incident.has_button and incident.last_good is not None:
        blocks.append(_rollback_button(incident, incident.last_good.revision))
    elif incident.state is IncidentState.OPEN and incident.no_button_reason and not incident.is_ecs_rolling_back:
        blocks.append(context(f"No rollback button: {escape_keeping_mentions(incident.no_button_reason)}"))
    text = _fallback(incident)
    return ChatMessage(
        text=cut(text, MAX_TEXT), blocks=tuple(blocks)[:MAX_BLOCKS], metadata=incident_metadata(incident)
    )


def incident_thread_line(text: str) -> str:
    """A timeline entry as posted in the card's thread (texts from the core may mention people)."""
    return escape_keeping_mentions(text)


def incidents_list(
    incidents: Sequence[Incident], now: datetime, permalinks: Mapping[IncidentId, str] | None = None
) -> ChatMessage:
    """The answer to `/rollback incidents`: open incidents, newest first, each with a link to its card."""
    current = sorted(
        (i for i in incidents if i.state is not IncidentState.RESOLVED), key=lambda i: i.opened_at, reverse=True
    )
    if not current:
        return ChatMessage(text="No open incidents.")
    links = permalinks or {}
    lines = [f"*Open incidents ({len(current)})*"]
    for incident in current[:MAX_INCIDENTS_LISTED]:
        name = f"*{escape(incident.target_label)}*"
        if incident.id in links:
            name = f"<{links[incident.id]}|{escape(incident.target_label)}>"
        elif incident.card is not None:
            name += f" (in <#{incident.card.channel}>)"
        state = "rollback requested" if incident.state is IncidentState.ROLLING_BACK else "open"
        lines.append(
            f"• {name}: {escape(incident.signal.reason)} on revision {escape(incident.revision)}, "
            f"{state} for {format_elapsed(now - incident.opened_at)} · `{incident.id}`"
        )
    if len(current) > MAX_INCIDENTS_LISTED:
        lines.append(f"…and {len(current) - MAX_INCIDENTS_LISTED} more")
    text = "\n".join(lines)
    return ChatMessage(text=cut(text, MAX_TEXT), blocks=(section(text),))


def verification_line(verification: Verification) -> str:
    """The operation thread's last word on a successful rollback: "healthy for 2m" or "failing again: …"."""
    match verification.state:
        case VerificationState.HEALTHY:
            return f":large_green_circle: healthy for {format_duration(verification.elapsed)}"
        case VerificationState.FAILING if verification.signal is not None:
            signal = verification.signal
            return f":red_circle: failing again: {_reason_summary(signal)} since {format_time(signal.since)}"
        case VerificationState.FAILING:
            return (
                f":red_circle: failing again: still not healthy {format_duration(verification.elapsed)} "
                f"after the rollback ({escape(verification.summary)})"
            )
        case _:
            return f":hourglass_flowing_sand: verifying: {escape(verification.summary)}"


# --- pieces ----------------------------------------------------------------------------------------------------


def _headline(incident: Incident, now: datetime) -> str:
    target = f"*{escape(incident.target_label)}*"
    reason = escape(incident.signal.reason)
    if incident.state is IncidentState.RESOLVED:
        how = _RESOLUTION_TEXT[incident.resolution] if incident.resolution else "resolved"
        if incident.resolution is Resolution.ROLLED_BACK and incident.operation_id:
            how += f" by `{incident.operation_id}`"
        lasted = format_elapsed(incident.lasted) if incident.lasted is not None else "?"
        return f":large_green_circle: Resolved · {target} · {reason}: {how} · lasted {lasted}"
    since = f"since {format_time(incident.signal.since)} ({format_elapsed(now - incident.signal.since)})"
    if incident.state is IncidentState.ROLLING_BACK:
        return f":arrows_counterclockwise: Rollback requested · {target} · {reason} {since} · `{incident.operation_id}`"
    badge = ":warning: Stuck" if incident.signal.is_stuck else ":rotating_light: Failing"
    return f"{badge} · {target} · {reason} {since}"


def _facts(incident: Incident) -> list[str]:
    workload, signal = incident.workload, incident.signal
    where = f"`{escape(workload.display)}` · {workload.backend.value}"
    if workload.location:
        where += f" · {escape(workload.location)}"
    facts = [f"*Target:* {where}", f"*Failed revision:* {escape(signal.revision)}"]
    if signal.made_by_operation:
        facts[-1] += f" (made by rollbot's `{escape(signal.made_by_operation)}`)"
    change = _image_change(incident)
    if change:
        facts.append(f"*Images:* {change}")
    if incident.last_good is not None:
        facts.append(f"*Last good revision:* {incident.last_good.revision}")
    reporter = _reporter(incident)
    if reporter:
        facts.append(f"*Reported by:* {reporter}")
    if incident.reopened:
        facts.append(f"*Reopened* {incident.reopened}× (failing again within 30 minutes)")
    return facts


def _reporter(incident: Incident) -> str:
    """Who told rollbot (not its own watch), with the link to read more and the alerts still firing."""
    if incident.source is IncidentSource.WATCH:
        return (
            "alerts " + ", ".join(f"`{escape(name)}`" for name in incident.alerts_firing)
            if incident.alerts_firing
            else ""
        )
    words = "Alertmanager" if incident.source is IncidentSource.ALERTMANAGER else "the deploy pipeline"
    if incident.link:
        label = "pipeline run" if incident.source is IncidentSource.PIPELINE else "source"
        words += f" · <{incident.link}|{label}>"
    if incident.alerts_firing:
        words += " · firing: " + ", ".join(f"`{escape(name)}`" for name in incident.alerts_firing)
    return words


def _image_change(incident: Incident) -> str:
    failed = {image.container: image.image for image in incident.signal.images}
    good = {image.container: image.image for image in incident.last_good.images} if incident.last_good else {}
    changes = [
        f"{escape(container)} `{escape(good[container])}` → `{escape(image)}`"
        for container, image in failed.items()
        if container in good and good[container] != image
    ]
    if changes:
        return ", ".join(changes)
    if good:
        return ""  # same images as the last good revision: something else changed
    return ", ".join(f"{escape(container)} `{escape(image)}`" for container, image in failed.items())


def _reason_summary(signal: Signal) -> str:
    counts = ", ".join(f"{count.count} × {escape(count.reason)}" for count in signal.counts)
    return f"{escape(signal.reason)}" + (f" ({counts})" if counts else "")


def _why_text(signal: Signal) -> str:
    lines = []
    if signal.counts:
        lines.append(" · ".join(f"{count.count} × {escape(count.reason)}" for count in signal.counts))
    # One quoted line per distinct message: a multi-line stack trace must not turn into many lines on the card.
    lines.extend(f"> {escape(' '.join(message.split()))}" for message in signal.messages)
    return "\n".join(lines)


def _stuck_text(incident: Incident) -> str:
    # helm's upgrade and install check for a pending revision; its rollback does not (pkg/action/rollback.go),
    # so rolling back to the last good revision is the way out that needs no hand-editing of helm's records.
    workload, signal = incident.workload, incident.signal
    secret = f"sh.helm.release.v1.{workload.name}.v{signal.revision}"
    refusal = (
        f"helm refuses to upgrade this release while it is `{escape(signal.reason)}` "
        '("another operation (install/upgrade/rollback) is in progress"), but it still allows a rollback.'
    )
    if incident.last_good is not None:
        refusal += (
            " If no helm process is still working on it, roll back to revision "
            f"{incident.last_good.revision} with the button below."
        )
    return (
        f"{refusal} To upgrade instead, first delete the pending revision's record: "
        f"`kubectl delete secret {escape(secret)} -n {escape(workload.namespace)}`."
    )


def _group_text(incident: Incident) -> str:
    summary = "its summary card"
    if incident.group_card is not None:
        summary = f"<{archive_link(incident.group_card.channel, incident.group_card.ts)}|{summary}>"
    if incident.state is IncidentState.RESOLVED:
        return f":link: Part of mass failure `{escape(incident.group_id or '')}` ({summary})."
    return f":link: Part of mass failure `{escape(incident.group_id or '')}`: roll back from {summary}."


def _auto_blocks(incident: Incident) -> list[dict[str, Any]]:
    """The automatic rollback's state: the countdown with its Cancel button, or what became of it."""
    auto = incident.auto
    if auto is None or incident.state is IncidentState.RESOLVED:
        return []
    match auto.state:
        case AutoState.COUNTING if auto.due_at is not None:
            due = auto.due_at.astimezone(UTC).strftime("%H:%M:%S UTC")
            text = (
                f":hourglass_flowing_sand: Rolling back to revision {auto.to_revision} automatically at {due} "
                "unless cancelled"
            )
            if auto.approvals:
                text += f" (then it waits for {auto.approvals} approval{'s' if auto.approvals > 1 else ''})"
            button = {
                "type": "button",
                "action_id": AUTO_CANCEL_ACTION,
                "text": {"type": "plain_text", "text": "Cancel", "emoji": True},
                "value": incident.id,
            }
            return [
                section(text, block_id=AUTO_BLOCK),
                {"type": "actions", "block_id": f"{AUTO_BLOCK}_actions", "elements": [button]},
            ]
        case AutoState.CANCELLED:
            return [context(f":no_entry_sign: Automatic rollback cancelled by <@{auto.cancelled_by}>")]
        case AutoState.STARTED if incident.rollback_requested_by == POLICY_REQUESTER or (
            incident.operation_id is not None and incident.operation_id == auto.operation_id
        ):  # not once that rollback is over and the incident failed again (reopened)
            return [context(f":robot_face: Automatic rollback started as `{auto.operation_id}`")]
        case AutoState.SKIPPED:
            return [context(f":pause_button: automatic rollback skipped: {escape_keeping_mentions(auto.why or '')}")]
    return []


def _rollback_button(incident: Incident, revision: int) -> dict[str, Any]:
    return {
        "type": "actions",
        "block_id": INCIDENT_ACTIONS_BLOCK,
        "elements": [
            {
                "type": "button",
                "action_id": INCIDENT_ROLLBACK_ACTION,
                "text": {"type": "plain_text", "text": f"Roll back to revision {revision}", "emoji": True},
                "style": "danger",
                "value": incident.id,
            }
        ],
    }


def _fallback(incident: Incident) -> str:
    # The fallback is the notification text: mrkdwn too, so backend words are escaped here as well.
    label, reason, revision = escape(incident.target_label), escape(incident.signal.reason), escape(incident.revision)
    if incident.state is IncidentState.RESOLVED:
        how = _RESOLUTION_TEXT[incident.resolution] if incident.resolution else "resolved"
        return f"Resolved: {label} ({reason}): {how}"
    return f"{label} is failing: {reason} on revision {revision} ({incident.id})"
