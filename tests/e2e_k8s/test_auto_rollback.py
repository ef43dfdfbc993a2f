"""Automatic rollback end to end: kubesim with the real kubectl, real Redis, the bot built as in production (or
`rollbot serve` as a real process), and the fake Slack driven through the bot's signed endpoint.

Countdowns are seconds long here; the policy, its guardrails and the audit are the production ones.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from bot.app import RollbotApp
from sandbox.kubesim.registry import RegistryConfig
from sandbox.slack.driver import SlackDriver
from sandbox.slack.records import Message
from sandbox.slack.seed import ALICE, BOB, BOT_TOKEN, CAROL, DAVE, INCIDENT, SIGNING_SECRET
from sandbox.slack.server import FakeSlack
from tests.e2e_k8s.conftest import MISSING_IMAGES, KubeCluster, bot_settings, running_bot, start_cluster
from tests.e2e_slack.conftest import eventually, request_messages

REPO = Path(__file__).resolve().parents[2]
FAILING_FOR = 2.0
COUNTDOWN = 4.0
GOOD = "jocatalin/kubernetes-bootcamp:v1"
MISSING = "jocatalin/kubernetes-bootcamp:v10"
ALSO_MISSING = "jocatalin/kubernetes-bootcamp:broken"
AUTO = {"on": ["ErrImagePull", "ImagePullBackOff", "CrashLoopBackOff"], "countdown": f"{COUNTDOWN:g}s"}
CATALOG: dict[str, Any] = {
    "defaults": {
        "approvals": {"required": 1, "approvers": [ALICE, BOB, CAROL], "expires_after": "15m"},
        "kubernetes": {"kube_context": "sandbox"},
        "detect": {"channel": INCIDENT, "failing_for": f"{FAILING_FOR:g}s", "healthy_for": "2s"},
        "auto_rollback_limits": {"per_target": "1/1h", "per_context": "3/10m"},
    },
    "targets": {
        name: {"backend": "kubernetes", "kind": "Deployment", "name": name, "auto_rollback": AUTO}
        for name in ("bootcamp", "web-a", "web-b", "web-c", "web-d", "web-e")
    },
}
AUDIT_KEY = "rollbot:{rollbot}:audit"


@pytest.fixture
def registry() -> RegistryConfig:
    """The simulated registry, kept by the test so it can make a good image go bad later."""
    return RegistryConfig(missing=list(MISSING_IMAGES))


@pytest.fixture
def cluster(tmp_path: Path, registry: RegistryConfig) -> Iterator[KubeCluster]:
    sim, cluster = start_cluster(tmp_path / "cluster", registry)
    try:
        yield cluster
    finally:
        sim.stop()


@pytest.fixture
def countdown(request: pytest.FixtureRequest) -> str:
    """The targets' countdown; a test sets its own with `@pytest.mark.parametrize("countdown", …, indirect=True)`."""
    return str(getattr(request, "param", f"{COUNTDOWN:g}s"))


@pytest.fixture
def per_target(request: pytest.FixtureRequest) -> str:
    return str(getattr(request, "param", "1/1h"))


@pytest.fixture
def approvals(request: pytest.FixtureRequest) -> int:
    return int(getattr(request, "param", 0))


@pytest.fixture
def catalog(countdown: str, per_target: str, approvals: int) -> dict[str, Any]:
    document = copy.deepcopy(CATALOG)
    document["defaults"]["auto_rollback_limits"]["per_target"] = per_target
    for spec in document["targets"].values():
        spec["auto_rollback"] = {**spec["auto_rollback"], "countdown": countdown, "approvals": approvals}
    return document


@pytest.fixture
def catalog_path(tmp_path: Path, catalog: dict[str, Any]) -> Path:
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(catalog), encoding="utf-8")
    return path


@pytest.fixture
def bot(fake_slack: FakeSlack, redis_url: str, catalog_path: Path, cluster: KubeCluster) -> Iterator[RollbotApp]:
    settings = bot_settings(
        fake_slack, redis_url, catalog_path, cluster, rollout_timeout=timedelta(seconds=30), slack_budget_scale=60.0
    )
    with running_bot(settings) as app:
        yield app


def cards(fake: FakeSlack, name: str | None = None) -> list[Message]:
    found = [m for m in fake.messages(INCIDENT) if (m.metadata or {}).get("event_type") == "rollbot_incident"]
    return [m for m in found if name is None or payload(fake, m)["name"] == name]


def payload(fake: FakeSlack, card: Message) -> dict[str, Any]:
    return (fake.message(card.channel, card.ts).metadata or {})["event_payload"]  # type: ignore[no-any-return]


def card_text(fake: FakeSlack, card: Message) -> str:
    return fake.message(card.channel, card.ts).all_text()


def thread_lines(fake: FakeSlack, card: Message) -> list[str]:
    return [m.all_text() for m in fake.messages(INCIDENT, thread_ts=card.ts)]


def buttons(fake: FakeSlack, card: Message) -> list[str]:
    blocks = (fake.message(card.channel, card.ts).blocks) or []
    return [e["action_id"] for b in blocks if b.get("type") == "actions" for e in b.get("elements", [])]


def deploy(cluster: KubeCluster, name: str, replicas: int = 2) -> None:
    cluster.kubectl("create", "deployment", name, f"--image={GOOD}", f"--replicas={replicas}")
    cluster.kubectl("rollout", "status", f"deployment/{name}", "--timeout=60s")


def image_of(cluster: KubeCluster, name: str) -> str:
    result = cluster.kubectl("get", f"deployment/{name}", "-o", "jsonpath={.spec.template.spec.containers[0].image}")
    return result.stdout.strip()


def break_it(cluster: KubeCluster, name: str, image: str = MISSING) -> None:
    cluster.kubectl("set", "image", f"deployment/{name}", f"*={image}")


def the_card(fake: FakeSlack, name: str, revision: str, timeout: float = FAILING_FOR + 10) -> Message:
    def found() -> list[Message]:
        return [c for c in cards(fake, name) if payload(fake, c)["revision"] == revision]

    (card,) = fake.wait_for(found, timeout, description=f"the card of {name} revision {revision}")
    return card


def audit(redis_url: str) -> list[dict[str, str]]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    return [fields for _, fields in client.xrange(AUDIT_KEY) if "event" in fields]


def resolved(fake: FakeSlack, card: Message) -> bool:
    return payload(fake, card)["state"] == "resolved"


def test_a_countdown_ends_in_exactly_one_rollback_with_no_human_and_a_second_failure_is_skipped(
    cluster: KubeCluster, bot: RollbotApp, fake_slack: FakeSlack, redis_url: str
) -> None:
    deploy(cluster, "bootcamp")
    time.sleep(1)  # the watcher has listed the healthy Deployment
    break_it(cluster, "bootcamp")
    card = the_card(fake_slack, "bootcamp", "2")
    opened = payload(fake_slack, card)
    assert (opened["source"], opened["auto_state"]) == ("watch", "counting")
    assert opened["auto_due_at"]
    assert "Rolling back to revision 1 automatically at" in card_text(fake_slack, card)
    assert "rollbot_auto_cancel" in buttons(fake_slack, card)

    fake_slack.wait_for(lambda: resolved(fake_slack, card), COUNTDOWN + 40, description="rolled back by the policy")
    final = payload(fake_slack, card)
    assert (final["resolution"], final["auto_state"]) == ("rolled_back", "started")
    (request,) = request_messages(fake_slack)
    operation = request.metadata["event_payload"]  # type: ignore[index]
    assert (operation["source"], operation["incident_id"]) == ("policy", opened["incident_id"])
    assert operation["operation_id"] == final["operation_id"]
    assert image_of(cluster, "bootcamp") == GOOD
    stored = bot.store.get(operation["operation_id"])
    assert stored is not None
    assert stored.approvals == ()
    lines = thread_lines(fake_slack, card)
    assert any(line.startswith("watch: automatic rollback to revision 1 at") for line in lines)
    assert any(f"automatic rollback started as `{operation['operation_id']}`" in line for line in lines)
    entries = [e for e in audit(redis_url) if e.get("incident_id")]
    assert [(e["event"], e["incident_id"], e["source"]) for e in entries] == [
        ("auto_countdown", opened["incident_id"], "watch"),
        ("auto_started", opened["incident_id"], "watch"),
    ]
    # Never before the card's due time, and within a few sweeps after it.
    late = datetime.fromisoformat(entries[1]["at"]) - datetime.fromisoformat(opened["auto_due_at"])
    assert timedelta(0) <= late < timedelta(seconds=3)

    # The same target fails again within the hour: a plain card that says why, with its normal button.
    cluster.kubectl("rollout", "status", "deployment/bootcamp", "--timeout=60s")
    break_it(cluster, "bootcamp", ALSO_MISSING)
    again = the_card(fake_slack, "bootcamp", "4")
    skipped = payload(fake_slack, again)
    assert (skipped["auto_state"], skipped["auto_why"]) == (
        "skipped",
        "limit reached (1 automatic rollback per 1h for bootcamp)",
    )
    assert "automatic rollback skipped: limit reached" in card_text(fake_slack, again)
    assert buttons(fake_slack, again) == ["rollbot_incident_rollback"]
    time.sleep(1)
    assert len(request_messages(fake_slack)) == 1
    assert image_of(cluster, "bootcamp") == ALSO_MISSING


@pytest.mark.parametrize("approvals", [1], indirect=True)
def test_with_approvals_the_countdown_ends_in_a_request_that_waits_for_them(
    cluster: KubeCluster, slack: SlackDriver, fake_slack: FakeSlack
) -> None:
    deploy(cluster, "bootcamp")
    time.sleep(1)
    break_it(cluster, "bootcamp")
    card = the_card(fake_slack, "bootcamp", "2")
    assert "then it waits for 1 approval" in card_text(fake_slack, card)
    (request,) = fake_slack.wait_for(lambda: request_messages(fake_slack), COUNTDOWN + 15, description="the request")
    opened = request.metadata["event_payload"]  # type: ignore[index]
    assert (opened["phase"], opened["source"]) == ("awaiting_approval", "policy")
    assert "Requested by* the automatic rollback policy" in request.all_text()
    time.sleep(2)
    assert image_of(cluster, "bootcamp") == MISSING  # nobody approved yet
    slack.reaction_added(BOB, "white_check_mark", INCIDENT, request.ts)
    fake_slack.wait_for(lambda: resolved(fake_slack, card), 40, description="rolled back once approved")
    assert image_of(cluster, "bootcamp") == GOOD


@pytest.mark.parametrize("countdown", ["8s"], indirect=True)
def test_cancel_by_an_approver_stops_the_rollback_for_good(
    cluster: KubeCluster, slack: SlackDriver, fake_slack: FakeSlack
) -> None:
    deploy(cluster, "bootcamp")
    time.sleep(1)
    break_it(cluster, "bootcamp")
    card = the_card(fake_slack, "bootcamp", "2")
    assert payload(fake_slack, card)["auto_state"] == "counting"

    slack.block_action(DAVE, INCIDENT, card.ts, "rollbot_auto_cancel")
    fake_slack.wait_for(
        lambda: [e for e in fake_slack.ephemerals(user=DAVE) if "Only approvers of bootcamp" in e.all_text()],
        10,
        description="the refusal to a non-approver",
    )
    assert payload(fake_slack, card)["auto_state"] == "counting"
    slack.block_action(ALICE, INCIDENT, card.ts, "rollbot_auto_cancel")
    # The thread says so at once; the card follows at its next edit (at most one per 10 s).
    fake_slack.wait_for(
        lambda: any(f"automatic rollback cancelled by <@{ALICE}>" in line for line in thread_lines(fake_slack, card)),
        10,
        description="the cancel in the thread",
    )
    fake_slack.wait_for(lambda: payload(fake_slack, card)["auto_state"] == "cancelled", 15, description="cancelled")

    time.sleep(8 + 2)  # well past the due time
    assert request_messages(fake_slack) == []
    assert image_of(cluster, "bootcamp") == MISSING
    # A Slack client still showing the old card: the press reaches the bot, which says it is over.
    slack.block_action(BOB, INCIDENT, card.ts, "rollbot_auto_cancel", value=payload(fake_slack, card)["incident_id"])
    fake_slack.wait_for(
        lambda: [e for e in fake_slack.ephemerals(user=BOB) if "already cancelled" in e.all_text()],
        10,
        description="cancel is final",
    )


def test_a_breaker_trips_after_three_in_one_context_until_resumed(
    cluster: KubeCluster, bot: RollbotApp, slack: SlackDriver, fake_slack: FakeSlack, redis_url: str
) -> None:
    for name in ("web-a", "web-b", "web-c", "web-d", "web-e"):
        deploy(cluster, name, replicas=1)
    time.sleep(1)
    for name in ("web-a", "web-b", "web-c"):
        break_it(cluster, name)
    first_three = [the_card(fake_slack, name, "2") for name in ("web-a", "web-b", "web-c")]
    for card in first_three:
        fake_slack.wait_for(lambda card=card: resolved(fake_slack, card), COUNTDOWN + 40, description="rolled back")
    assert len(request_messages(fake_slack)) == 3

    break_it(cluster, "web-d")
    fourth = the_card(fake_slack, "web-d", "2")
    skipped = payload(fake_slack, fourth)
    assert skipped["auto_state"] == "skipped"
    assert skipped["auto_why"].startswith("the breaker of sandbox is tripped (3 automatic rollbacks within 10m")
    assert buttons(fake_slack, fourth) == ["rollbot_incident_rollback"]
    assert ("breaker_tripped", "sandbox") in [(e["event"], e.get("context")) for e in audit(redis_url)]

    slack.slash_command("auto status", user=DAVE, channel=INCIDENT)
    fake_slack.wait_for(
        lambda: [r for r in fake_slack.responses("commands", user=DAVE) if "auto resume sandbox" in r.text],
        10,
        description="the status names the tripped breaker",
    )
    slack.slash_command("auto resume sandbox", user=DAVE, channel=INCIDENT)
    fake_slack.wait_for(
        lambda: [r for r in fake_slack.responses("commands", user=DAVE) if "Only approvers" in r.text],
        10,
        description="a non-approver cannot resume",
    )
    slack.slash_command("auto resume sandbox", user=ALICE, channel=INCIDENT)
    fake_slack.wait_for(
        lambda: [r for r in fake_slack.responses("commands", user=ALICE) if "resumed in sandbox" in r.text],
        10,
        description="resumed",
    )
    break_it(cluster, "web-e")
    fifth = the_card(fake_slack, "web-e", "2")
    assert payload(fake_slack, fifth)["auto_state"] == "counting"
    assert [(e["event"], e["actor"]) for e in audit(redis_url) if e["event"] == "breaker_resumed"] == [
        ("breaker_resumed", ALICE)
    ]


@pytest.mark.parametrize("per_target", ["5/1h"], indirect=True)  # so the limit is not what stops it
def test_a_revision_made_by_the_automatic_rollback_is_not_rolled_back_again_when_it_fails(
    cluster: KubeCluster, bot: RollbotApp, fake_slack: FakeSlack, registry: RegistryConfig
) -> None:
    deploy(cluster, "bootcamp")
    time.sleep(1)
    break_it(cluster, "bootcamp")
    card = the_card(fake_slack, "bootcamp", "2")
    # While it counts down, the good image turns bad: its pods crash once they are replaced.
    registry.crashloop.append(GOOD)
    cluster.kubectl("delete", "pods", "-l", "app=bootcamp", "--wait=false")
    fake_slack.wait_for(
        lambda: payload(fake_slack, card)["auto_state"] == "started", COUNTDOWN + 20, description="it fired"
    )
    again = the_card(fake_slack, "bootcamp", "3", timeout=FAILING_FOR + 40)
    refused = payload(fake_slack, again)
    assert refused["auto_state"] == "skipped"
    assert refused["auto_why"].startswith("revision 3 was made by rollbot's")
    assert refused["auto_why"].endswith("rolling it back again automatically could loop")
    assert len(request_messages(fake_slack)) == 1


# --- a real process, restarted during a countdown ---------------------------------------------------------------


class _Serve:
    """`rollbot serve` (the Procfile's `python -m bot`), as a process we can SIGKILL."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log
        with log.open("a", encoding="utf-8") as out:
            self.process = subprocess.Popen([sys.executable, "-m", "bot"], cwd=REPO, env=env, stdout=out, text=True)
        eventually(lambda: self._said("serving http"), 30, description="rollbot serve listening")

    def _said(self, event: str) -> bool:
        for line in self.log.read_text(encoding="utf-8").splitlines():
            try:
                if json.loads(line).get("event") == event:
                    return True
            except ValueError:
                continue
        return False

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


@pytest.fixture
def serve(
    fake_slack: FakeSlack, redis_url: str, catalog_path: Path, cluster: KubeCluster, tmp_path: Path
) -> Iterator[Callable[[], _Serve]]:
    started: list[_Serve] = []
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")} | {
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": fake_slack.api_url,
        "REDIS_URL": redis_url,
        "ROLLBOT_CONFIG": str(catalog_path),
        "KUBECONFIG": str(cluster.kubeconfig),
        "ROLLBOT_HOST": "127.0.0.1",
        "ROLLBOT_PORT": "0",
        "ROLLBOT_SWEEP_INTERVAL": "1",
        "ROLLBOT_DETECT_LEASE": "3s",
        "ROLLBOT_ROLLOUT_TIMEOUT": "30s",
        "ROLLBOT_SLACK_BUDGET_SCALE": "60",
    }

    def start() -> _Serve:
        process = _Serve(env, tmp_path / f"serve-{len(started)}.log")
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


@pytest.mark.parametrize("countdown", ["12s"], indirect=True)
def test_the_only_replica_restarted_during_a_countdown_still_fires_it_once(
    cluster: KubeCluster, serve: Callable[[], _Serve], fake_slack: FakeSlack
) -> None:
    first = serve()
    deploy(cluster, "bootcamp")
    time.sleep(2)  # the watcher holds the context and has listed the healthy Deployment
    break_it(cluster, "bootcamp")
    card = the_card(fake_slack, "bootcamp", "2", timeout=FAILING_FOR + 15)
    assert payload(fake_slack, card)["auto_state"] == "counting"
    # Killed once the card is on record (its thread's first line follows that write), mid-countdown.
    fake_slack.wait_for(lambda: thread_lines(fake_slack, card), 10, description="the card on record")
    first.kill()
    serve()
    fake_slack.wait_for(lambda: resolved(fake_slack, card), 12 + 60, description="rolled back after the restart")
    assert payload(fake_slack, card)["resolution"] == "rolled_back"
    assert len(request_messages(fake_slack)) == 1
    assert image_of(cluster, "bootcamp") == GOOD
    assert len(cards(fake_slack, "bootcamp")) == 1
