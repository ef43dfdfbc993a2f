"""Approval policy: whether a reaction or a button press on a request counts, and if not, why.

The rules, in the order they are applied:

- Only ✅ (`white_check_mark`, any skin tone) and ❌ (`x`) mean anything; every other emoji is ignored silently.
- Bots never approve or reject.
- The requester's own ✅ never counts (four-eyes), unless the policy sets `allow_self_approval` and the requester
  is an approver too. The requester's own ❌ *cancels* the request: people must be able to take back a rollback
  they asked for, and they need no approver rights for that.
- Anyone else counts only if listed in `approvers` or a member of one of `approver_groups` (the flow resolves
  group members with `usergroups.users.list` and passes them in; this module never asks Slack).
- Removing a ✅ that counted withdraws it; removing anything else changes nothing.
- The Approve / Reject buttons (`rollbot_approve` / `rollbot_reject`, value = operation id) are the same as adding
  ✅ / ❌.

This module judges one gesture against the policy. It deliberately knows nothing about phases or time: whether a
counted approval still matters (expired? already executing?) is `lifecycle.advance`'s question.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Literal

from bot.core.catalog import SlackUserId
from bot.core.messages import decisions as words
from bot.core.operations import Operation

APPROVE_EMOJI: Final = "white_check_mark"
REJECT_EMOJI: Final = "x"
APPROVE_ACTION_ID: Final = "rollbot_approve"
REJECT_ACTION_ID: Final = "rollbot_reject"
# Slack reports a toned reaction as `name::skin-tone-N`; the tone is a person's look, not a different vote.
_SKIN_TONE = re.compile(r"::skin-tone-[2-6]$")

ButtonAction = Literal["approve", "reject"]
_ACTIONS: Final[Mapping[str, ButtonAction]] = {APPROVE_ACTION_ID: "approve", REJECT_ACTION_ID: "reject"}


class Decision(StrEnum):
    IGNORE = "ignore"  # not a vote at all: no state change, no reply
    REFUSE = "refuse"  # a vote that does not count: no state change, tell the user `reason`
    APPROVE = "approve"
    WITHDRAW = "withdraw"  # a counted ✅ was removed
    REJECT = "reject"
    CANCEL = "cancel"  # the requester's own ❌


@dataclass(frozen=True)
class Verdict:
    decision: Decision
    # For REFUSE: the ephemeral reply explaining why the vote did not count.
    reason: str | None = None

    @property
    def counts(self) -> bool:
        return self.decision not in (Decision.IGNORE, Decision.REFUSE)


IGNORED: Final = Verdict(Decision.IGNORE)


def normalize_emoji(name: str) -> str:
    """`white_check_mark::skin-tone-3` → `white_check_mark`."""
    return _SKIN_TONE.sub("", name)


def vote_of(emoji: str) -> ButtonAction | None:
    """The vote an emoji casts, if any."""
    name = normalize_emoji(emoji)
    if name == APPROVE_EMOJI:
        return "approve"
    if name == REJECT_EMOJI:
        return "reject"
    return None


def action_of(action_id: str) -> ButtonAction | None:
    """The vote a Block Kit button casts, by its action id."""
    return _ACTIONS.get(action_id)


def is_eligible(operation: Operation, user: SlackUserId, group_members: frozenset[SlackUserId]) -> bool:
    """Listed as an approver of this operation's target, directly or through one of its groups."""
    return user in operation.target.policy.approvers or user in group_members


def judge_reaction(
    operation: Operation,
    user: SlackUserId,
    emoji: str,
    *,
    added: bool,
    is_bot: bool,
    group_members: frozenset[SlackUserId],
) -> Verdict:
    """Judge a reaction added to (or removed from) the request message."""
    vote = vote_of(emoji)
    if vote is None:
        return IGNORED
    if not added:
        has_reacted = any(a.user == user and a.via == "reaction" for a in operation.approvals)
        return Verdict(Decision.WITHDRAW) if vote == "approve" and has_reacted else IGNORED
    return judge_vote(operation, user, vote, is_bot=is_bot, group_members=group_members)


def judge_button(
    operation: Operation,
    user: SlackUserId,
    action: ButtonAction,
    *,
    is_bot: bool = False,
    group_members: frozenset[SlackUserId],
) -> Verdict:
    """Judge a click on Approve / Reject: the same rules as adding ✅ / ❌."""
    return judge_vote(operation, user, action, is_bot=is_bot, group_members=group_members)


def judge_vote(
    operation: Operation,
    user: SlackUserId,
    vote: ButtonAction,
    *,
    is_bot: bool,
    group_members: frozenset[SlackUserId],
) -> Verdict:
    if is_bot:
        return Verdict(Decision.REFUSE, words.bots_cannot_vote(vote))
    policy = operation.target.policy
    eligible = is_eligible(operation, user, group_members)
    if user == operation.requester:
        if vote == "reject":
            return Verdict(Decision.CANCEL)
        if not policy.allow_self_approval:
            return Verdict(Decision.REFUSE, words.four_eyes())
    if not eligible:
        return Verdict(Decision.REFUSE, words.not_an_approver(operation))
    return Verdict(Decision.APPROVE if vote == "approve" else Decision.REJECT)
