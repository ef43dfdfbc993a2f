"""Every piece of chat text and Block Kit layout the bot produces, as pure functions of core data.

Nothing here talks to Slack; adapters send what these functions return. Keeping all wording in one package is
what lets us keep messages exact, short and consistent (bolt keeps its error texts the same way).

Two rules hold for everything built here. Strings that come from users or backends (reasons, change causes,
image names, error texts) are mrkdwn-escaped, so `<!channel>` in a change cause never pings anyone. And the
Block Kit limits of Slack (slack.md §6) are respected by construction: at most 50 blocks, section text cut at
3000 characters, fallback text cut at 4000 (the ceiling `chat.update` enforces). Every message about an
operation carries the `rollbot_operation` metadata, so workflows can follow the operation without parsing text.

The package is split by audience: `blocks` (the model and the pieces), `operation` (the request message and its
thread), `replies` (answers to commands), `incidents` (the incident card, its thread and the incidents list).
Everything is re-exported here, so callers say `messages.request_message`.
"""

from __future__ import annotations

from bot.core.messages.batch import batch_busy, batch_progress_message, batch_request_posted
from bot.core.messages.blocks import (
    APPROVE_ACTION,
    APPROVE_EMOJI,
    DECISION_BLOCK,
    MAX_CHANGES_SHOWN,
    MAX_HISTORY_ROWS,
    REJECT_ACTION,
    REJECT_EMOJI,
    ChatMessage,
    context,
    cut,
    escape,
    escape_keeping_mentions,
    format_elapsed,
    format_time,
    group_mention,
    mention,
    message,
    operation_metadata,
    plain,
    section,
    target_coordinates,
)
from bot.core.messages.incidents import (
    INCIDENT_ACTIONS_BLOCK,
    INCIDENT_ROLLBACK_ACTION,
    MAX_INCIDENTS_LISTED,
    incident_card,
    incident_metadata,
    incident_thread_line,
    incidents_list,
    verification_line,
)
from bot.core.messages.operation import (
    approvers_text,
    changes_text,
    handover_line,
    internal_error_text,
    progress_message,
    request_message,
    rollout_event_line,
    takeover_line,
    thread_line,
    unhealthy_line,
    unhealthy_text,
)
from bot.core.messages.replies import (
    already_at_revision,
    cancel_done,
    command_received,
    help_message,
    history_message,
    lock_line,
    not_allowed,
    nothing_to_cancel,
    operation_not_found,
    request_posted,
    revision_not_found,
    status_message,
    target_busy,
    try_again,
    usage_error,
    usage_text,
    user_error,
    vote_refused_busy,
)
from bot.core.slack_limits import MAX_BLOCKS, MAX_SECTION_TEXT, MAX_TEXT

__all__ = [
    "APPROVE_ACTION",
    "APPROVE_EMOJI",
    "DECISION_BLOCK",
    "INCIDENT_ACTIONS_BLOCK",
    "INCIDENT_ROLLBACK_ACTION",
    "MAX_BLOCKS",
    "MAX_CHANGES_SHOWN",
    "MAX_HISTORY_ROWS",
    "MAX_INCIDENTS_LISTED",
    "MAX_SECTION_TEXT",
    "MAX_TEXT",
    "REJECT_ACTION",
    "REJECT_EMOJI",
    "ChatMessage",
    "already_at_revision",
    "approvers_text",
    "batch_busy",
    "batch_progress_message",
    "batch_request_posted",
    "cancel_done",
    "changes_text",
    "command_received",
    "context",
    "cut",
    "escape",
    "escape_keeping_mentions",
    "format_elapsed",
    "format_time",
    "group_mention",
    "handover_line",
    "help_message",
    "history_message",
    "incident_card",
    "incident_metadata",
    "incident_thread_line",
    "incidents_list",
    "internal_error_text",
    "lock_line",
    "mention",
    "message",
    "not_allowed",
    "nothing_to_cancel",
    "operation_metadata",
    "operation_not_found",
    "plain",
    "progress_message",
    "request_message",
    "request_posted",
    "revision_not_found",
    "rollout_event_line",
    "section",
    "status_message",
    "takeover_line",
    "target_busy",
    "target_coordinates",
    "thread_line",
    "try_again",
    "unhealthy_line",
    "unhealthy_text",
    "usage_error",
    "usage_text",
    "user_error",
    "verification_line",
    "vote_refused_busy",
]
