"""Recounting votes from the message itself: only what the operation has not recorded, and only what counts."""

from __future__ import annotations

from bot.core.catalog import SlackUserId
from bot.core.lifecycle import ReactionAdded, ReactionRemoved, missed_votes
from bot.core.operations import Approval, Phase
from tests.fakes.operations import APPROVER, REQUESTER, advanced, make_operation, make_target

CAROL = SlackUserId("U0CCC")
OUTSIDER = SlackUserId("U0EVE")
BOT = SlackUserId("UBOT")


def test_a_check_mark_from_an_approver_not_yet_counted_is_missed() -> None:
    operation = make_operation()
    assert missed_votes(operation, {"white_check_mark": [APPROVER]}) == [
        ReactionAdded(user=APPROVER, emoji="white_check_mark")
    ]


def test_skin_tones_count_and_already_counted_votes_do_not() -> None:
    operation = advanced(make_operation(), approvals=(Approval(user=APPROVER, at=make_operation().created_at),))
    assert missed_votes(operation, {"white_check_mark::skin-tone-3": [APPROVER]}) == []


def test_the_bot_outsiders_and_the_requester_are_never_replayed() -> None:
    operation = make_operation()
    reactions = {"white_check_mark": [BOT, OUTSIDER, REQUESTER], "x": [BOT, OUTSIDER], "eyes": [APPROVER]}
    assert missed_votes(operation, reactions) == []


def test_the_requester_counts_when_self_approval_is_allowed() -> None:
    operation = make_operation(target=make_target(allow_self_approval=True))
    assert missed_votes(operation, {"white_check_mark": [REQUESTER]}) == [
        ReactionAdded(user=REQUESTER, emoji="white_check_mark")
    ]


def test_rejections_come_first_and_the_requesters_cross_is_replayed_as_a_cancel() -> None:
    operation = make_operation(target=make_target(approvers=(REQUESTER, APPROVER, CAROL)))
    assert missed_votes(operation, {"white_check_mark": [APPROVER], "x": [CAROL, REQUESTER]}) == [
        ReactionAdded(user=REQUESTER, emoji="x"),
        ReactionAdded(user=CAROL, emoji="x"),
        ReactionAdded(user=APPROVER, emoji="white_check_mark"),
    ]


def test_a_reaction_approval_whose_check_mark_is_gone_was_withdrawn_but_a_button_approval_stays() -> None:
    at = make_operation().created_at
    operation = advanced(
        make_operation(target=make_target(required=2, approvers=(REQUESTER, APPROVER, CAROL))),
        approvals=(Approval(user=APPROVER, at=at, via="reaction"), Approval(user=CAROL, at=at, via="button")),
    )
    assert missed_votes(operation, {}) == [ReactionRemoved(user=APPROVER, emoji="white_check_mark")]


def test_group_members_are_eligible() -> None:
    operation = make_operation(target=make_target(approvers=(), approver_groups=("S0SRE",)))
    member = SlackUserId("U0MEMBER")
    assert missed_votes(operation, {"white_check_mark": [member]}, group_members=frozenset({member})) == [
        ReactionAdded(user=member, emoji="white_check_mark")
    ]


def test_closed_operations_have_nothing_to_recount() -> None:
    for phase in (Phase.ROLLING_BACK, Phase.SUCCEEDED, Phase.EXPIRED, Phase.PREVIEW):
        assert missed_votes(advanced(make_operation(), phase=phase), {"white_check_mark": [APPROVER]}) == []
