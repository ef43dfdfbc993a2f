"""Random event sequences against the incident lifecycle, checking its invariants after every step."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from bot.core.effects import TellUser
from bot.core.incidents import (
    CardPosted,
    CardRefreshed,
    Detected,
    HealthyAgain,
    IncidentEvent,
    IncidentState,
    NewerRevision,
    OperationFinished,
    RequestRollback,
    Resolution,
    RollbackClicked,
    RollbackNotStarted,
    RollbackStarted,
    WorkloadDeleted,
    advance,
    should_refresh,
)
from bot.core.operations import MessageRef, OperationId, Phase
from tests.core.factories import ALICE, BOB, CAROL, T0
from tests.core.incident_factories import CARD_CHANNEL, incident, signal

CARD = MessageRef(channel=CARD_CHANNEL, ts="1700000000.000100")
OPERATIONS = st.sampled_from([OperationId("op-1"), OperationId("op-2")])
PHASES = st.sampled_from([Phase.SUCCEEDED, Phase.FAILED, Phase.REJECTED, Phase.EXPIRED, Phase.ROLLING_BACK])
SIGNALS = st.builds(
    signal,
    reason=st.sampled_from(["ImagePullBackOff", "CrashLoopBackOff", "ProgressDeadlineExceeded"]),
    is_rolling_back_by_itself=st.booleans(),
)
EVENTS: st.SearchStrategy[IncidentEvent] = st.one_of(
    st.builds(Detected, SIGNALS),
    st.builds(HealthyAgain, st.sampled_from(["3", "4"])),
    st.builds(NewerRevision, st.sampled_from(["3", "4"])),
    st.just(WorkloadDeleted()),
    st.just(CardRefreshed()),
    st.builds(RollbackClicked, st.sampled_from([ALICE, BOB, CAROL])),
    st.builds(RollbackStarted, OPERATIONS),
    st.builds(RollbackNotStarted, st.just("busy")),
    st.builds(OperationFinished, OPERATIONS, PHASES),
)
ALLOWED = {
    IncidentState.OPEN: {IncidentState.ROLLING_BACK, IncidentState.RESOLVED},
    IncidentState.ROLLING_BACK: {IncidentState.OPEN, IncidentState.RESOLVED},
    IncidentState.RESOLVED: {IncidentState.OPEN},
}


class IncidentLifecycle(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.incident = advance(incident(), CardPosted(CARD), T0).incident
        self.now = T0

    @rule(event=EVENTS, seconds=st.integers(0, 900))
    def happen(self, event: IncidentEvent, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)
        before = self.incident
        transition = advance(before, event, self.now)
        after = transition.incident
        if transition.changed:
            assert after.version == before.version + 1
            assert after.updated_at == self.now
        else:
            assert after == before
            assert all(isinstance(effect, TellUser) for effect in transition.effects)
        if after.state is not before.state:
            assert after.state in ALLOWED[before.state]
        requests = [effect for effect in transition.effects if isinstance(effect, RequestRollback)]
        if requests:
            # Only a click on an unrequested open card asks for a rollback; the store's compare-and-set then
            # lets one of two racing clicks win, so a card leads to one request at a time.
            assert before.rollback_requested_by is None
            assert before.operation_id is None
            assert before.state is IncidentState.OPEN
            assert after.rollback_requested_by is not None
        self.incident = after

    @invariant()
    def identity_and_card_never_change(self) -> None:
        assert self.incident.id == "inc-1"
        assert self.incident.card == CARD
        assert self.incident.key.endswith("@3")

    @invariant()
    def resolution_is_set_exactly_when_resolved(self) -> None:
        is_resolved = self.incident.state is IncidentState.RESOLVED
        assert (self.incident.resolution is not None) == is_resolved
        assert (self.incident.resolved_at is not None) == is_resolved
        if self.incident.resolution is Resolution.ROLLED_BACK:
            assert self.incident.operation_id is not None

    @invariant()
    def rolling_back_always_names_its_operation(self) -> None:
        if self.incident.state is IncidentState.ROLLING_BACK:
            assert self.incident.operation_id is not None

    @invariant()
    def the_button_shows_only_while_open_and_unrequested(self) -> None:
        if self.incident.has_button:
            assert self.incident.state is IncidentState.OPEN
            assert self.incident.rollback_requested_by is None
            assert not self.incident.is_ecs_rolling_back

    @invariant()
    def a_fresh_card_is_never_edited(self) -> None:
        if not self.incident.is_card_stale:
            assert not should_refresh(self.incident, self.now + timedelta(hours=1))

    @invariant()
    def the_timeline_is_bounded(self) -> None:
        assert 1 <= len(self.incident.timeline) <= 50


IncidentLifecycle.TestCase.settings = settings(max_examples=100, stateful_step_count=30, deadline=None)
TestIncidentLifecycle = IncidentLifecycle.TestCase
