"""The automatic-rollback policy: each guardrail on its own, the breaker's ledger, and the incident's auto states."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from bot.core.auto_policy import (
    AutoFacts,
    AutoLedger,
    AutoStart,
    CountDown,
    Fire,
    Skip,
    decide_on_due,
    decide_on_open,
    forget_start,
    record_start,
    resume,
)
from bot.core.catalog import BackendKind, ChannelId, SlackUserId
from bot.core.catalog_auto import AutoRollbackLimits, AutoRollbackSettings
from bot.core.effects import TellUser
from bot.core.incident_auto import POLICY_REQUESTER, AutoCancelled, AutoCountdown, AutoFired, AutoSkipped, AutoState
from bot.core.incidents import (
    CardPosted,
    HealthyAgain,
    Incident,
    IncidentSource,
    JoinedGroup,
    PostInIncidentThread,
    WorkloadRef,
    advance,
)
from bot.core.messages.auto import auto_status
from bot.core.messages.incidents import incident_card
from bot.core.operations import MessageRef, OperationId
from bot.core.rollouts import RevisionNumber
from tests.core.factories import T0
from tests.core.incident_factories import incident, signal

SETTINGS = AutoRollbackSettings(on=("ImagePullBackOff", "pipeline"), countdown=timedelta(minutes=2))
LIMITS = AutoRollbackLimits()
KEY = "kubernetes:sandbox:shop/Deployment/web"
ALICE = SlackUserId("U0ALICE")


def facts(subject: Incident | None = None, **fields: Any) -> AutoFacts:
    base: dict[str, Any] = {
        "incident": subject or incident(),
        "settings": SETTINGS,
        "limits": LIMITS,
        "ledger": AutoLedger(context="sandbox"),
        "target_key": KEY,
    }
    return AutoFacts(**{**base, **fields})


def started(*minutes_ago: int, target: str = KEY) -> AutoLedger:
    starts = tuple(
        AutoStart(target=target, incident_id=f"inc-old-{n}", at=T0 - timedelta(minutes=m))
        for n, m in enumerate(minutes_ago)
    )
    return AutoLedger(context="sandbox", starts=starts)


def skip_reason(decision: object) -> str:
    assert isinstance(decision, Skip), decision
    return decision.why


def test_a_listed_reason_counts_down_to_the_last_good_revision() -> None:
    assert decide_on_open(facts(), T0) == CountDown(
        due_at=T0 + timedelta(minutes=2), to_revision=RevisionNumber(2), approvals=0
    )


def test_a_target_that_did_not_opt_in_or_an_unlisted_reason_is_left_alone() -> None:
    assert decide_on_open(facts(settings=None), T0) is None
    assert decide_on_open(facts(incident(sig=signal(reason="CrashLoopBackOff"))), T0) is None


def test_sources_are_selected_by_their_word() -> None:
    from_pipeline = incident(sig=signal(reason="pipeline"), source=IncidentSource.PIPELINE)
    assert isinstance(decide_on_open(facts(from_pipeline), T0), CountDown)
    alert = incident(sig=signal(reason="HighErrorRate"), source=IncidentSource.ALERTMANAGER)
    assert decide_on_open(facts(alert), T0) is None
    with_alerts = AutoRollbackSettings(on=("alert",))
    assert isinstance(decide_on_open(facts(alert, settings=with_alerts), T0), CountDown)


def test_a_second_failure_within_the_hour_is_skipped_with_the_limit() -> None:
    why = skip_reason(decide_on_open(facts(ledger=started(59)), T0))
    assert why == "limit reached (1 automatic rollback per 1h for web)"
    assert isinstance(decide_on_open(facts(ledger=started(61)), T0), CountDown)
    assert isinstance(decide_on_open(facts(ledger=started(5, target="other")), T0), CountDown)


def test_a_tripped_breaker_turns_every_automatic_rollback_into_a_plain_card() -> None:
    ledger = AutoLedger(context="sandbox", tripped_at=T0, tripped_why="3 automatic rollbacks within 10m in sandbox")
    why = skip_reason(decide_on_open(facts(ledger=ledger), T0))
    assert "breaker of sandbox is tripped" in why
    assert "`/rollback auto resume sandbox`" in why


def test_a_revision_rollbot_made_by_rolling_back_is_never_rolled_back_automatically() -> None:
    why = skip_reason(decide_on_open(facts(made_by_rollback="rollbot's rollback `op-1`"), T0))
    assert why == "revision 3 was made by rollbot's rollback `op-1`; rolling it back again automatically could loop"


def test_helm_pending_and_an_ecs_self_rollback_are_left_to_people_or_ecs() -> None:
    helm = WorkloadRef(backend=BackendKind.HELM, location="sandbox", kind="HelmRelease", namespace="shop", name="web")
    pending = incident(workload=helm, sig=signal(reason="pending-upgrade", is_stuck=True))
    settings = AutoRollbackSettings(on=("pending-upgrade",))
    assert "helm release is pending-upgrade" in skip_reason(decide_on_open(facts(pending, settings=settings), T0))
    ecs = incident(sig=signal(reason="ImagePullBackOff", is_rolling_back_by_itself=True))
    assert skip_reason(decide_on_open(facts(ecs), T0)) == "ECS is already rolling it back by itself"


def test_no_known_good_revision_no_button_or_a_held_lock_skip() -> None:
    assert skip_reason(decide_on_open(facts(incident(last_good=None)), T0)) == (
        "no known-good earlier revision to roll back to"
    )
    refused = incident(no_button_reason="ad-hoc targets are off")
    assert skip_reason(decide_on_open(facts(refused), T0)) == "ad-hoc targets are off"
    assert skip_reason(decide_on_open(facts(lock_holder="op-9"), T0)) == "the target is locked by `op-9`"


def test_a_mass_failure_is_for_people_to_decide() -> None:
    assert "mass failure" in skip_reason(decide_on_open(facts(in_mass_failure=True), T0))


def test_at_the_due_time_the_guardrails_are_asked_again() -> None:
    counting = advance(incident(), AutoCountdown(T0, RevisionNumber(2), 1), T0).incident
    assert decide_on_due(facts(counting), T0) == Fire(to_revision=RevisionNumber(2), approvals=1)
    assert skip_reason(decide_on_due(facts(counting, lock_holder="op-2"), T0)) == "the target is locked by `op-2`"
    clicked = counting.model_copy(update={"rollback_requested_by": ALICE})
    assert skip_reason(decide_on_due(facts(clicked), T0)) == "a rollback was already requested from the card"


def test_a_start_already_counted_for_the_same_incident_is_not_a_second_rollback() -> None:
    counting = advance(incident(), AutoCountdown(T0, RevisionNumber(2), 0), T0).incident
    mine = record_start(AutoLedger(context="sandbox"), AutoStart(target=KEY, incident_id=counting.id, at=T0), LIMITS)
    assert isinstance(decide_on_due(facts(counting, ledger=mine), T0), Fire)


def test_the_breaker_trips_when_the_context_reaches_its_limit_and_resume_resets_it() -> None:
    ledger = AutoLedger(context="sandbox")
    for n in range(3):
        assert not ledger.is_tripped
        ledger = record_start(ledger, AutoStart(target=f"t{n}", incident_id=f"inc-{n}", at=T0), LIMITS)
    assert ledger.tripped_why == "3 automatic rollbacks within 10m in sandbox"
    resumed = resume(ledger)
    assert not resumed.is_tripped
    assert resumed.started_within(timedelta(hours=1), T0) == 0


def test_starts_are_counted_once_per_incident_and_old_ones_are_forgotten() -> None:
    ledger = started(120)
    ledger = record_start(ledger, AutoStart(target=KEY, incident_id="inc-1", at=T0), LIMITS)
    ledger = record_start(ledger, AutoStart(target=KEY, incident_id="inc-1", at=T0), LIMITS)
    assert [s.incident_id for s in ledger.starts] == ["inc-1"]
    assert forget_start(ledger, "inc-1").starts == ()


# --- the incident's auto states ----------------------------------------------------------------------------------


def counting_incident() -> Incident:
    return advance(incident(), AutoCountdown(T0 + timedelta(minutes=2), RevisionNumber(2), 0), T0).incident


def test_a_countdown_shows_in_the_metadata_and_the_thread() -> None:
    transition = advance(incident(), AutoCountdown(T0 + timedelta(minutes=2), RevisionNumber(2), 0), T0)
    payload = transition.incident.metadata_payload()
    assert (payload["auto_state"], payload["auto_due_at"]) == ("counting", "2026-11-22T14:39:00+00:00")
    assert transition.incident.timeline[-1].text == "automatic rollback to revision 2 at 14:39:00 UTC unless cancelled"


def test_cancel_is_for_approvers_and_final() -> None:
    refused = advance(counting_incident(), AutoCancelled(SlackUserId("U0MALLORY"), is_approver=False), T0)
    assert not refused.changed
    assert refused.effects == (
        TellUser(SlackUserId("U0MALLORY"), "Only approvers of web can cancel its automatic rollback."),
    )
    cancelled = advance(counting_incident(), AutoCancelled(ALICE, is_approver=True), T0).incident
    assert cancelled.auto is not None
    assert cancelled.auto.state is AutoState.CANCELLED
    assert cancelled.metadata_payload()["auto_state"] == "cancelled"
    assert not advance(cancelled, AutoFired(OperationId("op-1")), T0).changed
    again = advance(cancelled, AutoCancelled(SlackUserId("U0BOB"), is_approver=True), T0)
    assert again.effects == (TellUser(SlackUserId("U0BOB"), f"<@{ALICE}> already cancelled this automatic rollback."),)


def test_firing_happens_once_and_takes_the_button() -> None:
    fired = advance(counting_incident(), AutoFired(OperationId("op-1")), T0)
    assert fired.changed
    assert fired.incident.auto is not None
    assert fired.incident.auto.operation_id == "op-1"
    assert fired.incident.rollback_requested_by == POLICY_REQUESTER
    assert not fired.incident.has_button
    assert not advance(fired.incident, AutoFired(OperationId("op-2")), T0).changed
    late = advance(fired.incident, AutoCancelled(ALICE, is_approver=True), T0)
    assert late.effects == (TellUser(ALICE, "Too late: the automatic rollback already started as `op-1`."),)


def test_a_skip_keeps_the_button_and_an_ended_incident_stops_its_countdown() -> None:
    skipped = advance(incident(), AutoSkipped("limit reached"), T0).incident
    assert skipped.has_button
    assert (skipped.metadata_payload()["auto_state"], skipped.metadata_payload()["auto_why"]) == (
        "skipped",
        "limit reached",
    )
    ended = advance(counting_incident(), HealthyAgain("3"), T0).incident
    assert ended.auto is not None
    assert (ended.auto.state, ended.auto.why) == (AutoState.SKIPPED, "the incident ended first")


@pytest.mark.parametrize("word", ["crashloopbackoff", "Alert"])
def test_a_reason_in_the_wrong_case_is_refused_with_a_suggestion(word: str) -> None:
    with pytest.raises(ValueError, match="case-sensitive — did you mean"):
        AutoRollbackSettings(on=(word,))


def _buttons(card: Any) -> list[dict[str, Any]]:
    return [element for block in card.blocks if block["type"] == "actions" for element in block["elements"]]


def test_the_card_shows_the_countdown_with_a_cancel_button_then_what_became_of_it() -> None:
    counting = counting_incident()
    card = incident_card(counting, T0)
    text = " ".join(str(block) for block in card.blocks)
    assert "Rolling back to revision 2 automatically at 14:39:00 UTC unless cancelled" in text
    cancel = [b for b in _buttons(card) if b["action_id"] == "rollbot_auto_cancel"]
    assert [(b["value"], b["text"]["text"]) for b in cancel] == [("inc-1", "Cancel")]
    skipped = advance(incident(), AutoSkipped("limit reached (1 automatic rollback per 1h for web)"), T0).incident
    card = incident_card(skipped, T0)
    assert "automatic rollback skipped: limit reached" in " ".join(str(block) for block in card.blocks)
    assert [b["action_id"] for b in _buttons(card)] == ["rollbot_incident_rollback"]


def test_the_thread_starts_with_the_policy_decision_and_the_signal_source() -> None:
    posted = advance(counting_incident(), CardPosted(MessageRef(channel=ChannelId("C0WEB"), ts="1.0")), T0)
    assert posted.effects == (
        PostInIncidentThread("watch: automatic rollback to revision 2 at 14:39:00 UTC unless cancelled"),
    )
    assert advance(incident(), CardPosted(MessageRef(channel=ChannelId("C0WEB"), ts="1.0")), T0).effects == ()


def test_the_status_shows_limits_breakers_with_their_resume_command_and_the_next_countdowns() -> None:
    tripped = AutoLedger(context="sandbox", tripped_at=T0, tripped_why="3 automatic rollbacks within 10m in sandbox")
    text = auto_status(LIMITS, [tripped, AutoLedger(context="us-east-1")], [counting_incident()], ["web"]).text
    assert "*Limits:* 1/1h per target · 3/10m per context trips its breaker" in text
    assert "*Targets that opted in:* `web`" in text
    assert "• sandbox since 2026-11-22 14:37 UTC (3 automatic rollbacks within 10m in sandbox)" in text
    assert "`/rollback auto resume sandbox`" in text
    assert "us-east-1" not in text
    assert "• web → revision 2 at 14:39:00 UTC · `inc-1`" in text
    quiet = auto_status(LIMITS, [], [], []).text
    assert "*Breakers:* none tripped" in quiet
    assert "*Next countdowns:* none" in quiet


def test_a_countdown_stops_when_its_incident_joins_a_mass_failure() -> None:
    grouped = advance(counting_incident(), JoinedGroup("grp-1"), T0 + timedelta(seconds=30)).incident
    assert grouped.auto is not None
    assert grouped.auto.state is AutoState.SKIPPED
    payload = grouped.metadata_payload()
    assert payload["auto_state"] == "skipped"
    assert "mass failure `grp-1`" in payload["auto_why"]
    assert not advance(grouped, AutoFired(OperationId("op-1")), T0 + timedelta(minutes=2)).changed
