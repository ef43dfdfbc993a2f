"""Big rollbacks on the real backends keep their thread short (issue [load], item 3), counted at the fake Slack.

An ECS service with 100 tasks (moto and the rollout driver, which starts and stops one task per tick and writes
ECS's own service events) and a Deployment with 50 replicas (kubesim, whose pods really fail to pull or crash)
each roll back through the signed Slack driver. From the command to the final line the bot makes at most 15
Slack writes, the service events are summarised and the pod problems counted per reason, never one per unit.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.app import RollbotApp, build_app
from sandbox.aws import AwsWorld
from sandbox.aws.scenarios import myservice_revisions, seed_service
from sandbox.slack.driver import SlackDriver
from sandbox.slack.seed import BOB, INCIDENT, SIGNING_SECRET
from sandbox.slack.server import FakeSlack
from tests.e2e_slack.conftest import bot_settings, request_rollback, thread_texts, wait_for_phase
from tests.e2e_slack.real_world import BOOTCAMP, CATALOG, ROLLOUT_WAIT, BrokenStorefront, bootcamp_manifest

pytestmark = [pytest.mark.needs_helm]

# The goal of the issue: posts, updates, reactions and ephemerals for one rollback, from request to final line.
MAX_WRITES_PER_ROLLBACK = 15
WRITES = ("chat.postMessage", "chat.update", "reactions.add", "chat.postEphemeral")
ECS_TASKS = 100
REPLICAS = 50
# The driver starts and stops one task per tick: 100 tasks take about 15 s, long enough for a digest line.
ECS_TICK_SECONDS = 0.15
# How long the bot watches the Deployment whose rollback cannot succeed (its revision 1 crashes).
DEPLOYMENT_TIMEOUT = timedelta(seconds=15)


@pytest.fixture(scope="module")
def aws() -> Iterator[AwsWorld]:
    with AwsWorld() as running:
        yield running


@pytest.fixture
def world(tmp_path: Path, aws: AwsWorld, monkeypatch: pytest.MonkeyPatch) -> Iterator[BrokenStorefront]:
    world = BrokenStorefront(tmp_path, aws, monkeypatch)
    try:
        yield world
    finally:
        world.close()


@pytest.fixture
def make_bot(
    fake_slack: FakeSlack, redis_url: str, tmp_path: Path, world: BrokenStorefront
) -> Iterator[Callable[..., RollbotApp]]:
    started: list[RollbotApp] = []
    catalog_path = tmp_path / "catalog.yaml"
    catalog_path.write_text(yaml.safe_dump(CATALOG), encoding="utf-8")

    def make(**overrides: Any) -> RollbotApp:
        settings = bot_settings(fake_slack, redis_url, catalog_path, **(world.bot_settings() | overrides))
        app = build_app(settings)
        started.append(app)
        return app.start()

    yield make
    for app in reversed(started):
        app.stop()


def bot_writes(fake: FakeSlack) -> list[str]:
    """Every write the bot made to Slack in this test, as `method: text`."""
    return [f"{call.method}: {str(call.args.get('text', ''))[:90]}" for call in fake.calls() if call.method in WRITES]


def roll_back(fake: FakeSlack, bot: RollbotApp, target: str, phase: str) -> tuple[str, list[str]]:
    """`/rollback target`, approved; the thread's text once its final line is posted, and the bot's writes."""
    with SlackDriver(bot.events_url, SIGNING_SECRET, fake) as slack:
        request = request_rollback(slack, fake, bot, target)
        slack.reaction_added(BOB, "white_check_mark", INCIDENT, request.ts)
        wait_for_phase(fake, request, phase, timeout=ROLLOUT_WAIT + DEPLOYMENT_TIMEOUT.total_seconds())
        # The final line is posted right after the phase is shown; the progress message's last edit follows it.
        fake.wait_for(
            lambda: any(line.startswith(("✅ rolled back", "❌")) for line in thread_texts(fake, request)),
            ROLLOUT_WAIT,
            description="the final line",
        )
        fake.wait_for(
            lambda: any(
                line.startswith((f":large_green_circle: Rollout of {target}", f":red_circle: Rollout of {target}"))
                for line in thread_texts(fake, request)
            ),
            ROLLOUT_WAIT,
            description="the progress message in its final state",
        )
        return "\n".join(thread_texts(fake, request)), bot_writes(fake)


def test_an_ecs_service_of_a_hundred_tasks_rolls_back_within_fifteen_writes(fake_slack, make_bot, world) -> None:
    ecs = world.aws.client("ecs")
    seed_service(ecs, cluster="default", service="myservice", revisions=myservice_revisions(), desired=ECS_TASKS)
    world.aws.driver.run_in_background(ECS_TICK_SECONDS)
    bot = make_bot()

    text, writes = roll_back(fake_slack, bot, "myservice", "succeeded")

    assert world.myservice_primary() == "myservice:3 COMPLETED"
    assert world.myservice()["runningCount"] == ECS_TASKS
    assert len(writes) <= MAX_WRITES_PER_ROLLBACK, writes
    summaries = re.findall(r"started (\d+) tasks, stopped (\d+)", text)
    assert summaries, text
    assert "(task " not in text  # tasks are counted, never listed one by one
    assert "✅ rolled back to revision 3" in text


def test_a_deployment_of_fifty_replicas_counts_its_pod_problems_within_fifteen_writes(
    fake_slack, make_bot, world
) -> None:
    image = "registry.example/crasher"
    world.kubectl("apply", "-f", "-", stdin=bootcamp_manifest(f"{image}:v1", REPLICAS))
    world.kubectl("set", "image", BOOTCAMP, f"kubernetes-bootcamp={image}:v10")
    bot = make_bot(rollout_timeout=DEPLOYMENT_TIMEOUT)

    text, writes = roll_back(fake_slack, bot, "bootcamp", "failed")

    assert len(writes) <= MAX_WRITES_PER_ROLLBACK, writes
    counted = re.search(r":warning: (\d+) pods CrashLoopBackOff: back-off", text)
    assert counted, text
    assert 1 < int(counted[1]) <= REPLICAS
    # Pods are counted per reason, never listed one by one: a line quotes one pod's message as the example.
    named = set(re.findall(r"kubernetes-bootcamp-[0-9a-f]+-[0-9a-z]{5}\b", text))
    assert len(named) <= 3, named
    final = next(line for line in text.splitlines() if line.startswith("❌ rollback failed: timed out after 15s"))
    stuck = re.search(r"; (\d+) pods CrashLoopBackOff \(back-off", final)
    assert stuck, final
    assert 1 < int(stuck[1]) <= REPLICAS
    assert " more" not in final, final
    assert world.bootcamp().image == "v1"
