"""Failure detection end to end: kubesim, the real Kubernetes watcher and backend, the real kubectl, real Redis,
and the fake Slack driven through the bot's signed endpoint.

The bot is built by `build_app` as in production (its watchers are `build_watchers`); kubectl breaks workloads
the way people do. Images matching `*:v10` cannot be pulled; `*:never-ready` runs but never passes readiness.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.app import RollbotApp
from sandbox.faults import FaultClient
from sandbox.kubesim.cluster import KubeSim
from sandbox.kubesim.registry import RegistryConfig
from sandbox.slack.driver import SlackDriver
from sandbox.slack.records import Message
from sandbox.slack.seed import ALICE, BOB, CAROL, INCIDENT
from sandbox.slack.server import FakeSlack
from tests._policy import require_tool
from tests.conformance.conftest import KUBECTL, CliRunner
from tests.e2e_k8s.conftest import MISSING_IMAGES, POD_READY_SECONDS, KubeCluster, bot_settings, running_bot
from tests.e2e_slack.conftest import request_messages

FAILING_FOR = 3.0
CATALOG: dict[str, Any] = {
    "defaults": {
        "approvals": {"required": 1, "approvers": [ALICE, BOB, CAROL], "expires_after": "15m"},
        "kubernetes": {"kube_context": "sandbox", "allowed_namespaces": ["default"]},
        "detect": {"channel": INCIDENT, "failing_for": f"{FAILING_FOR:g}s", "healthy_for": "2s"},
    },
    "targets": {
        "bootcamp": {"backend": "kubernetes", "kind": "Deployment", "name": "kubernetes-bootcamp"},
    },
    "watch": [{"backend": "kubernetes", "kube_context": "sandbox", "namespaces": ["default"]}],
}
GOOD = "jocatalin/kubernetes-bootcamp:v1"
MISSING = "jocatalin/kubernetes-bootcamp:v10"
FIXED = "jocatalin/kubernetes-bootcamp:v2"
NEVER_READY = "jocatalin/kubernetes-bootcamp:never-ready"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[KubeCluster]:
    require_tool("kubectl", KUBECTL.exists(), f"the real kubectl at {KUBECTL}")
    registry = RegistryConfig(missing=MISSING_IMAGES, unready=["*:never-ready"])
    sim = KubeSim(pod_ready_seconds=POD_READY_SECONDS, registry=registry).start()
    kubeconfig = tmp_path / "kubeconfig"
    sim.write_kubeconfig(kubeconfig)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path / "home"),
        "KUBECONFIG": str(kubeconfig),
        "KUBECACHEDIR": str(tmp_path / "kube-cache"),
    }
    try:
        yield KubeCluster(sim, kubeconfig, CliRunner(KUBECTL, env, tmp_path))
    finally:
        sim.stop()


@pytest.fixture
def bot(fake_slack: FakeSlack, redis_url: str, tmp_path: Path, cluster: KubeCluster) -> Iterator[RollbotApp]:
    catalog_path = tmp_path / "catalog.yaml"
    catalog_path.write_text(yaml.safe_dump(CATALOG), encoding="utf-8")
    settings = bot_settings(
        fake_slack, redis_url, catalog_path, cluster, rollout_timeout=timedelta(seconds=30), slack_budget_scale=60.0
    )
    with running_bot(settings) as app:
        yield app


def cards(fake: FakeSlack) -> list[Message]:
    return [m for m in fake.messages(INCIDENT) if (m.metadata or {}).get("event_type") == "rollbot_incident"]


def card_payload(fake: FakeSlack, card: Message) -> dict[str, Any]:
    return (fake.message(card.channel, card.ts).metadata or {})["event_payload"]  # type: ignore[no-any-return]


def deploy(cluster: KubeCluster, name: str, *extra: str, replicas: int = 2) -> None:
    kubectl = cluster.kubectl
    kubectl("create", "deployment", name, f"--image={GOOD}", f"--replicas={replicas}", *extra)
    kubectl("rollout", "status", f"deployment/{name}", "--timeout=60s")


def test_a_missing_image_makes_one_card_whose_button_rolls_back_and_verifies(
    cluster: KubeCluster, bot: RollbotApp, slack: SlackDriver, fake_slack: FakeSlack
) -> None:
    deploy(cluster, "kubernetes-bootcamp")
    time.sleep(1)  # the watcher has listed the healthy Deployment
    broken_at = time.monotonic()
    cluster.kubectl("set", "image", "deployment/kubernetes-bootcamp", f"kubernetes-bootcamp={MISSING}")
    (card,) = fake_slack.wait_for(lambda: cards(fake_slack), FAILING_FOR + 5, description="the incident card")
    assert time.monotonic() - broken_at <= FAILING_FOR + 5
    opened = card_payload(fake_slack, card)
    assert (opened["target"], opened["revision"], opened["state"]) == ("bootcamp", "2", "open")
    assert opened["reason"] in ("ErrImagePull", "ImagePullBackOff")
    assert MISSING in fake_slack.message(INCIDENT, card.ts).all_text()

    slack.block_action(ALICE, INCIDENT, card.ts, "rollbot_incident_rollback")
    slack.block_action(ALICE, INCIDENT, card.ts, "rollbot_incident_rollback")  # a double click
    (request,) = fake_slack.wait_for(lambda: request_messages(fake_slack), 10, description="the request")
    operation_id = request.metadata["event_payload"]["operation_id"]  # type: ignore[index]
    slack.reaction_added(BOB, "white_check_mark", INCIDENT, request.ts)

    fake_slack.wait_for(
        lambda: card_payload(fake_slack, card)["state"] == "resolved", 60, description="the card resolved"
    )
    resolved = card_payload(fake_slack, card)
    assert (resolved["resolution"], resolved["operation_id"]) == ("rolled_back", operation_id)
    image = cluster.kubectl(
        "get", "deployment/kubernetes-bootcamp", "-o", "jsonpath={.spec.template.spec.containers[0].image}"
    )
    assert image.stdout.strip() == GOOD

    def verification() -> str | None:
        operation = bot.store.get(operation_id)
        return operation.verification if operation is not None else None

    fake_slack.wait_for(lambda: verification() == "healthy", 30, description="verification healthy")
    assert len(cards(fake_slack)) == 1
    assert len(request_messages(fake_slack)) == 1


def test_a_never_ready_image_past_its_progress_deadline_opens_a_progress_deadline_card(
    cluster: KubeCluster, bot: RollbotApp, fake_slack: FakeSlack
) -> None:
    deploy(cluster, "web")
    cluster.kubectl("patch", "deployment/web", "-p", '{"spec": {"progressDeadlineSeconds": 5}}')
    cluster.kubectl("set", "image", "deployment/web", f"kubernetes-bootcamp={NEVER_READY}")
    (card,) = fake_slack.wait_for(lambda: cards(fake_slack), 5 + FAILING_FOR + 10, description="the card")
    opened = card_payload(fake_slack, card)
    assert (opened["target"], opened["reason"]) == ("deploy/web -n default", "ProgressDeadlineExceeded")


def test_a_paused_deployment_and_a_scaling_make_no_card(
    cluster: KubeCluster, bot: RollbotApp, fake_slack: FakeSlack
) -> None:
    deploy(cluster, "paused")
    deploy(cluster, "scaled")
    cluster.kubectl("rollout", "pause", "deployment/paused")
    cluster.kubectl("set", "image", "deployment/paused", f"kubernetes-bootcamp={MISSING}")
    cluster.kubectl("scale", "deployment/scaled", "--replicas=5")
    cluster.kubectl("rollout", "status", "deployment/scaled", "--timeout=60s")
    cluster.kubectl("scale", "deployment/scaled", "--replicas=1")
    time.sleep(FAILING_FOR + 5)
    assert cards(fake_slack) == []


def test_a_relist_after_410_gone_neither_duplicates_open_incidents_nor_resolves_them_wrongly(
    cluster: KubeCluster, bot: RollbotApp, fake_slack: FakeSlack
) -> None:
    for name in ("web", "api"):
        deploy(cluster, name)
        cluster.kubectl("set", "image", f"deployment/{name}", f"kubernetes-bootcamp={MISSING}")
    fake_slack.wait_for(lambda: len(cards(fake_slack)) == 2, FAILING_FOR + 10, description="two cards")
    web, api = sorted(cards(fake_slack), key=lambda card: card_payload(fake_slack, card)["name"], reverse=True)

    # The watch ends, and resuming it is answered 410 Gone: the events of the gap are lost, only a relist helps.
    faults = FaultClient(cluster.sim.url)
    faults.add(method="GET", path="/apis/apps/v1/namespaces/default/deployments", watch=True, status=410, count=1)
    cluster.sim.store.stop_all_watches()
    # In the gap: api is fixed by a newer revision, web stays broken.
    cluster.kubectl("set", "image", "deployment/api", f"kubernetes-bootcamp={FIXED}")
    fake_slack.wait_for(
        lambda: card_payload(fake_slack, api)["state"] == "resolved", 20, description="api resolved by the relist"
    )
    assert [rule["hits"] for rule in faults.list()] == [1], "the watcher relisted after the 410"
    assert card_payload(fake_slack, api)["resolution"] == "superseded"

    # web, still failing on the same revision, keeps its one open card through the relist and the holds after it.
    time.sleep(FAILING_FOR + 2)
    assert card_payload(fake_slack, web)["state"] == "open"
    assert len(cards(fake_slack)) == 2

    cluster.kubectl("set", "image", "deployment/web", f"kubernetes-bootcamp={FIXED}")
    fake_slack.wait_for(lambda: card_payload(fake_slack, web)["state"] == "resolved", 20, description="web resolved")
    assert len(cards(fake_slack)) == 2
