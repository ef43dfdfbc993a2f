"""Approval policy: which ✅ / ❌ / button presses count, and what people are told when theirs does not."""

from __future__ import annotations

import pytest

from bot.core.approvals import (
    APPROVE_ACTION_ID,
    REJECT_ACTION_ID,
    Decision,
    Verdict,
    action_of,
    judge_button,
    judge_reaction,
    normalize_emoji,
    vote_of,
)
from bot.core.catalog import SlackUserId
from bot.core.messages.decisions import approvers_mentions as approvers_text
from bot.core.operations import Operation
from tests.core.factories import ALICE, BOB, BOT, CAROL, MALLORY, REQUESTER, SRE_MEMBERS, operation, policy

NOT_AN_APPROVER = "You're not an approver for `workshop`. Approvers: <@U0AAA>, <@U0BBB>, <!subteam^S0SRE>."
FOUR_EYES = "You requested this rollback; someone else must approve it (four-eyes)."


def judge(
    user: SlackUserId,
    emoji: str,
    *,
    op: Operation | None = None,
    added: bool = True,
    is_bot: bool = False,
    members: frozenset[SlackUserId] = SRE_MEMBERS,
) -> Verdict:
    return judge_reaction(op or operation(), user, emoji, added=added, is_bot=is_bot, group_members=members)


@pytest.mark.parametrize(
    ("user", "emoji", "expected"),
    [
        (ALICE, "white_check_mark", Verdict(Decision.APPROVE)),
        (ALICE, "white_check_mark::skin-tone-3", Verdict(Decision.APPROVE)),
        (BOB, "x", Verdict(Decision.REJECT)),
        (CAROL, "white_check_mark", Verdict(Decision.APPROVE)),
        (CAROL, "x", Verdict(Decision.REJECT)),
        (ALICE, "heavy_check_mark", Verdict(Decision.IGNORE)),
        (ALICE, "eyes", Verdict(Decision.IGNORE)),
        (MALLORY, "tada", Verdict(Decision.IGNORE)),
        (MALLORY, "white_check_mark", Verdict(Decision.REFUSE, NOT_AN_APPROVER)),
        (MALLORY, "x", Verdict(Decision.REFUSE, NOT_AN_APPROVER)),
        (REQUESTER, "white_check_mark", Verdict(Decision.REFUSE, FOUR_EYES)),
        (REQUESTER, "x", Verdict(Decision.CANCEL)),
    ],
    ids=[
        "approver-approves",
        "skin-tone-is-the-same-vote",
        "approver-rejects",
        "group-member-approves",
        "group-member-rejects",
        "only-white-check-mark-approves",
        "other-emoji-ignored",
        "other-emoji-from-anyone-ignored",
        "non-approver-told-why",
        "non-approver-reject-told-why",
        "requester-cannot-approve-own-rollback",
        "requester-x-cancels",
    ],
)
def test_a_reaction_is_judged_against_the_policy(user: SlackUserId, emoji: str, expected: Verdict) -> None:
    assert judge(user, emoji) == expected


def test_a_group_member_counts_only_when_the_flow_resolved_the_group() -> None:
    assert judge(CAROL, "white_check_mark", members=frozenset()) == Verdict(Decision.REFUSE, NOT_AN_APPROVER)


@pytest.mark.parametrize(
    ("emoji", "reason"), [("white_check_mark", "Bots can't approve rollbacks."), ("x", "Bots can't reject rollbacks.")]
)
def test_bots_never_vote(emoji: str, reason: str) -> None:
    assert judge(BOT, emoji, is_bot=True) == Verdict(Decision.REFUSE, reason)
    assert judge(ALICE, emoji, is_bot=True) == Verdict(Decision.REFUSE, reason)


def test_self_approval_counts_when_the_policy_allows_it_and_the_requester_is_an_approver() -> None:
    lenient = operation(approval_policy=policy(allow_self_approval=True, approvers=(REQUESTER, ALICE)))
    assert judge(REQUESTER, "white_check_mark", op=lenient) == Verdict(Decision.APPROVE)


def test_self_approval_still_needs_the_requester_to_be_an_approver() -> None:
    lenient = operation(approval_policy=policy(allow_self_approval=True))
    assert judge(REQUESTER, "white_check_mark", op=lenient) == Verdict(Decision.REFUSE, NOT_AN_APPROVER)


@pytest.mark.parametrize(
    ("user", "emoji", "approved_via", "expected"),
    [
        (ALICE, "white_check_mark", "reaction", Decision.WITHDRAW),
        (ALICE, "white_check_mark::skin-tone-2", "reaction", Decision.WITHDRAW),
        (BOB, "white_check_mark", "reaction", Decision.IGNORE),
        (ALICE, "white_check_mark", "button", Decision.IGNORE),
        (ALICE, "x", "reaction", Decision.IGNORE),
        (ALICE, "eyes", "reaction", Decision.IGNORE),
    ],
    ids=[
        "removing-a-counted-check-withdraws",
        "with-skin-tone",
        "removing-an-uncounted-check-is-silent",
        "a-button-approval-is-not-withdrawn-by-a-reaction",
        "removing-x-changes-nothing",
        "removing-other-emoji-changes-nothing",
    ],
)
def test_a_removed_reaction_withdraws_only_a_counted_reaction_approval(
    user: SlackUserId, emoji: str, approved_via: str, expected: Decision
) -> None:
    op = operation(approvers=(ALICE,), via=approved_via)
    assert judge(user, emoji, op=op, added=False).decision is expected


@pytest.mark.parametrize(
    ("user", "action", "expected"),
    [
        (ALICE, "approve", Verdict(Decision.APPROVE)),
        (ALICE, "reject", Verdict(Decision.REJECT)),
        (REQUESTER, "approve", Verdict(Decision.REFUSE, FOUR_EYES)),
        (REQUESTER, "reject", Verdict(Decision.CANCEL)),
        (MALLORY, "approve", Verdict(Decision.REFUSE, NOT_AN_APPROVER)),
    ],
)
def test_buttons_are_judged_like_reactions(user: SlackUserId, action: str, expected: Verdict) -> None:
    assert judge_button(operation(), user, action, group_members=SRE_MEMBERS) == expected  # type: ignore[arg-type]


def test_a_bot_pressing_a_button_is_refused() -> None:
    verdict = judge_button(operation(), BOT, "approve", is_bot=True, group_members=frozenset())
    assert verdict == Verdict(Decision.REFUSE, "Bots can't approve rollbacks.")


def test_action_ids_and_emoji_map_to_votes() -> None:
    assert action_of(APPROVE_ACTION_ID) == "approve"
    assert action_of(REJECT_ACTION_ID) == "reject"
    assert action_of("rollbot_preview") is None
    assert vote_of("white_check_mark::skin-tone-6") == "approve"
    assert vote_of("x::skin-tone-2") == "reject"
    assert vote_of("x_x") is None
    assert normalize_emoji("thumbsup::skin-tone-4") == "thumbsup"
    assert normalize_emoji("white_check_mark") == "white_check_mark"


def test_only_verdicts_that_change_something_count() -> None:
    assert Verdict(Decision.APPROVE).counts
    assert Verdict(Decision.CANCEL).counts
    assert not Verdict(Decision.IGNORE).counts
    assert not Verdict(Decision.REFUSE, "no").counts


def test_approvers_are_listed_as_slack_mentions() -> None:
    assert approvers_text(operation()) == "<@U0AAA>, <@U0BBB>, <!subteam^S0SRE>"
    assert approvers_text(operation(approval_policy=policy(groups=()))) == "<@U0AAA>, <@U0BBB>"
    assert approvers_text(operation(approval_policy=policy(approvers=(), groups=()))) == "nobody is configured"
