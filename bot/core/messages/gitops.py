"""What rollbot says about Argo CD and Flux reconcilers: refusals, pauses, reminders and resumes."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Final

from pydantic import JsonValue

from bot.core.catalog import Target
from bot.core.gitops import Reconciler, ReconcilerKind, ReconcilerRef, SyncPause, pause_age
from bot.core.messages.blocks import ChatMessage, escape, format_time, plain

_PAUSED_FIELD: Final = {
    ReconcilerKind.ARGOCD: "spec.syncPolicy.automated.enabled: false",
    ReconcilerKind.FLUX_KUSTOMIZATION: "spec.suspend: true",
    ReconcilerKind.FLUX_HELMRELEASE: "spec.suspend: true",
}


def _capital(line: str) -> str:
    return line[:1].upper() + line[1:]


def refused(target: Target, line: str, command: str) -> ChatMessage:
    """`gitops: refuse` (the default) and a reconciler that would revert the rollback."""
    name = escape(target.name)
    return plain(
        f":no_entry: *{name}* is {escape(line)}.\n"
        f"Not requested. Fix it in Git, or pause the sync with the rollback: `{command} {name} --suspend-sync` "
        f"(`{command} resume-sync {name}` turns it back on)."
    )


def batch_refused(member: Target, line: str, command: str) -> ChatMessage:
    name = escape(member.name)
    return plain(
        f":no_entry: *{name}* is {escape(line)}.\n"
        f"A batch pauses no reconciler: roll *{name}* back on its own (`{command} {name} --suspend-sync`), "
        "and the others in a batch without it."
    )


def paused_line(ref: ReconcilerRef, target: str, command: str) -> str:
    """The thread line once the reconciler is paused, before the rollback starts."""
    return (
        f":double_vertical_bar: paused {escape(ref.display)} (`{_PAUSED_FIELD[ref.kind]}`) so it does not undo "
        f"this rollback. Git still deploys the bad version: fix it in Git, then `{command} resume-sync "
        f"{escape(target)}`."
    )


def reminder_line(pause: SyncPause, now: datetime, command: str) -> str:
    return (
        f":alarm_clock: {escape(pause.ref.display)} has been paused for {pause_age(pause, now)} (since "
        f"{format_time(pause.paused_at)}). Fix Git, then `{command} resume-sync {escape(pause.target)}`."
    )


def pause_status_line(pause: SyncPause, now: datetime, command: str) -> str:
    return (
        f":double_vertical_bar: {escape(pause.ref.display)} paused by rollbot for {pause_age(pause, now)} "
        f"(`{escape(pause.operation_id)}`): fix Git, then `{command} resume-sync {escape(pause.target)}`"
    )


def reconciler_status_line(line: str) -> str:
    return f":arrows_counterclockwise: {_capital(escape(line))}"


def nothing_to_resume(target: Target, reconciler: Reconciler | None) -> ChatMessage:
    name = escape(target.name)
    if reconciler is None:
        return plain(f":information_source: No Argo CD or Flux reconciler manages *{name}*: nothing to resume.")
    return plain(
        f":information_source: rollbot has not paused {escape(reconciler.ref.display)}, so it has nothing to "
        f"restore for *{name}*."
    )


def resume_note(pause: SyncPause) -> str:
    return f"restores what rollbot recorded when `{pause.operation_id}` paused it"


def settings_text(value: JsonValue) -> str:
    return "(absent)" if value is None else json.dumps(value, sort_keys=True)
