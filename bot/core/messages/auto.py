"""Messages about the automatic-rollback policy: `/rollback auto status` and `/rollback auto resume <context>`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC
from typing import Final

from bot.core.auto_policy import AutoLedger
from bot.core.catalog_auto import AutoRollbackLimits
from bot.core.incidents import Incident
from bot.core.messages.blocks import ChatMessage, cut, escape, format_time, section
from bot.core.slack_limits import MAX_TEXT

# The status lists this many countdowns, soonest first; more are counted, not listed.
MAX_COUNTDOWNS_LISTED: Final = 10


def auto_status(
    limits: AutoRollbackLimits,
    ledgers: Sequence[AutoLedger],
    countdowns: Sequence[Incident],
    opted_in: Sequence[str],
    command: str = "/rollback",
) -> ChatMessage:
    """Limits, breakers and the next due countdowns."""
    targets = (
        ", ".join(f"`{escape(name)}`" for name in opted_in) if opted_in else "none (set `auto_rollback` on a target)"
    )
    lines = [
        "*Automatic rollback*",
        f"*Limits:* {limits.per_target} per target · {limits.per_context} per context trips its breaker",
        f"*Targets that opted in:* {targets}",
    ]
    tripped = [ledger for ledger in ledgers if ledger.is_tripped]
    if tripped:
        lines.append("*Breakers tripped:*")
        lines.extend(
            f"• {escape(ledger.context)} since {format_time(ledger.tripped_at)} ({escape(ledger.tripped_why or '')}) "
            f"— `{command} auto resume {escape(ledger.context)}`"
            for ledger in tripped
            if ledger.tripped_at is not None
        )
    else:
        lines.append("*Breakers:* none tripped")
    due = sorted(
        ((incident.auto.due_at, incident) for incident in countdowns if incident.auto and incident.auto.due_at),
        key=lambda pair: pair[0],
    )
    if due:
        lines.append("*Next countdowns:*")
        for at, incident in due[:MAX_COUNTDOWNS_LISTED]:
            revision = incident.auto.to_revision if incident.auto else "?"
            lines.append(
                f"• {escape(incident.target_label)} → revision {revision} at "
                f"{at.astimezone(UTC).strftime('%H:%M:%S UTC')} · `{incident.id}`"
            )
        if len(due) > MAX_COUNTDOWNS_LISTED:
            lines.append(f"…and {len(due) - MAX_COUNTDOWNS_LISTED} more")
    else:
        lines.append("*Next countdowns:* none")
    text = "\n".join(lines)
    return ChatMessage(text=cut(text, MAX_TEXT), blocks=(section(cut(text, 3000)),))


def breaker_resumed(context: str, *, was_tripped: bool) -> ChatMessage:
    if was_tripped:
        text = (
            f":white_check_mark: Automatic rollback resumed in {escape(context)}: "
            "its breaker is closed and its count starts from zero."
        )
    else:
        text = f":information_source: The breaker of {escape(context)} was not tripped; its count starts from zero."
    return ChatMessage(text=text)


def not_allowed_to_resume(context: str) -> ChatMessage:
    return ChatMessage(
        text=f":no_entry: Only approvers of a target with automatic rollback in {escape(context)} can resume it there."
    )


def automatic_rollback_off() -> ChatMessage:
    return ChatMessage(text="Automatic rollback needs failure detection, which is off in this bot.")
