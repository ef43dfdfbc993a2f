"""Incident cards through the real HTTP endpoint: posted by the incident flow, clicked through the signed driver.

The bot is a started `build_app` bot on real Redis and the fake Slack; its watchers are `FakeWatcher`s fed what a
real watcher would see (one `WatchedWorld` per backend, since a watcher reports everything its world holds). The
card's button is clicked with the real `block_actions` payload (`action_id: rollbot_incident_rollback`, the
incident id as value); approvals are ✅ reactions; `/rollback incidents` is a signed slash command.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.app import RollbotApp
from bot.core.catalog import BackendKind, Catalog, WorkloadKind, parse_catalog
from bot.core.detection import Condition, EcsServiceSnapshot, Sighting, WorkloadSnapshot
from bot.core.detection.snapshots import EcsDeployment
from bot.core.messages.incidents import INCIDENT_ROLLBACK_ACTION
from sandbox.slack.driver import SlackDriver
from sandbox.slack.records import Message
from sandbox.slack.seed import ALICE, BOB, CAROL, INCIDENT, SIGNING_SECRET
from sandbox.slack.server import FakeSlack
from tests.e2e_slack.conftest import CATALOG, WAIT, eventually, request_messages
from tests.fakes.watcher import FakeWatcher, WatchedWorld

CARDS = INCIDENT
CONTEXT = "sandbox"
REGION = "ap-northeast-1"


def _document() -> dict[str, Any]:
    return {
        **CATALOG,
        "defaults": {
            **CATALOG["defaults"],
            "detect": {"channel": CARDS, "failing_for": "1s", "healthy_for": "1s"},
            "kubernetes": {"kube_context": CONTEXT},
        },
    }


@pytest.fixture
def catalog() -> Catalog:
    return parse_catalog(_document())


@pytest.fixture
def catalog_path(tmp_path: Path) -> Path:
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(_document()), encoding="utf-8")
    return path


@pytest.fixture
def kubernetes() -> WatchedWorld:
    return WatchedWorld()


@pytest.fixture
def ecs() -> WatchedWorld:
    return WatchedWorld()


@pytest.fixture
def bot(make_bot: Callable[..., RollbotApp], kubernetes: WatchedWorld, ecs: WatchedWorld) -> RollbotApp:
    watchers = {BackendKind.KUBERNETES: FakeWatcher(kubernetes), BackendKind.ECS: FakeWatcher(ecs)}
    return make_bot(watchers=watchers)


@pytest.fixture
def slack(bot: RollbotApp, fake_slack: FakeSlack) -> Iterator[SlackDriver]:
    with SlackDriver(bot.events_url, SIGNING_SECRET, fake_slack) as driver:
        yield driver


def bootcamp(revision: int, *, failing: bool) -> Sighting:
    """kubernetes-bootcamp as the Kubernetes watcher would report it: past its progress deadline, or healthy."""
    now = datetime.now(UTC)
    conditions = (
        (Condition(type="Progressing", status="False", reason="ProgressDeadlineExceeded", last_transition_time=now),)
        if failing
        else (Condition(type="Available", status="True"), Condition(type="Progressing", status="True"))
    )
    snapshot = WorkloadSnapshot(
        kind=WorkloadKind.DEPLOYMENT,
        namespace="default",
        name="kubernetes-bootcamp",
        generation=revision,
        observed_generation=revision,
        replicas=3,
        current=4 if failing else 3,
        updated=1 if failing else 3,
        ready=3,
        available=3,
        conditions=conditions,
        revision=revision,
    )
    return Sighting(location=CONTEXT, seen_at=now, workload=snapshot)


def payload_api(*, ecs_rolling_back: bool, settled: bool = False) -> Sighting:
    """payload-api while ECS's circuit breaker rolls a failed deployment back, and once it has."""
    now = datetime.now(UTC)
    good = EcsDeployment(
        id="ecs-svc/good",
        status="PRIMARY",
        task_definition="payload-api:1",
        rollout_state="COMPLETED" if settled else "IN_PROGRESS",
        desired=2,
        running=2 if settled else 1,
        created_at=now,
        updated_at=now,
    )
    failed = EcsDeployment(
        id="ecs-svc/bad",
        status="ACTIVE",
        task_definition="payload-api:2",
        rollout_state="FAILED",
        rollout_state_reason="ECS deployment circuit breaker: tasks failed to start.",
        desired=0,
        failed_tasks=3,
        created_at=now.replace(year=now.year - 1) if ecs_rolling_back else now,
        updated_at=now,
    )
    service = EcsServiceSnapshot(
        cluster="default",
        service="payload-api",
        deployments=(good,) if settled else (good, failed),
        is_circuit_breaker_on=True,
        is_circuit_breaker_rollback=ecs_rolling_back,
    )
    return Sighting(location=REGION, seen_at=now, service=service)


def cards(fake: FakeSlack) -> list[Message]:
    return [m for m in fake.messages(CARDS) if (m.metadata or {}).get("event_type") == "rollbot_incident"]


def payload(message: Message) -> dict[str, Any]:
    return (message.metadata or {})["event_payload"]  # type: ignore[no-any-return]


def wait_for_card(fake: FakeSlack, name: str, timeout: float = WAIT) -> Message:
    found: list[Message] = fake.wait_for(
        lambda: [m for m in cards(fake) if payload(m)["name"] == name], timeout, description=f"the card of {name}"
    )
    assert len(found) == 1, "one card (one chat.postMessage) per incident"
    return found[0]


def current(fake: FakeSlack, card: Message) -> dict[str, Any]:
    return payload(fake.message(card.channel, card.ts))


def buttons(fake: FakeSlack, card: Message) -> list[dict[str, Any]]:
    blocks = fake.message(card.channel, card.ts).blocks or []
    return [e for b in blocks if b.get("type") == "actions" for e in b.get("elements", [])]


def keep_feeding(world: WatchedWorld, sighting: Callable[[], Sighting]) -> Callable[[], None]:
    """Feed a fresh sighting every 200 ms (a watcher's periodic relisting) until the returned stop is called."""
    stop = threading.Event()

    def feed() -> None:
        while not stop.wait(0.2):
            world.feed(sighting())

    threading.Thread(target=feed, daemon=True).start()
    return stop.set


def test_the_cards_button_makes_one_request_and_the_second_clicker_is_told_which(
    slack: SlackDriver, fake_slack: FakeSlack, bot: RollbotApp, kubernetes: WatchedWorld
) -> None:
    kubernetes.feed(bootcamp(2, failing=True))
    card = wait_for_card(fake_slack, "kubernetes-bootcamp")
    opened = current(fake_slack, card)
    assert (opened["state"], opened["reason"], opened["target"], opened["revision"]) == (
        "open",
        "ProgressDeadlineExceeded",
        "bootcamp",
        "2",
    )
    (button,) = buttons(fake_slack, card)
    assert button["action_id"] == INCIDENT_ROLLBACK_ACTION
    assert button["value"] == opened["incident_id"]
    assert button["text"]["text"] == "Roll back to revision 1"

    assert slack.block_action(ALICE, CARDS, card.ts, INCIDENT_ROLLBACK_ACTION).status == 200
    (request,) = fake_slack.wait_for(lambda: request_messages(fake_slack, CARDS), WAIT, description="the request")
    operation = request.metadata["event_payload"]  # type: ignore[index]
    assert operation["incident_id"] == opened["incident_id"]
    assert operation["to_revision"] == 1
    assert bot.store.get(operation["operation_id"]).requester == ALICE  # type: ignore[union-attr]

    assert slack.block_action(ALICE, CARDS, card.ts, INCIDENT_ROLLBACK_ACTION).status == 200  # a double click
    # Carol clicks once the card's thread says the rollback is requested (the card itself is edited at most
    # every 10 s, so its button is still there).
    fake_slack.wait_for(
        lambda: any(operation["operation_id"] in m.all_text() for m in fake_slack.messages(CARDS, thread_ts=card.ts)),
        WAIT,
        description="the card's thread naming the operation",
    )
    assert slack.block_action(CAROL, CARDS, card.ts, INCIDENT_ROLLBACK_ACTION).status == 200
    told = fake_slack.wait_for(
        lambda: [e for e in fake_slack.ephemerals(CARDS, CAROL) if operation["operation_id"] in e.all_text()],
        WAIT,
        description="Carol told which operation exists",
    )
    assert told
    assert len(request_messages(fake_slack, CARDS)) == 1
    fake_slack.wait_for(
        lambda: current(fake_slack, card)["state"] == "rolling_back", 3 * WAIT, description="the card rolling back"
    )
    assert current(fake_slack, card)["operation_id"] == operation["operation_id"]
    assert buttons(fake_slack, card) == [], "an operation holds the target: no button"
    assert len(request_messages(fake_slack, CARDS)) == 1
    assert len(cards(fake_slack)) == 1, "one card (one chat.postMessage) per incident"


def test_approval_rolls_back_resolves_the_card_with_the_operation_and_verifies_health(
    slack: SlackDriver, fake_slack: FakeSlack, bot: RollbotApp, kubernetes: WatchedWorld
) -> None:
    kubernetes.feed(bootcamp(2, failing=True))
    card = wait_for_card(fake_slack, "kubernetes-bootcamp")
    slack.block_action(ALICE, CARDS, card.ts, INCIDENT_ROLLBACK_ACTION)
    (request,) = fake_slack.wait_for(lambda: request_messages(fake_slack, CARDS), WAIT, description="the request")
    operation_id = request.metadata["event_payload"]["operation_id"]  # type: ignore[index]

    assert slack.reaction_added(BOB, "white_check_mark", CARDS, request.ts).status == 200
    stop = keep_feeding(kubernetes, lambda: bootcamp(3, failing=False))  # the rollback's revision, healthy
    try:
        fake_slack.wait_for(
            lambda: current(fake_slack, card)["state"] == "resolved", 3 * WAIT, description="the card resolved"
        )
        resolved = current(fake_slack, card)
        assert (resolved["resolution"], resolved["operation_id"]) == ("rolled_back", operation_id)
        assert buttons(fake_slack, card) == [], "a resolved card has no button"
        assert "rolled back" in fake_slack.message(CARDS, card.ts).all_text()

        def verification() -> Any:
            operation = bot.store.get(operation_id)
            return operation is not None and operation.verification == "healthy"

        eventually(verification, 3 * WAIT, description="verification healthy")
    finally:
        stop()
    fake_slack.wait_for(
        lambda: any("healthy for" in m.all_text() for m in fake_slack.messages(CARDS, thread_ts=request.ts)),
        WAIT,
        description="'healthy for' in the operation's thread",
    )
    assert len(cards(fake_slack)) == 1


def test_ecs_rolling_back_by_itself_gets_a_card_without_a_button_resolved_by_ecs(
    fake_slack: FakeSlack, bot: RollbotApp, ecs: WatchedWorld
) -> None:
    ecs.feed(payload_api(ecs_rolling_back=True))
    card = wait_for_card(fake_slack, "payload-api")
    opened = current(fake_slack, card)
    assert (opened["state"], opened["reason"], opened["backend"]) == ("open", "FAILED", "ecs")
    assert "ECS is rolling it back" in fake_slack.message(CARDS, card.ts).all_text()
    assert buttons(fake_slack, card) == []

    stop = keep_feeding(ecs, lambda: payload_api(ecs_rolling_back=True, settled=True))
    try:
        fake_slack.wait_for(
            lambda: current(fake_slack, card)["state"] == "resolved", 3 * WAIT, description="the card resolved"
        )
    finally:
        stop()
    assert current(fake_slack, card)["resolution"] == "rolled_back_by_ecs"
    assert buttons(fake_slack, card) == []
    assert request_messages(fake_slack, CARDS) == []
    assert len(cards(fake_slack)) == 1


def test_slash_incidents_lists_the_open_incidents(
    slack: SlackDriver, fake_slack: FakeSlack, bot: RollbotApp, kubernetes: WatchedWorld
) -> None:
    kubernetes.feed(bootcamp(2, failing=True))
    card = wait_for_card(fake_slack, "kubernetes-bootcamp")
    incident_id = current(fake_slack, card)["incident_id"]

    ack = slack.slash_command("incidents", user=BOB, channel=CARDS)
    assert ack.status == 200

    def answer() -> list[str]:
        texts = [r.text + str((r.body or {}).get("blocks", "")) for r in fake_slack.responses("commands", user=BOB)]
        texts += [e.all_text() for e in fake_slack.ephemerals(user=BOB)]
        texts += [ack.ephemeral_text or ""]
        texts += [m.all_text() for m in fake_slack.messages(CARDS) if "Open incidents" in m.all_text()]
        return [text for text in texts if "Open incidents" in text]

    (listing, *_) = fake_slack.wait_for(answer, WAIT, description="the incidents listing")
    assert "Open incidents (1)" in listing
    assert "bootcamp" in listing
    assert "ProgressDeadlineExceeded" in listing
    assert incident_id in listing
