"""The summary card's button through the real HTTP endpoint: a rejected batch gives the button back, an approved
one rolls every member back and the summary ends resolved.

A started `build_app` bot on real Redis and the fake Slack, with the in-memory backend (each catalog target at
revision 2, revision 1 before it) and a `FakeWatcher` fed six failing Deployments; clicks are signed
`block_actions`, votes are reactions.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.app import RollbotApp
from bot.core.catalog import BackendKind, Catalog, WorkloadKind, parse_catalog
from bot.core.detection import Condition, Sighting, WorkloadSnapshot
from sandbox.slack.driver import SlackDriver
from sandbox.slack.records import Message
from sandbox.slack.seed import ALICE, BOB, CAROL, INCIDENT, SIGNING_SECRET
from sandbox.slack.server import FakeSlack
from tests.e2e_slack.conftest import CATALOG, WAIT, request_messages
from tests.fakes.memory_backend import MemoryBackend
from tests.fakes.watcher import FakeWatcher, WatchedWorld

SHOPS = [f"shop-{n}" for n in range(1, 7)]
ACTION = "rollbot_incident_group_rollback"


def _document() -> dict[str, Any]:
    return {
        **CATALOG,
        "defaults": {
            **CATALOG["defaults"],
            "detect": {"channel": INCIDENT, "failing_for": "1s", "healthy_for": "1s"},
            "kubernetes": {"kube_context": "sandbox"},
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
def world() -> WatchedWorld:
    return WatchedWorld()


@pytest.fixture
def bot(make_bot: Any, world: WatchedWorld) -> RollbotApp:
    return make_bot(watchers={BackendKind.KUBERNETES: FakeWatcher(world)})  # type: ignore[no-any-return]


@pytest.fixture
def slack(bot: RollbotApp, fake_slack: FakeSlack) -> Iterator[SlackDriver]:
    with SlackDriver(bot.events_url, SIGNING_SECRET, fake_slack) as driver:
        yield driver


def failing(name: str) -> Sighting:
    now = datetime.now(UTC)
    condition = Condition(
        type="Progressing", status="False", reason="ProgressDeadlineExceeded", last_transition_time=now
    )
    snapshot = WorkloadSnapshot(
        kind=WorkloadKind.DEPLOYMENT,
        namespace="shop",
        name=name,
        generation=2,
        observed_generation=2,
        replicas=2,
        current=3,
        updated=1,
        ready=2,
        available=2,
        conditions=(condition,),
        revision=2,
    )
    return Sighting(location="sandbox", seen_at=now, workload=snapshot)


def summary_of(fake: FakeSlack) -> Message:
    found: list[Message] = fake.wait_for(
        lambda: [
            m for m in fake.messages(INCIDENT) if (m.metadata or {}).get("event_type") == "rollbot_incident_group"
        ],
        WAIT,
        description="the summary card",
    )
    assert len(found) == 1
    return found[0]


def shown(fake: FakeSlack, message: Message) -> Message:
    return fake.message(message.channel, message.ts)


def button_text(fake: FakeSlack, message: Message) -> str | None:
    blocks = shown(fake, message).blocks or []
    elements = [e for b in blocks if b.get("type") == "actions" for e in b.get("elements", [])]
    return elements[0]["text"]["text"] if elements else None


def test_a_rejected_batch_brings_the_button_back_and_an_approved_one_rolls_all_back(
    bot: RollbotApp, slack: SlackDriver, fake_slack: FakeSlack, world: WatchedWorld, backend: MemoryBackend
) -> None:
    for name in SHOPS:
        world.feed(failing(name))
    summary = summary_of(fake_slack)
    assert button_text(fake_slack, summary) == "Roll back all 6"

    slack.block_action(ALICE, INCIDENT, summary.ts, ACTION)
    (first,) = fake_slack.wait_for(lambda: request_messages(fake_slack), WAIT, description="the batch request")
    slack.reaction_added(BOB, "x", INCIDENT, first.ts)
    fake_slack.wait_for(
        lambda: (
            button_text(fake_slack, summary) == "Roll back all 6"
            and "rejected" in shown(fake_slack, summary).all_text()
        ),
        WAIT + 12,  # the card is edited at most once per 10 s
        description="the button back, saying the batch was rejected",
    )

    slack.block_action(CAROL, INCIDENT, summary.ts, ACTION)
    second = fake_slack.wait_for(
        lambda: (found := request_messages(fake_slack)) and len(found) == 2 and found[1],
        WAIT,
        description="the second batch request",
    )
    payload = second.metadata["event_payload"]  # type: ignore[index]
    assert sorted(payload["targets"]) == SHOPS
    assert bot.store.get(payload["operation_id"]).requester == CAROL  # type: ignore[union-attr]
    slack.reaction_added(BOB, "white_check_mark", INCIDENT, second.ts)

    fake_slack.wait_for(
        lambda: (shown(fake_slack, summary).metadata or {})["event_payload"]["state"] == "resolved",
        30,
        description="the summary resolved",
    )
    assert button_text(fake_slack, summary) is None
    catalog = parse_catalog(_document())
    assert [backend.current_revision(catalog.get(name)) for name in SHOPS] == [1] * len(SHOPS)  # type: ignore[arg-type]
