"""Mass failures (issue #13 item 5): when a burst of incidents becomes one group, and what the group does."""

from __future__ import annotations

from datetime import timedelta

from bot.core.catalog import SlackUserId
from bot.core.detection import Signal
from bot.core.effects import TellUser
from bot.core.incident_groups import (
    AlreadyGrouped,
    FormGroup,
    GroupCardPosted,
    GroupCardRefreshed,
    GroupId,
    GroupOperationFinished,
    GroupRollbackClicked,
    GroupRollbackNotStarted,
    GroupRollbackStarted,
    GroupState,
    IncidentGroup,
    Joined,
    JoinGroup,
    MembersSeen,
    PostGroupCard,
    RequestGroupRollback,
    StandAlone,
    UpdateGroupCard,
    advance,
    form_group,
    place_incident,
    shared_causes,
    should_refresh,
)
from bot.core.incidents import (
    Detected,
    Incident,
    IncidentId,
    IncidentState,
    JoinedGroup,
    PostInIncidentThread,
    Resolution,
    RollbackClicked,
    WorkloadRef,
)
from bot.core.incidents import advance as advance_incident
from bot.core.operations import MessageRef, OperationId, Phase
from bot.core.rollouts import ContainerImage
from tests.core.factories import ALICE, BOB, T0
from tests.core.incident_factories import CARD_CHANNEL, WEB, incident, signal

SUMMARY = MessageRef(channel=CARD_CHANNEL, ts="1700000000.000900")
OP = OperationId("op-9")
GROUP = GroupId("grp-1")


def member(n: int, *, seconds: float = 0, image: str = "registry.example/app-{n}:v10", **fields: object) -> Incident:
    """The n-th failing Deployment, opened `seconds` after T0."""
    workload = WorkloadRef(**{**WEB.model_dump(), "name": f"app-{n}"})
    sig: Signal = signal(images=(ContainerImage(container="web", image=image.format(n=n)),))
    opened = incident(target=f"app-{n}", workload=workload, sig=sig, opened_at=T0 + timedelta(seconds=seconds))
    return opened.model_copy(update={"id": IncidentId(f"inc-{n}"), **fields})


def six() -> IncidentGroup:
    incidents = [member(n, seconds=n) for n in range(1, 7)]
    return form_group(GROUP, incidents, T0 + timedelta(seconds=6)).group


def at(seconds: float) -> object:
    return T0 + timedelta(seconds=seconds)


# --- placement -------------------------------------------------------------------------------------------------


def test_five_incidents_in_two_minutes_stand_alone_and_the_sixth_forms_a_group_of_all_six() -> None:
    five = [member(n, seconds=n * 10) for n in range(1, 6)]
    assert place_incident(five[-1], five, None, at(50)) == StandAlone()
    sixth = member(6, seconds=60)
    placement = place_incident(sixth, [*five, sixth], None, at(60))
    assert isinstance(placement, FormGroup)
    assert [i.id for i in placement.incidents] == ["inc-1", "inc-2", "inc-3", "inc-4", "inc-5", "inc-6"]


def test_incidents_older_than_two_minutes_resolved_ones_and_other_channels_do_not_count() -> None:
    old = member(1, seconds=0)
    resolved = member(2, seconds=100, state=IncidentState.RESOLVED)
    elsewhere = member(3, seconds=100, channel="C0OTHER")
    recent = [member(n, seconds=100) for n in range(4, 8)]  # four
    sixth = member(8, seconds=121)
    assert place_incident(sixth, [old, resolved, elsewhere, *recent, sixth], None, at(121)) == StandAlone()


def test_an_incident_opening_while_the_group_accepts_joins_it_and_later_ones_stand_alone() -> None:
    group = six()
    seventh = member(7, seconds=100)
    assert place_incident(seventh, [seventh], group, at(100)) == JoinGroup(group)
    late = member(8, seconds=6 + 121)
    assert place_incident(late, [late], group, at(6 + 121)) == StandAlone()


def test_a_group_whose_rollback_was_asked_for_takes_no_new_members() -> None:
    clicked = advance(six(), GroupRollbackClicked(ALICE), at(10)).group
    seventh = member(7, seconds=11)
    assert place_incident(seventh, [seventh], clicked, at(11)) == StandAlone()


def test_a_member_is_already_grouped_whether_its_record_or_only_the_group_says_so() -> None:
    group = six()
    first = member(1, seconds=1)
    assert place_incident(first, [first], group, at(20)) == AlreadyGrouped(GROUP)
    marked = first.model_copy(update={"group_id": "grp-1"})
    assert place_incident(marked, [], None, at(20)) == AlreadyGrouped(GROUP)


# --- the group --------------------------------------------------------------------------------------------------


def test_a_new_group_asks_for_its_card_and_carries_the_contract_metadata() -> None:
    transition = form_group(GROUP, [member(n) for n in range(1, 7)], T0)
    assert transition.effects == (PostGroupCard(),)
    assert transition.group.metadata_payload() == {
        "group_id": "grp-1",
        "incident_ids": ["inc-1", "inc-2", "inc-3", "inc-4", "inc-5", "inc-6"],
        "state": "open",
    }
    assert len(transition.group.to_roll_back) == 6


def test_a_join_updates_the_card_at_most_once_per_ten_seconds() -> None:
    posted = advance(six(), GroupCardPosted(SUMMARY), at(6)).group
    joined = advance(posted, Joined(member(7, seconds=8)), at(8))
    assert joined.effects == (UpdateGroupCard(),)
    assert len(joined.group.members) == 7
    assert not should_refresh(joined.group, at(15))
    assert should_refresh(joined.group, at(16))
    refreshed = advance(joined.group, GroupCardRefreshed(), at(16)).group
    assert not should_refresh(refreshed, at(40))
    assert advance(joined.group, Joined(member(7)), at(9)).changed is False


def test_two_clicks_make_one_batch_request_and_the_second_clicker_is_told() -> None:
    first = advance(six(), GroupRollbackClicked(ALICE), at(10))
    (request, update) = first.effects
    assert isinstance(request, RequestGroupRollback)
    assert request.requester == ALICE
    assert [m.incident_id for m in request.members] == [f"inc-{n}" for n in range(1, 7)]
    assert update == UpdateGroupCard()
    second = advance(first.group, GroupRollbackClicked(BOB), at(11))
    assert second.changed is False
    assert second.effects == (TellUser(BOB, f"<@{ALICE}> already asked to roll them all back; it is being requested."),)
    started = advance(first.group, GroupRollbackStarted(OP), at(12)).group
    assert started.state is GroupState.ROLLING_BACK
    (told,) = advance(started, GroupRollbackClicked(BOB), at(13)).effects
    assert isinstance(told, TellUser)
    assert "`op-9`" in told.text


def test_members_that_cannot_be_rolled_back_from_a_card_are_left_out_of_the_batch() -> None:
    incidents = [member(n) for n in range(1, 6)] + [member(6, no_button_reason="ad-hoc targets are off")]
    group = form_group(GROUP, incidents, T0).group
    (request, _) = advance(group, GroupRollbackClicked(ALICE), at(1)).effects
    assert isinstance(request, RequestGroupRollback)
    assert len(request.members) == 5


def test_a_request_that_could_not_start_gives_the_button_back_with_the_reason() -> None:
    clicked = advance(six(), GroupRollbackClicked(ALICE), at(10)).group
    refused = advance(clicked, GroupRollbackNotStarted("app-3: target busy"), at(11)).group
    assert refused.has_button
    assert refused.note == "app-3: target busy"


def test_a_rejected_batch_reopens_the_group_and_a_succeeded_one_waits_for_the_members() -> None:
    started = advance(advance(six(), GroupRollbackClicked(ALICE), at(1)).group, GroupRollbackStarted(OP), at(2))
    rejected = advance(started.group, GroupOperationFinished(OP, Phase.REJECTED), at(3)).group
    assert (rejected.state, rejected.operation_id, rejected.note) == (GroupState.OPEN, None, "`op-9` rejected")
    assert rejected.has_button
    succeeded = advance(started.group, GroupOperationFinished(OP, Phase.SUCCEEDED), at(3))
    assert succeeded.changed is False
    assert succeeded.group.state is GroupState.ROLLING_BACK


def test_the_group_follows_its_members_and_is_resolved_when_all_are() -> None:
    group = six()
    some = [member(n, seconds=n) for n in range(1, 4)]
    some.append(member(4, seconds=4, state=IncidentState.RESOLVED, resolution=Resolution.ROLLED_BACK))
    partly = advance(group, MembersSeen(tuple(some)), at(20))
    assert partly.changed
    assert partly.group.state is GroupState.OPEN
    assert len(partly.group.to_roll_back) == 5
    assert advance(partly.group, MembersSeen(tuple(some)), at(21)).changed is False
    ended = [member(n, seconds=n, state=IncidentState.RESOLVED, resolution=Resolution.ROLLED_BACK) for n in range(1, 7)]
    resolved = advance(partly.group, MembersSeen(tuple(ended)), at(30)).group
    assert (resolved.state, resolved.resolved_at) == (GroupState.RESOLVED, at(30))
    assert resolved.metadata_payload()["state"] == "resolved"
    (told,) = advance(resolved, GroupRollbackClicked(ALICE), at(31)).effects
    assert told == TellUser(ALICE, "This mass failure is over; no rollback needed.")


# --- shared causes ------------------------------------------------------------------------------------------------


def test_members_are_grouped_by_the_same_new_image_tag_then_by_the_same_reason() -> None:
    tagged = [member(n) for n in range(1, 5)]  # app-n:v10
    crashing = [member(n).model_copy(update={"signal": signal(reason="CrashLoopBackOff", images=())}) for n in (5, 6)]
    odd = member(7, image="registry.example/app-{n}:v11")
    group = form_group(GROUP, [*tagged, *crashing, odd], T0).group
    causes = shared_causes(group.members)
    assert [(c.label, [m.incident_id for m in c.members]) for c in causes] == [
        ("new image tag `v10`", ["inc-1", "inc-2", "inc-3", "inc-4"]),
        ("CrashLoopBackOff", ["inc-5", "inc-6"]),
        (None, ["inc-7"]),
    ]


# --- member incidents -------------------------------------------------------------------------------------------


def test_a_grouped_incident_loses_its_own_button_and_its_card_links_to_the_summary() -> None:
    posted = member(1).model_copy(update={"card": MessageRef(channel=CARD_CHANNEL, ts="1.1")})
    assert posted.has_button
    joined = advance_incident(posted, JoinedGroup("grp-1"), at(5))
    assert joined.incident.is_grouped
    assert not joined.incident.has_button
    assert joined.incident.metadata_payload()["group_id"] == "grp-1"
    assert [e for e in joined.effects if isinstance(e, PostInIncidentThread)] == []  # no Slack post before the summary
    linked = advance_incident(joined.incident, JoinedGroup("grp-1", SUMMARY), at(6))
    assert PostInIncidentThread("part of mass failure `grp-1`: see its summary card") in linked.effects
    assert linked.changed
    assert linked.incident.group_card == SUMMARY
    assert linked.incident.is_card_stale
    assert advance_incident(linked.incident, JoinedGroup("grp-1", SUMMARY), at(7)).changed is False
    (told,) = advance_incident(linked.incident, RollbackClicked(SlackUserId("U0CCC")), at(8)).effects
    assert isinstance(told, TellUser)
    assert "summary card" in told.text


def test_a_grouped_incident_failing_again_after_it_ended_leaves_its_group() -> None:
    grouped = advance_incident(member(1), JoinedGroup("grp-1", SUMMARY), at(5)).incident
    ended = grouped.model_copy(update={"state": IncidentState.RESOLVED, "resolved_at": at(60)})
    again = advance_incident(ended, Detected(signal()), at(120)).incident
    assert again.state is IncidentState.OPEN
    assert (again.group_id, again.group_card) == (None, None)
    every_one_ended = tuple(member(n, state=IncidentState.RESOLVED) for n in range(1, 7))
    resolved_group = advance(six(), MembersSeen(every_one_ended), at(60)).group
    assert place_incident(again, [again], resolved_group, at(120)) == StandAlone()
    assert place_incident(again, [again], six(), at(120)) == AlreadyGrouped(GROUP)
