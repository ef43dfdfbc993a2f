"""Three replicas on one real Redis share the watched context: 20 incidents, two replicas stopped at random
moments, and still at most one card per incident, one summary card for the mass failure (ADR 0019: the five
incidents that open before the threshold keep their own card), every incident resolved.

The replicas are in-process `build_app` bots against the fake Slack; their watchers are fed the same sightings
(one shared `WatchedWorld`). Stopping a replica gives its context lease back; the survivors take it over and
relist before deciding anything.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.app import RollbotApp
from bot.core.catalog import BackendKind, Catalog, WorkloadKind, parse_catalog
from bot.core.detection import Condition, Sighting, WorkloadSnapshot
from sandbox.slack.server import FakeSlack
from tests.e2e_slack.conftest import CATALOG, eventually
from tests.fakes.watcher import FakeWatcher, WatchedWorld

CARDS = "C0INCIDENT"
INCIDENTS = 20


def _document() -> dict[str, Any]:
    return {
        **CATALOG,
        "defaults": {
            **CATALOG["defaults"],
            "detect": {"channel": CARDS, "failing_for": "1s", "healthy_for": "1s"},
            "kubernetes": {"kube_context": "sandbox", "allowed_namespaces": ["load"]},
        },
        "watch": [{"backend": "kubernetes", "kube_context": "sandbox", "namespaces": ["load"]}],
    }


@pytest.fixture
def catalog() -> Catalog:
    return parse_catalog(_document())


@pytest.fixture
def catalog_path(tmp_path: Path) -> Path:
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(_document()), encoding="utf-8")
    return path


def workload(n: int, revision: int, *, failing: bool) -> Sighting:
    now = datetime.now(UTC)
    conditions = (
        (Condition(type="Progressing", status="False", reason="ProgressDeadlineExceeded", last_transition_time=now),)
        if failing
        else (Condition(type="Available", status="True"),)
    )
    snapshot = WorkloadSnapshot(
        kind=WorkloadKind.DEPLOYMENT,
        namespace="load",
        name=f"svc-{n}",
        generation=revision,
        observed_generation=revision,
        replicas=2,
        current=2,
        updated=1 if failing else 2,
        ready=2,
        available=2,
        conditions=conditions,
        revision=revision,
    )
    return Sighting(location="sandbox", seen_at=now, workload=snapshot)


def cards(fake: FakeSlack) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for message in fake.messages(CARDS):
        metadata = message.metadata or {}
        if metadata.get("event_type") == "rollbot_incident":
            payload = metadata["event_payload"]
            found.setdefault(payload["name"], []).append(payload)
    return found


def summaries(fake: FakeSlack) -> list[dict[str, Any]]:
    """The current metadata of every summary card posted (after its edits in place)."""
    return [
        (m.metadata or {})["event_payload"]
        for m in fake.messages(CARDS)
        if (m.metadata or {}).get("event_type") == "rollbot_incident_group"
    ]


def test_three_replicas_post_one_card_per_incident_or_one_summary_and_resolve_them_all(
    make_bot: Callable[..., RollbotApp], fake_slack: FakeSlack
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
    chaos = random.Random(20260522)
    stop_at = set(chaos.sample(range(INCIDENTS), 2))
    for n in range(INCIDENTS):
        world.feed(workload(n, 2, failing=True))
        if n in stop_at:
            replicas.pop(chaos.randrange(len(replicas))).stop()
    eventually(
        lambda: len(summaries(fake_slack)) == 1 and len(summaries(fake_slack)[0]["incident_ids"]) == INCIDENTS,
        timeout=40,
        description="one summary card listing every incident",
    )
    assert len(cards(fake_slack)) <= 5, "only incidents that opened before the threshold have a card of their own"
    for n in range(INCIDENTS):
        world.feed(workload(n, 3, failing=False))  # a fixed version rolls out: superseded
    resolved = lambda: all(  # noqa: E731
        any(p["state"] == "resolved" for p in fake_slack_payloads(fake_slack, name)) for name in cards(fake_slack)
    )
    eventually(resolved, timeout=40, description="every incident with a card resolved")
    eventually(lambda: summaries(fake_slack)[0]["state"] == "resolved", timeout=40, description="the summary resolved")
    posted = cards(fake_slack)
    assert all(len(versions) == 1 for versions in posted.values()), "one card (one chat.postMessage) per incident"
    assert len(summaries(fake_slack)) == 1, "one summary card (one chat.postMessage) for the mass failure"


def fake_slack_payloads(fake: FakeSlack, name: str) -> list[dict[str, Any]]:
    """The current metadata of a workload's card (after its edits in place)."""
    return [
        (m.metadata or {})["event_payload"]
        for m in fake.messages(CARDS)
        if (m.metadata or {}).get("event_type") == "rollbot_incident"
        and (m.metadata or {})["event_payload"]["name"] == name
    ]
