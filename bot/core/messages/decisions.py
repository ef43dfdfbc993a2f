"""The words of the lifecycle and the approval policy: thread lines for what was decided, and the answers a
person gets when their vote or cancel does not count. The lifecycle picks which; the wording lives here."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from bot.core.catalog import SlackUserId
from bot.core.commands import SLASH_COMMAND
from bot.core.operations import Operation, Phase
from bot.core.rollouts import RevisionNumber

# --- thread lines ---------------------------------------------------------------------------------------------


def approved_line(user: SlackUserId, count: int, required: int) -> str:
    return f"✅ approved by <@{user}> ({count}/{required})"


def withdrawn_line(user: SlackUserId, count: int, required: int, *, waiting_again: bool) -> str:
    line = f"↩️ <@{user}> withdrew their approval ({count}/{required})"
    return line + " — waiting for approval again" if waiting_again else line


def rejected_line(user: SlackUserId) -> str:
    return f"❌ rejected by <@{user}>"


def cancelled_line(user: SlackUserId) -> str:
    return f"🚫 cancelled by <@{user}>"


def expired_line(approvals: int, required: int, window: str) -> str:
    if approvals:
        return f"⌛ expired — only {approvals}/{required} approvals within {window}"
    return f"⌛ expired — nobody approved within {window}"


def rolling_back_line(from_revision: RevisionNumber, to_revision: RevisionNumber) -> str:
    return f"⏪ rolling back: revision {from_revision} → {to_revision}"


def resuming_sync_line(reconciler: str) -> str:
    return f"▶️ resuming the sync of {reconciler}: putting back the settings rollbot recorded"


def finished_line(succeeded: bool, outcome: str) -> str:
    return f"{'✅' if succeeded else '❌'} {outcome}"


def batch_rolling_back_line(members: Sequence[tuple[str, RevisionNumber, RevisionNumber]]) -> str:
    arrows = ", ".join(f"{name} {before} → {after}" for name, before, after in members)
    return f"⏪ rolling back {len(members)} targets: {arrows}"


def member_finished_line(name: str, succeeded: bool, outcome: str) -> str:
    """The final line of one member of a batch."""
    return f"{'✅' if succeeded else '❌'} {name}: {outcome}"


# --- outcomes (stored on the operation and shown at its end) -----------------------------------------------------


def rolled_back_outcome(to_revision: RevisionNumber, summary: str) -> str:
    return f"rolled back to revision {to_revision} — {summary}"


def failed_outcome(reason: str) -> str:
    return f"rollback failed: {reason}"


def not_run_outcome(reason: str) -> str:
    return f"not run: {reason}"


def batch_outcome(succeeded: Sequence[str], failed: Sequence[str]) -> str:
    """The truth about a batch in one line: which targets rolled back and which did not."""
    total = len(succeeded) + len(failed)
    if not failed:
        return f"all {total} targets rolled back"
    if not succeeded:
        return f"none of the {total} targets rolled back ({', '.join(failed)})"
    return f"{len(succeeded)} of {total} rolled back ({', '.join(succeeded)}); not rolled back: {', '.join(failed)}"


# --- answers to one person ---------------------------------------------------------------------------------------


def bots_cannot_vote(vote: str) -> str:
    return f"Bots can't {vote} rollbacks."


def four_eyes() -> str:
    return "You requested this rollback; someone else must approve it (four-eyes)."


def not_an_approver(operation: Operation) -> str:
    return f"You're not an approver for `{operation.target.name}`. Approvers: {approvers_mentions(operation)}."


def approvers_mentions(operation: Operation) -> str:
    """`<@U0AAA>, <!subteam^S0SRE>`: how Slack renders people and user groups."""
    policy = operation.target.policy
    mentions = [f"<@{user}>" for user in policy.approvers]
    mentions += [f"<!subteam^{group}>" for group in policy.approver_groups]
    return ", ".join(mentions) if mentions else "nobody is configured"


def only_requester_or_approver_cancels(operation: Operation) -> str:
    return f"Only <@{operation.requester}> or an approver can cancel this request."


def too_late_approved() -> str:
    return "Too late: this rollback is already approved and starting."


def too_late_running(started: datetime, *, withdrawing: bool) -> str:
    if withdrawing:
        return f"Too late: execution started at {clock(started)}; removing ✅ doesn't stop it."
    return f"Too late: execution started at {clock(started)}; it can't be stopped from Slack."


def closed(operation: Operation) -> str:
    """Why a vote on a finished request changes nothing."""
    again = f"run {SLASH_COMMAND} again"
    by = f" by <@{operation.decided_by}>" if operation.decided_by else ""
    match operation.phase:
        case Phase.PREVIEW:
            return f"This is a dry-run preview; nothing will run. To request it, {again} without --dry-run."
        case Phase.EXPIRED:
            return f"This request expired at {clock(operation.expires_at)}; {again}."
        case Phase.REJECTED:
            return f"This request was rejected{by}; {again} if it's still needed."
        case Phase.CANCELLED:
            return f"This request was cancelled{by}; {again} if it's still needed."
        case _:
            return f"This rollback is over: {operation.outcome or operation.phase.value}."


def clock(moment: datetime) -> str:
    """`14:52 UTC`: people in an incident channel read times, not dates."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%H:%M UTC")
