"""The incident lifecycle (detection.md §6.1, §6.6–6.7): every transition and what it asks the flow to do."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.core.catalog import BackendKind, SlackUserId
from bot.core.effects import TellUser
from bot.core.incidents import (
    CardPosted,
    CardRefreshed,
    Detected,
    HealthyAgain,
    Incident,
    IncidentId,
    IncidentState,
    NewerRevision,
    OperationFinished,
    PostIncidentCard,
    PostInIncidentThread,
    RequestRollback,
    Resolution,
    RollbackClicked,
    RollbackNotStarted,
    RollbackStarted,
    UpdateIncidentCard,
    WorkloadDeleted,
    WorkloadRef,
    advance,
    can_reopen,
    incident_key,
    next_refresh_at,
    open_incident,
    should_refresh,
)
from bot.core.operations import MessageRef, OperationId, Phase
from tests.core.factories import ALICE, BOB, T0
from tests.core.incident_factories import CARD_CHANNEL, WEB, incident, signal

CARD = MessageRef(channel=CARD_CHANNEL, ts="1700000000.000100")
OP = OperationId("op-7")


def later(seconds: float) -> object:
    return T0 + timedelta(seconds=seconds)


def posted() -> Incident:
    return advance(incident(), CardPosted(CARD), T0).incident


def rolling_back() -> Incident:
    clicked = advance(posted(), RollbackClicked(ALICE), T0 + timedelta(seconds=5)).incident
    return advance(clicked, RollbackStarted(OP), T0 + timedelta(seconds=6)).incident


def lines(effects: tuple[object, ...]) -> list[str]:
    return [effect.text for effect in effects if isinstance(effect, PostInIncidentThread)]


def test_opening_posts_one_card_keyed_by_workload_and_failed_revision() -> None:
    transition = open_incident(IncidentId("inc-1"), WEB, signal(), CARD_CHANNEL, T0)
    assert transition.effects == (PostIncidentCard(),)
    opened = transition.incident
    assert opened.key == "kubernetes:sandbox:Deployment:shop/web@3"
    assert opened.key == incident_key(WEB, "3")
    assert opened.state is IncidentState.OPEN
    assert opened.version == 1
    assert opened.timeline[0].text == "ImagePullBackOff on revision 3"


def test_the_workload_key_tells_contexts_regions_and_kinds_apart() -> None:
    other_context = WEB.model_copy(update={"location": "prod"})
    daemonset = WEB.model_copy(update={"kind": "DaemonSet"})
    assert len({WEB.key, other_context.key, daemonset.key}) == 3


@pytest.mark.parametrize(
    ("workload", "display"),
    [
        (WEB, "deploy/web -n shop"),
        (WEB.model_copy(update={"kind": "DaemonSet"}), "ds/web -n shop"),
        (WEB.model_copy(update={"kind": "StatefulSet"}), "sts/web -n shop"),
        (
            WorkloadRef(backend=BackendKind.HELM, location=None, kind="HelmRelease", namespace="shop", name="web"),
            "helm/web -n shop",
        ),
        (
            WorkloadRef(backend=BackendKind.ECS, location="us-east-1", kind="EcsService", namespace="prod", name="api"),
            "ecs/prod/api",
        ),
    ],
    ids=["deployment", "daemonset", "statefulset", "helm", "ecs"],
)
def test_a_workload_found_by_a_scope_is_named_the_way_people_type_it(workload: WorkloadRef, display: str) -> None:
    found = incident(target=None, workload=workload)
    assert found.target_label == display
    assert found.metadata_payload()["target"] == display


def test_the_card_metadata_is_flat_and_follows_the_contract() -> None:
    payload = rolling_back().metadata_payload()
    assert payload == {
        "incident_id": "inc-1",
        "state": "rolling_back",
        "target": "web",
        "backend": "kubernetes",
        "kind": "Deployment",
        "namespace": "shop",
        "name": "web",
        "revision": "3",
        "reason": "ImagePullBackOff",
        "resolution": None,
        "operation_id": "op-7",
        "source": "watch",
        "auto_state": None,
        "auto_due_at": None,
        "auto_why": None,
    }
    assert all(isinstance(value, str | int | type(None)) for value in payload.values())


def test_the_card_position_is_recorded_once() -> None:
    first = advance(incident(), CardPosted(CARD), T0)
    assert first.changed
    assert first.incident.card == CARD
    assert not advance(first.incident, CardPosted(CARD), T0).changed


def test_the_same_signal_again_changes_nothing() -> None:
    card = posted()
    again = signal(since=T0 + timedelta(seconds=30))
    assert not advance(card, Detected(again), T0 + timedelta(seconds=30)).changed


def test_new_counts_update_the_card_but_keep_the_first_sighting() -> None:
    card = posted()
    grown = signal(counts=(signal().counts[0].model_copy(update={"count": 30}),), since=T0 + timedelta(minutes=1))
    transition = advance(card, Detected(grown), T0 + timedelta(minutes=1))
    assert transition.effects == (UpdateIncidentCard(),)
    assert transition.incident.signal.counts[0].count == 30
    assert transition.incident.signal.since == T0
    assert transition.incident.is_card_stale


def test_a_new_reason_goes_to_the_thread() -> None:
    deadline = signal(reason="ProgressDeadlineExceeded")
    assert lines(advance(posted(), Detected(deadline), T0 + timedelta(minutes=9)).effects) == [
        "now ProgressDeadlineExceeded"
    ]


def test_card_edits_are_rate_limited_to_one_per_ten_seconds() -> None:
    card = posted()
    assert not should_refresh(card, T0)  # nothing to show
    stale = advance(card, Detected(signal(messages=("other",))), T0 + timedelta(seconds=3)).incident
    assert not should_refresh(stale, T0 + timedelta(seconds=9))
    assert next_refresh_at(stale) == T0 + timedelta(seconds=10)
    assert should_refresh(stale, T0 + timedelta(seconds=10))
    fresh = advance(stale, CardRefreshed(), T0 + timedelta(seconds=10)).incident
    assert not fresh.is_card_stale
    assert next_refresh_at(fresh) is None
    assert not advance(fresh, CardRefreshed(), T0 + timedelta(seconds=11)).changed


def test_a_card_not_posted_yet_is_never_refreshed() -> None:
    stale = advance(incident(), Detected(signal(messages=("other",))), T0 + timedelta(seconds=30)).incident
    assert not should_refresh(stale, T0 + timedelta(minutes=5))


def test_the_button_requests_a_rollback_to_the_last_good_revision_once() -> None:
    first = advance(posted(), RollbackClicked(ALICE), T0 + timedelta(seconds=5))
    assert RequestRollback(IncidentId("inc-1"), ALICE, 2) in first.effects  # type: ignore[arg-type]
    assert first.incident.rollback_requested_by == ALICE
    assert not first.incident.has_button
    # A second click (or a second person) before the operation exists: told, nothing requested.
    second = advance(first.incident, RollbackClicked(BOB), T0 + timedelta(seconds=6))
    assert not second.changed
    assert second.effects == (TellUser(BOB, "<@U0AAA> already asked for this rollback; it is being requested."),)


def test_once_the_operation_exists_a_click_is_told_which_one() -> None:
    transition = advance(rolling_back(), RollbackClicked(BOB), T0 + timedelta(seconds=20))
    assert not transition.changed
    (told,) = transition.effects
    assert isinstance(told, TellUser)
    assert "`op-7`" in told.text


def test_a_started_rollback_records_its_operation() -> None:
    current = rolling_back()
    assert current.state is IncidentState.ROLLING_BACK
    assert current.operation_id == OP
    assert current.timeline[-1].text == "rollback requested as `op-7` by <@U0AAA>"
    assert not advance(current, RollbackStarted(OP), T0 + timedelta(seconds=7)).changed


def test_a_rollback_that_could_not_start_gives_the_button_back_with_the_reason() -> None:
    clicked = advance(posted(), RollbackClicked(ALICE), T0).incident
    refused = advance(clicked, RollbackNotStarted("web is busy with op-3"), T0 + timedelta(seconds=1)).incident
    assert refused.has_button
    assert refused.note == "web is busy with op-3"


def test_a_successful_rollback_resolves_rolled_back() -> None:
    done = advance(rolling_back(), OperationFinished(OP, Phase.SUCCEEDED), T0 + timedelta(minutes=4))
    assert done.incident.state is IncidentState.RESOLVED
    assert done.incident.resolution is Resolution.ROLLED_BACK
    assert done.incident.lasted == timedelta(minutes=4)
    assert lines(done.effects) == ["rolled back by `op-7`"]
    assert not done.incident.has_button


@pytest.mark.parametrize("phase", [Phase.FAILED, Phase.REJECTED, Phase.EXPIRED, Phase.CANCELLED])
def test_a_rollback_that_did_not_succeed_reopens_the_incident_with_a_note(phase: Phase) -> None:
    done = advance(rolling_back(), OperationFinished(OP, phase, "helm said no"), T0 + timedelta(minutes=4))
    assert done.incident.state is IncidentState.OPEN
    assert done.incident.operation_id is None
    assert done.incident.note == f"`op-7` {phase.value}: helm said no"
    assert done.incident.has_button


def test_another_operations_outcome_or_a_non_terminal_phase_changes_nothing() -> None:
    current = rolling_back()
    assert not advance(current, OperationFinished(OperationId("op-9"), Phase.SUCCEEDED), T0).changed
    assert not advance(current, OperationFinished(OP, Phase.ROLLING_BACK), T0).changed


def test_health_on_the_failed_revision_resolves_recovered() -> None:
    done = advance(posted(), HealthyAgain("3"), T0 + timedelta(minutes=6)).incident
    assert done.resolution is Resolution.RECOVERED


def test_a_newer_revision_supersedes_the_incident() -> None:
    done = advance(posted(), NewerRevision("4"), T0 + timedelta(minutes=6))
    assert done.incident.resolution is Resolution.SUPERSEDED
    assert lines(done.effects) == ["superseded by revision 4"]
    assert not advance(posted(), NewerRevision("3"), T0).changed
    assert advance(posted(), HealthyAgain("4"), T0).incident.resolution is Resolution.SUPERSEDED


def test_our_own_rollbacks_new_revision_does_not_supersede_it() -> None:
    assert not advance(rolling_back(), NewerRevision("4"), T0 + timedelta(minutes=1)).changed
    assert not advance(rolling_back(), HealthyAgain("4"), T0 + timedelta(minutes=1)).changed


def test_a_deleted_workload_resolves_deleted() -> None:
    assert advance(posted(), WorkloadDeleted(), T0).incident.resolution is Resolution.DELETED


def test_ecs_rolling_back_by_itself_offers_no_button_and_resolves_rolled_back_by_ecs() -> None:
    ecs = incident(sig=signal(reason="FAILED", revision="ecs-svc/222", is_rolling_back_by_itself=True))
    assert not ecs.has_button
    click = advance(ecs, RollbackClicked(ALICE), T0)
    assert not click.changed
    assert isinstance(click.effects[0], TellUser)
    assert not advance(ecs, NewerRevision("ecs-svc/333"), T0).changed
    done = advance(ecs, HealthyAgain("ecs-svc/333"), T0 + timedelta(minutes=5)).incident
    assert done.resolution is Resolution.ROLLED_BACK_BY_ECS


def test_the_card_is_told_when_ecs_starts_rolling_back() -> None:
    ecs = incident(sig=signal(reason="FAILED", revision="ecs-svc/222"))
    rolling = signal(reason="FAILED", revision="ecs-svc/222", is_rolling_back_by_itself=True)
    assert lines(advance(ecs, Detected(rolling), T0).effects) == ["ECS is rolling it back by itself"]


def test_a_stuck_helm_release_offers_the_rollback_helm_still_allows() -> None:
    stuck = incident(sig=signal(reason="pending-upgrade", revision="6", is_stuck=True))
    assert stuck.has_button
    clicked = advance(stuck, RollbackClicked(ALICE), T0)
    assert clicked.incident.rollback_requested_by == ALICE
    assert isinstance(clicked.effects[0], RequestRollback)


def test_a_workload_outside_the_catalog_without_ad_hoc_rights_offers_no_button() -> None:
    outside = incident(target=None, no_button_reason="namespace `shop` is not open to ad-hoc rollbacks")
    assert not outside.has_button
    (told,) = advance(outside, RollbackClicked(ALICE), T0).effects
    assert told == TellUser(ALICE, "namespace `shop` is not open to ad-hoc rollbacks")


def test_without_a_known_good_revision_there_is_nothing_to_roll_back_to() -> None:
    unknown = incident(last_good=None)
    assert not unknown.has_button
    assert advance(unknown, RollbackClicked(ALICE), T0).effects == (
        TellUser(ALICE, "No known-good revision to roll back to."),
    )


def test_failing_again_within_thirty_minutes_reopens_the_same_card() -> None:
    recovered = advance(posted(), HealthyAgain("3"), T0 + timedelta(minutes=5)).incident
    assert can_reopen(recovered, T0 + timedelta(minutes=34))
    again = advance(recovered, Detected(signal(reason="CrashLoopBackOff")), T0 + timedelta(minutes=34))
    assert again.incident.id == recovered.id
    assert again.incident.card == CARD
    assert again.incident.state is IncidentState.OPEN
    assert again.incident.resolution is None
    assert again.incident.reopened == 1
    assert lines(again.effects) == ["failing again: CrashLoopBackOff"]


def test_failing_again_after_thirty_minutes_leaves_it_closed_for_a_new_incident() -> None:
    recovered = advance(posted(), HealthyAgain("3"), T0 + timedelta(minutes=5)).incident
    assert not can_reopen(recovered, T0 + timedelta(minutes=35))
    assert not advance(recovered, Detected(signal()), T0 + timedelta(minutes=35)).changed
    assert not can_reopen(posted(), T0)


def test_a_resolved_incident_ignores_everything_but_a_new_failure() -> None:
    done = advance(posted(), WorkloadDeleted(), T0).incident
    for event in (HealthyAgain("3"), NewerRevision("9"), WorkloadDeleted(), RollbackStarted(OP)):
        assert not advance(done, event, T0 + timedelta(minutes=1)).changed
    told = advance(done, RollbackClicked(SlackUserId("U0ZZZ")), T0).effects
    assert told == (TellUser(SlackUserId("U0ZZZ"), "This incident is over; no rollback needed."),)


def test_a_late_refusal_after_the_operation_started_changes_nothing() -> None:
    assert not advance(rolling_back(), RollbackNotStarted("busy"), T0).changed
