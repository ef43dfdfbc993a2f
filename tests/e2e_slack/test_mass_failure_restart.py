"""A mass failure's summary card survives a restart: the next bot finds the group in Redis and edits the same card.

In-process `build_app` bots on one real Redis and the fake Slack; their watchers are fed what a real watcher would
see (`WatchedWorld`). The first bot sees six Deployments fail and posts the summary; it stops; a second bot takes
the watch over, a seventh Deployment fails within the two minutes, and it joins the same card (edited in place).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.app import RollbotApp
from bot.core.catalog import BackendKind
from sandbox.slack.server import FakeSlack
from tests.e2e_slack.conftest import CATALOG, eventually
from tests.e2e_slack.test_mass_failure_replicas import CARDS, workload
from tests.fakes.watcher import FakeWatcher, WatchedWorld


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
def catalog_path(tmp_path: Path) -> Path:
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(_document()), encoding="utf-8")
    return path


def posted(fake: FakeSlack, event_type: str) -> list[dict[str, Any]]:
    """The current metadata of every message of this type posted in the cards' channel."""
    return [
        (m.metadata or {})["event_payload"]
        for m in fake.messages(CARDS)
        if (m.metadata or {}).get("event_type") == event_type
    ]


def test_a_restarted_bot_adds_a_late_incident_to_the_same_summary_card(
    make_bot: Callable[..., RollbotApp], fake_slack: FakeSlack
) -> None:
    world = WatchedWorld()
    first = make_bot(replica_id="first", watchers={BackendKind.KUBERNETES: FakeWatcher(world)})
    for n in range(6):
        world.feed(workload(n, 2, failing=True))
    eventually(
        lambda: [len(p["incident_ids"]) for p in posted(fake_slack, "rollbot_incident_group")] == [6],
        timeout=20,
        description="the summary of six",
    )
    first.stop()

    make_bot(replica_id="second", watchers={BackendKind.KUBERNETES: FakeWatcher(world)})
    world.feed(workload(6, 2, failing=True))
    eventually(
        lambda: [len(p["incident_ids"]) for p in posted(fake_slack, "rollbot_incident_group")] == [7],
        timeout=30,
        description="the seventh on the same summary card",
    )
    assert len(posted(fake_slack, "rollbot_incident")) <= 5
    assert "svc-6" not in {p["name"] for p in posted(fake_slack, "rollbot_incident")}
