"""A mass failure end to end: eight Deployments broken within a minute in one channel (issue #13 item 5).

kubesim with the real Kubernetes watcher and backend, the real kubectl, real Redis, the fake Slack driven through
the bot's signed endpoint, and a bot built by `build_app` as in production. Images matching `*:v10` cannot be
pulled. The design under test (ADR 0019): the five incidents that open before the threshold is crossed keep
their own card, edited to link to the summary; the sixth forms the group, and it and every later one post no
card of their own.
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.app import RollbotApp
from sandbox.slack.driver import SlackDriver
from sandbox.slack.records import Message
from sandbox.slack.seed import ALICE, BOB, CAROL, INCIDENT
from sandbox.slack.server import FakeSlack
from tests.e2e_k8s.conftest import KubeCluster, bot_settings, running_bot
from tests.e2e_slack.conftest import request_messages

FAILING_FOR = 3.0
BROKEN = [f"app-{n}" for n in range(1, 9)]
CATALOG: dict[str, Any] = {
    "defaults": {
        "approvals": {"required": 1, "approvers": [ALICE, BOB, CAROL], "expires_after": "15m"},
        "kubernetes": {"kube_context": "sandbox", "allowed_namespaces": ["default"]},
        "detect": {"channel": INCIDENT, "failing_for": f"{FAILING_FOR:g}s", "healthy_for": "2s"},
    },
    "targets": {"app-1": {"backend": "kubernetes", "kind": "Deployment", "name": "app-1"}},
    "watch": [{"backend": "kubernetes", "kube_context": "sandbox", "namespaces": ["default"]}],
}
GOOD = "jocatalin/kubernetes-bootcamp:v1"
MISSING = "jocatalin/kubernetes-bootcamp:v10"


@pytest.fixture
def bot(fake_slack: FakeSlack, redis_url: str, tmp_path: Path, cluster: KubeCluster) -> Iterator[RollbotApp]:
    catalog_path = tmp_path / "catalog.yaml"
    catalog_path.write_text(yaml.safe_dump(CATALOG), encoding="utf-8")
    settings = bot_settings(
        fake_slack, redis_url, catalog_path, cluster, rollout_timeout=timedelta(seconds=60), slack_budget_scale=60.0
    )
    with running_bot(settings) as app:
        yield app


def posted(fake: FakeSlack, event_type: str) -> list[Message]:
    return [m for m in fake.messages(INCIDENT) if (m.metadata or {}).get("event_type") == event_type]


def now_shown(fake: FakeSlack, message: Message) -> Message:
    return fake.message(message.channel, message.ts)


def shown_payload(fake: FakeSlack, message: Message) -> dict[str, Any]:
    return (now_shown(fake, message).metadata or {})["event_payload"]  # type: ignore[no-any-return]


def buttons(fake: FakeSlack, message: Message) -> list[dict[str, Any]]:
    blocks = now_shown(fake, message).blocks or []
    return [e for b in blocks if b.get("type") == "actions" for e in b.get("elements", [])]


def metric_total(bot: RollbotApp, name: str) -> float:
    """The sum of a metric's samples as `/metrics` shows it."""
    with urllib.request.urlopen(f"{bot.url}/metrics", timeout=5) as response:  # noqa: S310 - http to loopback
        text = response.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def image_of(cluster: KubeCluster, name: str) -> str:
    jsonpath = "jsonpath={.spec.template.spec.containers[0].image}"
    return cluster.kubectl("get", f"deployment/{name}", "-o", jsonpath).stdout.strip()


def test_eight_broken_deployments_make_one_summary_card_whose_button_rolls_all_back_with_one_approval(
    cluster: KubeCluster, bot: RollbotApp, slack: SlackDriver, fake_slack: FakeSlack
) -> None:
    for name in BROKEN:
        cluster.kubectl("create", "deployment", name, f"--image={GOOD}", "--replicas=1")
    for name in BROKEN:
        cluster.kubectl("rollout", "status", f"deployment/{name}", "--timeout=60s")
    time.sleep(1)  # the watcher has listed the healthy Deployments
    for name in BROKEN:  # within a few seconds: well inside the minute
        cluster.kubectl("set", "image", f"deployment/{name}", f"kubernetes-bootcamp={MISSING}")

    (summary,) = fake_slack.wait_for(
        lambda: posted(fake_slack, "rollbot_incident_group"), FAILING_FOR + 20, description="the summary card"
    )
    fake_slack.wait_for(
        lambda: len(shown_payload(fake_slack, summary)["incident_ids"]) == len(BROKEN),
        30,
        description="all eight incidents on the summary card",
    )
    group = shown_payload(fake_slack, summary)
    assert group["state"] == "open"
    (button,) = buttons(fake_slack, summary)
    assert button["action_id"] == "rollbot_incident_group_rollback"
    assert button["value"] == group["group_id"]
    assert button["text"]["text"] == "Roll back all 8"
    assert "*new image tag `v10`* (8)" in now_shown(fake_slack, summary).all_text()

    assert metric_total(bot, "rollbot_incidents_opened_total") == len(BROKEN)  # on a card or on the summary
    assert metric_total(bot, "rollbot_detection_latency_seconds_count") == len(BROKEN)
    # The five that opened before the threshold keep their card, edited (within 10 s) to link to the summary.
    cards = posted(fake_slack, "rollbot_incident")
    assert len(cards) == 5
    fake_slack.wait_for(
        lambda: (
            all(shown_payload(fake_slack, card).get("group_id") == group["group_id"] for card in cards)
            and not any(buttons(fake_slack, card) for card in cards)
        ),
        30,
        description="the early cards linked to the summary, without their own button",
    )

    slack.block_action(ALICE, INCIDENT, summary.ts, "rollbot_incident_group_rollback")
    slack.block_action(ALICE, INCIDENT, summary.ts, "rollbot_incident_group_rollback")  # a double click
    (request,) = fake_slack.wait_for(lambda: request_messages(fake_slack), 15, description="the batch request")
    operation = request.metadata["event_payload"]  # type: ignore[index]
    assert len(operation["members"]) == len(BROKEN)
    assert bot.store.get(operation["operation_id"]).requester == ALICE  # type: ignore[union-attr]
    slack.reaction_added(BOB, "white_check_mark", INCIDENT, request.ts)

    fake_slack.wait_for(
        lambda: shown_payload(fake_slack, summary)["state"] == "resolved", 120, description="the summary resolved"
    )
    assert [image_of(cluster, name) for name in BROKEN] == [GOOD] * len(BROKEN)
    assert not buttons(fake_slack, summary)
    fake_slack.wait_for(
        lambda: all(shown_payload(fake_slack, card)["state"] == "resolved" for card in cards),
        30,
        description="the early cards resolved",
    )
    assert all(shown_payload(fake_slack, card)["resolution"] == "rolled_back" for card in cards)
    assert len(posted(fake_slack, "rollbot_incident_group")) == 1
    assert len(posted(fake_slack, "rollbot_incident")) == 5
    assert len(request_messages(fake_slack)) == 1
