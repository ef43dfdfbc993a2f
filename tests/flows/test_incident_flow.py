"""The incident flow end to end on fakes: a fed watcher, the real rollback flow, in-memory stores, a manual clock.

Context leases are taken explicitly (no background threads): `take()` gives the test's replica the context, the
sightings go through `IncidentFlow.on_sighting` exactly as `ContextWatching` hands them over, and `tick()` /
`sweep()` run when the test says time has passed.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest

from bot.core.catalog import BackendKind, ChannelId, SlackUserId, WorkloadKind, parse_catalog
from bot.core.detection import Condition, Sighting, WorkloadSnapshot
from bot.core.errors import FencedOut
from bot.core.incidents import IncidentId, IncidentState
from bot.core.messages.incidents import INCIDENT_ROLLBACK_ACTION
from bot.core.operations import MessageRef, OperationId, Phase
from bot.flows import RollbackFlow
from bot.flows.incidents import IncidentFlow
from bot.ports import ContextFence
from tests.fakes.clock import ManualClock
from tests.fakes.memory_backend import MemoryBackend, RolloutScript
from tests.fakes.memory_incidents import InMemoryContextLeases, InMemoryIncidentStore
from tests.fakes.memory_store import InMemoryOperationStore
from tests.flows.conftest import RecordingChat

ALICE = SlackUserId("U0ALICE")
BOB = SlackUserId("U0BOB")
WEB_CHANNEL = ChannelId("C0WEB")
CATALOG = {
    "defaults": {
        "approvals": {"required": 1, "approvers": [ALICE, BOB]},
        "detect": {"channel": "C0INCIDENT", "failing_for": "2m", "healthy_for": "2m"},
        "kubernetes": {"kube_context": "sandbox", "allowed_namespaces": ["default"]},
    },
    "targets": {
        "bootcamp": {
            "backend": "kubernetes",
            "kind": "Deployment",
            "name": "kubernetes-bootcamp",
            "namespace": "default",
            "kube_context": "sandbox",
            "detect": {"channel": WEB_CHANNEL},
        },
    },
}
LEASE = "kubernetes:sandbox"


def bootcamp(revision: int, *, failing: bool = False, at: datetime | None = None, name: str = "kubernetes-bootcamp"):
    conditions: tuple[Condition, ...] = (Condition(type="Available", status="True"),)
    if failing:
        conditions = (
            Condition(
                type="Progressing",
                status="False",
                reason="ProgressDeadlineExceeded",
                message=f'ReplicaSet "{name}-{revision}" has timed out progressing.',
                last_transition_time=at,
            ),
        )
    return WorkloadSnapshot(
        kind=WorkloadKind.DEPLOYMENT,
        namespace="default",
        name=name,
        generation=revision,
        observed_generation=revision,
        replicas=3,
        current=3 if not failing else 4,
        updated=3 if not failing else 1,
        ready=3,
        available=3,
        conditions=conditions,
        revision=revision,
    )


@dataclass
class Bot:
    flow: RollbackFlow
    incidents: IncidentFlow
    chat: RecordingChat
    clock: ManualClock
    backend: MemoryBackend
    store: InMemoryIncidentStore
    operations: InMemoryOperationStore
    fence: ContextFence

    def see(self, snapshot: WorkloadSnapshot, *, deleted: bool = False) -> None:
        sighting = Sighting(location="sandbox", seen_at=self.clock.now(), workload=snapshot, deleted=deleted)
        self.incidents.on_sighting(sighting, BackendKind.KUBERNETES, self.fence)

    def pass_time(self, delta: timedelta) -> None:
        self.clock.advance(delta)
        self.incidents.tick()
        self.incidents.sweep()

    def click(self, user: SlackUserId, incident_id: str) -> None:
        card = self.card_ref()
        self.flow.accept_button(card, user, INCIDENT_ROLLBACK_ACTION, value=incident_id)

    def cards(self):
        return [
            p for p in self.chat.posts if p.message.metadata and p.message.metadata["event_type"] == "rollbot_incident"
        ]

    def card_ref(self) -> MessageRef:
        (card,) = self.cards()
        return card.ref

    def card_payload(self) -> dict:
        return self.chat.current(self.card_ref()).metadata["event_payload"]  # type: ignore[index]

    def only_incident(self):
        (incident,) = [i for i in self.store.live()] or [None]
        return incident


@pytest.fixture
def bot() -> Bot:
    clock = ManualClock()
    catalog = parse_catalog(CATALOG)
    backend = MemoryBackend(now=clock.now)
    backend.arrange(catalog.get("bootcamp"), revisions=4, script=RolloutScript(steps=1))
    chat = RecordingChat()
    operations = InMemoryOperationStore(clock)
    leases = InMemoryContextLeases(clock)
    store = InMemoryIncidentStore(clock, leases)
    from tests.flows.conftest import RecordingMetrics

    metrics = RecordingMetrics()
    op_ids = (OperationId(f"op-{n:04x}") for n in itertools.count(0xA000))
    inc_ids = (IncidentId(f"inc-{n:04x}") for n in itertools.count(1))
    flow = RollbackFlow(
        backends=dict.fromkeys(BackendKind, backend),
        chat=chat,
        store=operations,
        clock=clock,
        metrics=metrics,
        catalog=catalog,
        submit=lambda work: work(),
        new_operation_id=lambda: next(op_ids),
        replica_id="replica-a",
        sleep=lambda seconds: None,
    )
    incidents = IncidentFlow(
        store=store,
        operations=operations,
        chat=chat,
        clock=clock,
        catalog=catalog,
        metrics=IncidentCounts(),
        backend_of=lambda target: backend,
        new_incident_id=lambda: next(inc_ids),
        sleep=lambda seconds: None,
    )
    incidents.attach(flow)
    flow.on_finished(incidents.on_operation_finished)
    flow.on_incident_click(lambda incident_id, user: incidents.on_click(IncidentId(incident_id), user))
    fence = leases.acquire(LEASE, "replica-a", timedelta(days=1))
    assert fence is not None
    incidents.context_taken(fence)
    return Bot(flow, incidents, chat, clock, backend, store, operations, fence)


class IncidentCounts:
    def __init__(self) -> None:
        self.events: list[tuple[str, ...]] = []

    def incident_opened(self, backend: str, reason: str, incident_id: str) -> bool:
        self.events.append(("opened", backend, reason))
        return True

    def incident_resolved(self, backend: str, resolution: str) -> None:
        self.events.append(("resolved", backend, resolution))

    def detection_latency(self, backend: str, seconds: float) -> None:
        self.events.append(("latency", backend, f"{seconds:.0f}"))


def test_a_failed_rollout_posts_one_card_in_the_targets_detect_channel(bot: Bot) -> None:
    bot.see(bootcamp(3))
    assert bot.cards() == []
    bot.see(bootcamp(4, failing=True, at=bot.clock.now()))
    bot.see(bootcamp(4, failing=True, at=bot.clock.now()))
    bot.pass_time(timedelta(seconds=20))
    (card,) = bot.cards()
    assert card.ref.channel == WEB_CHANNEL
    payload = bot.card_payload()
    assert payload["state"] == "open"
    assert payload["reason"] == "ProgressDeadlineExceeded"
    assert payload["target"] == "bootcamp"
    assert payload["revision"] == "4"
    buttons = [b for b in card.message.blocks if b.get("type") == "actions"]
    assert buttons[0]["elements"][0]["text"]["text"] == "Roll back to revision 3"
    assert buttons[0]["elements"][0]["value"] == payload["incident_id"]


def test_the_button_makes_one_request_however_many_clicks(bot: Bot) -> None:
    bot.see(bootcamp(4, failing=True, at=bot.clock.now()))
    incident_id = bot.card_payload()["incident_id"]
    bot.click(ALICE, incident_id)
    bot.click(ALICE, incident_id)
    bot.click(BOB, incident_id)
    requests = [
        p for p in bot.chat.posts if p.message.metadata and p.message.metadata["event_type"] == "rollbot_operation"
    ]
    assert len(requests) == 1
    operation_payload = requests[0].message.metadata["event_payload"]  # type: ignore[index]
    assert operation_payload["incident_id"] == incident_id
    assert operation_payload["to_revision"] == 3
    assert any(operation_payload["operation_id"] in text for text in bot.chat.told(BOB))
    incident = bot.store.get(IncidentId(incident_id))
    assert incident is not None
    assert incident.state is IncidentState.ROLLING_BACK


def test_approval_rolls_back_resolves_the_card_and_verifies_health(bot: Bot) -> None:
    bot.see(bootcamp(4, failing=True, at=bot.clock.now()))
    incident_id = bot.card_payload()["incident_id"]
    bot.click(ALICE, incident_id)
    operation = bot.operations.in_flight()[0]
    assert operation.request_message is not None
    bot.flow.handle_reaction(operation.request_message, BOB, "white_check_mark", added=True)
    finished = bot.operations.get(operation.id)
    assert finished is not None
    assert finished.phase is Phase.SUCCEEDED
    assert finished.verification == "pending"
    bot.see(bootcamp(5))  # the rollback made a new revision with the old template
    bot.pass_time(timedelta(seconds=11))
    payload = bot.card_payload()
    assert (payload["state"], payload["resolution"], payload["operation_id"]) == (
        "resolved",
        "rolled_back",
        operation.id,
    )
    assert not [b for b in bot.chat.current(bot.card_ref()).blocks if b.get("type") == "actions"]
    for _ in range(3):
        bot.pass_time(timedelta(minutes=1))
    verified = bot.operations.get(operation.id)
    assert verified is not None
    assert verified.verification == "healthy"
    thread = finished.request_message
    assert any("healthy for 2m" in line for line in bot.chat.thread(thread))


def test_a_newer_revision_supersedes_the_incident(bot: Bot) -> None:
    bot.see(bootcamp(4, failing=True, at=bot.clock.now()))
    bot.see(bootcamp(5))
    bot.pass_time(timedelta(seconds=11))
    assert bot.card_payload()["resolution"] == "superseded"


def test_failing_again_within_30_minutes_reopens_the_same_card(bot: Bot) -> None:
    bot.see(bootcamp(4, failing=True, at=bot.clock.now()))
    bot.see(bootcamp(4), deleted=True)
    bot.pass_time(timedelta(minutes=5))
    assert bot.card_payload()["state"] == "resolved"
    bot.see(bootcamp(4, failing=True, at=bot.clock.now()))
    bot.pass_time(timedelta(seconds=11))
    assert len(bot.cards()) == 1
    assert bot.card_payload()["state"] == "open"


def test_card_edits_wait_ten_seconds_and_the_last_one_is_not_lost(bot: Bot) -> None:
    bot.see(bootcamp(4, failing=True, at=bot.clock.now()))
    card = bot.card_ref()
    bot.see(bootcamp(5))  # superseded at once: the card may not be edited yet
    assert bot.chat.current(card).metadata["event_payload"]["state"] == "open"  # type: ignore[index]
    bot.pass_time(timedelta(seconds=10))
    assert bot.chat.current(card).metadata["event_payload"]["state"] == "resolved"  # type: ignore[index]


def test_a_stale_context_holder_posts_no_card(bot: Bot) -> None:
    bot.clock.advance(timedelta(days=2))  # the lease lapsed; someone else may hold it now
    with pytest.raises(FencedOut):
        bot.see(bootcamp(4, failing=True, at=bot.clock.now()))
    assert bot.cards() == []
