"""Three replicas on one real Redis race to fire the same countdowns, and the watching replica stops mid-countdown:
each countdown still fires exactly once, and the third automatic rollback in the context trips its breaker.

The replicas are in-process `build_app` bots against the fake Slack and one scripted backend; their watchers are
fed the same sightings (one shared `WatchedWorld`), and every replica's sweeper looks for due countdowns.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from bot.adapters.redis_auto import RedisAutoLedgers
from bot.adapters.redis_incidents import RedisIncidentStore
from bot.app import RollbotApp
from bot.core.catalog import BackendKind, Catalog, ChannelId, TargetName, WorkloadKind, parse_catalog
from bot.core.detection import Condition, Sighting, Signal, WorkloadSnapshot
from bot.core.incident_auto import AutoCountdown, AutoFired
from bot.core.incidents import IncidentId, LastGood, WorkloadRef, advance, open_incident
from bot.core.operations import OperationId
from bot.core.rollouts import RevisionNumber
from sandbox.slack.server import FakeSlack
from tests.e2e_slack.conftest import CATALOG, INCIDENT, eventually, request_messages
from tests.fakes.memory_backend import MemoryBackend
from tests.fakes.watcher import FakeWatcher, WatchedWorld

TARGETS = ("shop-1", "shop-2", "shop-3")


def _document() -> dict[str, Any]:
    document = copy.deepcopy(CATALOG)
    document["defaults"]["detect"] = {"channel": INCIDENT, "failing_for": "1s", "healthy_for": "1s"}
    document["defaults"]["kubernetes"] = {"kube_context": "sandbox"}
    for name in TARGETS:
        document["targets"][name]["auto_rollback"] = {"on": ["ProgressDeadlineExceeded"], "countdown": "3s"}
    return document


@pytest.fixture
def catalog() -> Catalog:
    return parse_catalog(_document())


@pytest.fixture
def catalog_path(tmp_path: Path) -> Path:
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(_document()), encoding="utf-8")
    return path


def failing(name: str) -> Sighting:
    now = datetime.now(UTC)
    snapshot = WorkloadSnapshot(
        kind=WorkloadKind.DEPLOYMENT,
        namespace="shop",
        name=name,
        generation=2,
        observed_generation=2,
        replicas=2,
        current=2,
        updated=1,
        ready=2,
        available=2,
        conditions=(
            Condition(type="Progressing", status="False", reason="ProgressDeadlineExceeded", last_transition_time=now),
        ),
        revision=2,
    )
    return Sighting(location="sandbox", seen_at=now, workload=snapshot)


def card_payloads(fake: FakeSlack) -> dict[str, dict[str, Any]]:
    return {
        m.metadata["event_payload"]["name"]: m.metadata["event_payload"]  # type: ignore[index]
        for m in fake.messages(INCIDENT)
        if (m.metadata or {}).get("event_type") == "rollbot_incident"
    }


def test_replicas_racing_fire_each_countdown_once_and_the_third_trips_the_breaker(
    make_bot: Callable[..., RollbotApp],
    fake_slack: FakeSlack,
    backend: MemoryBackend,
    catalog: Catalog,
    redis_url: str,
) -> None:
    world = WatchedWorld()
    replicas = [
        make_bot(
            replica_id=f"replica-{n}",
            detect_lease=timedelta(milliseconds=900),
            watchers={BackendKind.KUBERNETES: FakeWatcher(world)},
        )
        for n in range(3)
    ]
    for name in TARGETS:
        world.feed(failing(name))
    eventually(lambda: len(card_payloads(fake_slack)) == len(TARGETS), timeout=15, description="a card each")
    assert {p["auto_state"] for p in card_payloads(fake_slack).values()} == {"counting"}
    # The replica watching the context goes away mid-countdown: another one takes the context over.
    watching = next(r for r in replicas if r.watching is not None and r.watching.held())
    watching.stop()

    eventually(lambda: len(request_messages(fake_slack)) == len(TARGETS), timeout=20, description="the requests")
    eventually(
        lambda: all(p["state"] == "resolved" for p in card_payloads(fake_slack).values()),
        timeout=40,
        description="every incident rolled back",
    )
    assert len(request_messages(fake_slack)) == len(TARGETS)
    for name in TARGETS:
        target = catalog.get(name)
        assert target is not None
        assert backend.rollbacks_applied(target) == 1
    assert {(p["resolution"], p["auto_state"]) for p in card_payloads(fake_slack).values()} == {
        ("rolled_back", "started")
    }
    client = redis.Redis.from_url(redis_url)
    ledger = RedisAutoLedgers(client).get("sandbox")
    assert sorted(start.target.rsplit("/", 1)[-1] for start in ledger.starts) == list(TARGETS)
    assert ledger.tripped_why == "3 automatic rollbacks within 10m in sandbox"


def test_a_start_a_dead_replica_left_unrequested_is_requested_once_under_its_operation_id(
    make_bot: Callable[..., RollbotApp],
    fake_slack: FakeSlack,
    backend: MemoryBackend,
    catalog: Catalog,
    redis_url: str,
) -> None:
    bot = make_bot(detect=False)
    assert bot.auto is not None
    # What a replica leaves when it dies right after winning COUNTING → STARTED: no operation, no request yet.
    long_ago = datetime.now(UTC) - timedelta(minutes=5)
    workload = WorkloadRef(
        backend=BackendKind.KUBERNETES, location="sandbox", kind="Deployment", namespace="shop", name="shop-1"
    )
    signal = Signal(reason="ProgressDeadlineExceeded", since=long_ago, revision="2", revision_number=2)
    opened = open_incident(
        IncidentId("inc-left"),
        workload,
        signal,
        ChannelId(INCIDENT),
        long_ago,
        target=TargetName("shop-1"),
        last_good=LastGood(revision=RevisionNumber(1)),
    ).incident
    counting = advance(opened, AutoCountdown(long_ago, RevisionNumber(1), 0), long_ago).incident
    started = advance(counting, AutoFired(OperationId("op-left")), long_ago).incident
    RedisIncidentStore(redis.Redis.from_url(redis_url)).create(started)

    eventually(lambda: request_messages(fake_slack), timeout=10, description="the request")
    target = catalog.get("shop-1")
    assert target is not None
    eventually(lambda: backend.rollbacks_applied(target) == 1, timeout=20, description="rolled back")
    for _ in range(3):  # more sweeps change nothing
        bot.auto.sweep()
    (request,) = request_messages(fake_slack)
    assert request.metadata["event_payload"]["operation_id"] == "op-left"  # type: ignore[index]
    assert backend.rollbacks_applied(target) == 1
