"""Batch rollbacks on the real backends, through the signed Slack driver (issue [load], acceptance).

`/rollback storefront` names a Kubernetes Deployment (kubesim, read back with kubectl), a Helm release (the real
helm against kubesim) and an ECS service (moto with the rollout driver). One approval rolls all three back; each
backend's own view must then show its previous revision. A busy member starts nothing, a member that really
fails does not stop the others, and a dry run or an explicit revision changes nothing anywhere. Replicas killed
as a container dies (`rollbot serve` in its own session) are taken over: mid-batch, and mid-`helm rollback --wait`
(a single release, whose rollback must wait for new pods), where helm dies too and leaves its record pending.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.adapters.redis_store import RedisOperationStore
from bot.app import RollbotApp, build_app
from bot.core.operations import BatchMember, Phase
from sandbox.aws import FAIL, HANG, SUCCEED, AwsWorld
from sandbox.faults import FaultClient
from sandbox.slack.driver import SlackDriver
from sandbox.slack.seed import ALICE, BOB, BOT_TOKEN, INCIDENT, SIGNING_SECRET
from sandbox.slack.server import FakeSlack
from tests.e2e_slack.conftest import (
    WAIT,
    bot_settings,
    eventually,
    request_messages,
    request_rollback,
    wait_for_phase,
    wait_for_thread_line,
)
from tests.e2e_slack.real_world import (
    CATALOG,
    MEMBERS,
    POD_READY_SECONDS,
    ROLLOUT_WAIT,
    BrokenStorefront,
    DeploymentView,
    ServedReplica,
)
from tests.e2e_slack.test_commands import _reply_to

pytestmark = [pytest.mark.needs_helm]


@pytest.fixture(scope="module")
def aws() -> Iterator[AwsWorld]:
    with AwsWorld() as running:
        yield running


@pytest.fixture
def world(
    request: pytest.FixtureRequest, tmp_path: Path, aws: AwsWorld, monkeypatch: pytest.MonkeyPatch
) -> Iterator[BrokenStorefront]:
    """`@pytest.mark.parametrize("world", [seconds], indirect=True)` makes pods take that long to become Ready."""
    world = BrokenStorefront(tmp_path, aws, monkeypatch, getattr(request, "param", POD_READY_SECONDS))
    try:
        yield world
    finally:
        world.close()


@pytest.fixture
def catalog_path(tmp_path: Path) -> Path:
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(CATALOG), encoding="utf-8")
    return path


@pytest.fixture
def make_bot(
    fake_slack: FakeSlack, redis_url: str, catalog_path: Path, world: BrokenStorefront
) -> Iterator[Callable[..., RollbotApp]]:
    """Bots built by `build_app` exactly as in production: the real backends, pointed at this world."""
    started: list[RollbotApp] = []

    def make(**overrides: Any) -> RollbotApp:
        settings = bot_settings(fake_slack, redis_url, catalog_path, **(world.bot_settings() | overrides))
        app = build_app(settings)
        started.append(app)
        return app.start()

    yield make
    for app in reversed(started):
        app.stop()


@pytest.fixture
def bot(make_bot: Callable[..., RollbotApp]) -> RollbotApp:
    return make_bot()


@pytest.fixture
def slack(bot: RollbotApp, fake_slack: FakeSlack) -> Iterator[SlackDriver]:
    with SlackDriver(bot.events_url, SIGNING_SECRET, fake_slack) as driver:
        yield driver


class StoreView:
    """Just enough of a RollbotApp for `request_rollback` when the bot is another process: the shared Redis."""

    def __init__(self, redis_url: str) -> None:
        from bot.app import SystemClock

        self.store = RedisOperationStore.from_url(redis_url, SystemClock())

    def member(self, name: str, request: Any) -> BatchMember:
        operation = self.store.get(request.operation.id)
        assert operation is not None
        found = operation.member(name)
        assert found is not None
        return found


def progress_message(fake: FakeSlack, request: Any) -> str:
    """The batch's one progress message in the thread, as it reads now."""
    found = [m for m in fake.messages(request.channel, thread_ts=request.ts) if "Batch rollout" in m.all_text()]
    assert len(found) == 1, [m.all_text() for m in found]
    return fake.message(request.channel, found[0].ts).all_text()


def wait_for_progress(fake: FakeSlack, request: Any, containing: str) -> str:
    shown: str = fake.wait_for(
        lambda: containing in (text := progress_message(fake, request)) and text,
        WAIT,
        description=f"the batch progress message showing {containing!r}",
    )
    return shown


def members_of(message: Any) -> list[tuple[str, str, int, int]]:
    members = message.metadata["event_payload"]["members"]
    return [(m["target"], m["phase"], m["from_revision"], m["to_revision"]) for m in members]


def test_a_group_across_kubernetes_helm_and_ecs_rolls_back_with_one_approval(slack, fake_slack, bot, world) -> None:
    world.break_everything()
    request = request_rollback(slack, fake_slack, bot, "storefront --reason 'bad base image'")
    payload = request.message.metadata["event_payload"]
    assert payload["batch"] is True
    assert payload["targets"] == MEMBERS
    assert members_of(request.message) == [
        ("bootcamp", "awaiting_approval", 2, 1),
        ("workshop", "awaiting_approval", 2, 1),
        ("myservice", "awaiting_approval", 4, 3),
    ]
    shown = request.message.all_text()
    assert "kubernetes-bootcamp:v10` → `gcr.io/google-samples/kubernetes-bootcamp:v1" in shown
    assert "registry.example.com/myservice:1.3.0` → `registry.example.com/myservice:1.2.0" in shown

    slack.reaction_added(BOB, "white_check_mark", INCIDENT, request.ts)

    final = wait_for_phase(fake_slack, request, "succeeded", timeout=ROLLOUT_WAIT)
    assert members_of(final) == [
        ("bootcamp", "succeeded", 2, 1),
        ("workshop", "succeeded", 2, 1),
        ("myservice", "succeeded", 4, 3),
    ]
    # Each backend's own view: kubectl, helm and ECS all show the previous revision running.
    assert world.bootcamp() == DeploymentView(revision=3, image="v1", generation=3)
    assert world.bootcamp_rolled_out()
    assert world.workshop()[-1] == (3, "deployed", "Rollback to 1")
    assert world.myservice_primary() == "myservice:3 COMPLETED"
    thread = wait_for_thread_line(fake_slack, request, "all 3 targets rolled back")
    for name, revision in (("bootcamp", 1), ("workshop", 1), ("myservice", 3)):
        finals = [line for line in thread if line.startswith(f"✅ {name}: rolled back to revision {revision}")]
        assert len(finals) == 1, thread
    progress = wait_for_progress(fake_slack, request, "3/3 finished")
    for name in MEMBERS:
        assert f":large_green_circle: *{name}* → revision" in progress
    assert len(request_messages(fake_slack)) == 1
    for name in MEMBERS:
        assert bot.store.lock_holder(bot.flow.catalog.get(name).lock_key) is None
    fake_slack.assert_no_errors()


def test_a_busy_member_starts_nothing_on_any_backend_and_names_its_holder(slack, fake_slack, bot, world) -> None:
    world.break_everything()
    holder = request_rollback(slack, fake_slack, bot, "workshop", user=BOB)
    before = world.snapshot()

    slack.slash_command("storefront", user=ALICE, channel=INCIDENT)

    reply = _reply_to(fake_slack, ALICE, "Nothing was started")[-1]
    assert f"workshop is locked by `{holder.operation.id}` requested by <@{BOB}>" in reply
    assert "bootcamp" not in reply
    assert "myservice" not in reply
    assert len(request_messages(fake_slack)) == 1
    for name in ("bootcamp", "myservice"):
        assert bot.store.lock_holder(bot.flow.catalog.get(name).lock_key) is None
    assert world.snapshot() == before


def test_a_member_failing_for_real_leaves_the_others_rolled_back_and_the_batch_failed(
    slack, fake_slack, bot, world
) -> None:
    world.break_everything()
    # Revision 3's tasks never start: ECS's circuit breaker fails the rollback (and puts revision 4 back).
    world.aws.driver.plan_task_definition("myservice:3", FAIL)
    request = request_rollback(slack, fake_slack, bot, "storefront")

    slack.reaction_added(BOB, "white_check_mark", INCIDENT, request.ts)

    final = wait_for_phase(fake_slack, request, "failed", timeout=ROLLOUT_WAIT)
    assert members_of(final) == [
        ("bootcamp", "succeeded", 2, 1),
        ("workshop", "succeeded", 2, 1),
        ("myservice", "failed", 4, 3),
    ]
    assert world.bootcamp().image == "v1"
    assert world.workshop()[-1] == (3, "deployed", "Rollback to 1")
    assert world.myservice_primary().startswith("myservice:4 ")  # the circuit breaker put the bad build back
    thread = wait_for_thread_line(fake_slack, request, "not rolled back: myservice")
    failed = [line for line in thread if line.startswith("❌ myservice: rollback failed")]
    assert len(failed) == 1, thread
    assert "circuit breaker" in failed[0]
    outcome = "❌ 2 of 3 rolled back (bootcamp, workshop); not rolled back: myservice"
    assert any(line.startswith(outcome) for line in thread), thread
    for name in MEMBERS:
        assert bot.store.lock_holder(bot.flow.catalog.get(name).lock_key) is None


def test_a_dry_run_batch_previews_every_member_and_changes_nothing(slack, fake_slack, bot, world) -> None:
    world.break_everything()
    before = world.snapshot()

    slack.slash_command("storefront --dry-run", user=ALICE, channel=INCIDENT)

    reply = _reply_to(fake_slack, ALICE, "Dry run")[-1]
    for name, revisions in (("bootcamp", "2 → 1"), ("workshop", "2 → 1"), ("myservice", "4 → 3")):
        rows = [line for line in reply.splitlines() if line.startswith(f"*{name}* · ")]
        assert rows, reply
        assert rows[0].endswith(f"revision {revisions}")
    assert "registry.example.com/myservice:1.2.0" in reply
    assert request_messages(fake_slack) == []
    assert world.snapshot() == before
    for name in MEMBERS:
        assert bot.store.lock_holder(bot.flow.catalog.get(name).lock_key) is None


def test_an_explicit_revision_in_a_batch_is_refused_and_changes_nothing(slack, fake_slack, bot, world) -> None:
    world.break_everything()
    before = world.snapshot()

    slack.slash_command("bootcamp workshop myservice 1", user=ALICE, channel=INCIDENT)

    reply = _reply_to(fake_slack, ALICE, "a batch rolls every target back to its previous revision")[-1]
    assert "drop `1`" in reply
    assert request_messages(fake_slack) == []
    assert world.snapshot() == before


def test_a_helm_failure_fails_its_member_only_and_helm_records_it(slack, fake_slack, bot, world) -> None:
    world.break_everything()
    # The API server refuses helm's every read and write of its Deployment, as a broken RBAC binding would.
    deployment = "/apis/apps/v1/namespaces/default/deployments/workshop"
    FaultClient(world.sim.url).add(method="*", path=deployment, status=403, watch=False)
    request = request_rollback(slack, fake_slack, bot, "storefront")

    slack.reaction_added(BOB, "white_check_mark", INCIDENT, request.ts)

    final = wait_for_phase(fake_slack, request, "failed", timeout=ROLLOUT_WAIT)
    assert members_of(final) == [
        ("bootcamp", "succeeded", 2, 1),
        ("workshop", "failed", 2, 1),
        ("myservice", "succeeded", 4, 3),
    ]
    statuses = world.workshop()
    assert statuses[:2] == [(1, "superseded", "Install complete"), (2, "superseded", "Upgrade complete")]
    assert statuses[2][:2] == (3, "failed")
    assert world.bootcamp().image == "v1"
    assert world.myservice_primary() == "myservice:3 COMPLETED"
    thread = wait_for_thread_line(fake_slack, request, "not rolled back: workshop")
    failed = [line for line in thread if line.startswith("❌ workshop: rollback failed: helm rollback of `workshop`")]
    assert len(failed) == 1, thread
    assert "injected fault" in failed[0]
    progress = wait_for_progress(fake_slack, request, "3/3 finished")
    assert ":red_circle: *workshop* → revision 1: rollback failed" in progress
    assert ":large_green_circle: *myservice* → revision 3: rolled back to revision 3" in progress


def doomed_replica_env(
    fake_slack: FakeSlack, redis_url: str, catalog_path: Path, world: BrokenStorefront
) -> dict[str, str]:
    """`rollbot serve` against this world, with a 1 s lease so that another replica takes over soon after a kill."""
    return {key: value for key, value in os.environ.items() if not key.lower().endswith("_proxy")} | {
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": fake_slack.api_url,
        "REDIS_URL": redis_url,
        "ROLLBOT_CONFIG": str(catalog_path),
        "ROLLBOT_REPLICA_ID": "replica-doomed",
        "ROLLBOT_LEASE": "1s",
        "ROLLBOT_SWEEP_INTERVAL": "1",
        "ROLLBOT_SLACK_BUDGET_SCALE": "60",
        "KUBECONFIG": str(world.kubeconfig),
        "ROLLBOT_HELM": str(world.helm.binary),
    }


def approve_then_kill_the_replica(
    fake_slack: FakeSlack,
    redis_url: str,
    catalog_path: Path,
    world: BrokenStorefront,
    text: str,
    until: Callable[[Any, StoreView], None],
) -> tuple[Any, StoreView]:
    """`/rollback <text>`, approved, on a served replica that is killed (helm and kubectl with it) once `until`
    returns. The request, and a view of the shared Redis for what comes next."""
    doomed = ServedReplica(doomed_replica_env(fake_slack, redis_url, catalog_path, world))
    try:
        view = StoreView(redis_url)
        with SlackDriver(doomed.events_url, SIGNING_SECRET, fake_slack) as slack:
            request = request_rollback(slack, fake_slack, view, text)
            slack.reaction_added(BOB, "white_check_mark", INCIDENT, request.ts)
            until(request, view)
        doomed.kill()
    finally:
        doomed.stop()
    return request, view


def test_a_replica_killed_mid_batch_is_taken_over_and_nothing_rolls_back_twice(
    fake_slack, redis_url, catalog_path, make_bot, world
) -> None:
    world.break_everything()
    # myservice's rollback starts but does not move until the executing replica is dead.
    world.aws.driver.plan_task_definition("myservice:3", HANG)

    def two_done_and_myservice_started(request: Any, view: StoreView) -> None:
        wait_for_thread_line(fake_slack, request, "✅ bootcamp: rolled back", timeout=ROLLOUT_WAIT)
        wait_for_thread_line(fake_slack, request, "✅ workshop: rolled back", timeout=ROLLOUT_WAIT)
        eventually(lambda: view.member("myservice", request).receipt is not None, ROLLOUT_WAIT, "myservice started")

    request, view = approve_then_kill_the_replica(
        fake_slack, redis_url, catalog_path, world, "storefront", two_done_and_myservice_started
    )
    assert [m.phase for m in view.store.get(request.operation.id).members] == [
        Phase.SUCCEEDED,
        Phase.SUCCEEDED,
        Phase.ROLLING_BACK,
    ]

    heir = make_bot(replica_id="replica-heir", lease=timedelta(seconds=1))
    world.aws.driver.plan_task_definition("myservice:3", SUCCEED)

    wait_for_thread_line(fake_slack, request, "took over", timeout=ROLLOUT_WAIT)
    final = wait_for_phase(fake_slack, request, "succeeded", timeout=ROLLOUT_WAIT)
    assert members_of(final) == [
        ("bootcamp", "succeeded", 2, 1),
        ("workshop", "succeeded", 2, 1),
        ("myservice", "succeeded", 4, 3),
    ]
    assert heir.store.get(request.operation.id).executor == "replica-heir"
    # Each backend rolled back exactly once: no fourth Deployment revision, no second helm rollback, one ECS
    # deployment of revision 3.
    assert world.bootcamp() == DeploymentView(revision=3, image="v1", generation=3)
    assert [status for status in world.workshop() if status[2] == "Rollback to 1"] == [(3, "deployed", "Rollback to 1")]
    assert len(world.workshop()) == 3
    assert [c.task_definition.rsplit("/", 1)[-1] for c in world.aws.driver.completions] == ["myservice:3"]
    thread = wait_for_thread_line(fake_slack, request, "all 3 targets rolled back")
    for name in MEMBERS:
        assert sum(line.startswith(f"✅ {name}: rolled back") for line in thread) == 1, thread
    wait_for_progress(fake_slack, request, "3/3 finished")


# Pods take this long to become Ready: helm's `rollback --wait` is still waiting when its replica is killed.
SLOW_PODS = 3.0


@pytest.mark.parametrize("world", [SLOW_PODS], indirect=True)
def test_a_replica_killed_while_helm_waits_is_taken_over_and_the_heir_tells_the_truth_about_helm(
    fake_slack, redis_url, catalog_path, make_bot, world
) -> None:
    # Revision 1's pods are long gone (revision 2 replaced them), so rolling back to it waits for new pods.
    world.helm.install(tag="1.16.0")
    world.helm.run("upgrade", "workshop", str(world.helm.chart), "--set", "image.tag=1.17.0", "--wait")
    world.helm.upgrade(tag="non-existing")

    def helm_waiting(request: Any, view: StoreView) -> None:
        # helm has stored its rollback, applied revision 1's manifest and waits for its new pods.
        eventually(lambda: world.workshop()[-1][1] == "pending-rollback", ROLLOUT_WAIT, "helm rollback started")
        eventually(lambda: world.helm.deployment_image() == "nginx:1.16.0", ROLLOUT_WAIT, "revision 1 applied")

    request, _ = approve_then_kill_the_replica(fake_slack, redis_url, catalog_path, world, "workshop 1", helm_waiting)
    interrupted = (4, "pending-rollback", "Rollback to 1")
    # helm died with its replica: its record stays pending-rollback whatever the workloads do next.
    assert world.workshop()[-1] == interrupted

    make_bot(replica_id="replica-heir", lease=timedelta(seconds=1))

    wait_for_phase(fake_slack, request, "succeeded", timeout=ROLLOUT_WAIT)
    thread = wait_for_thread_line(fake_slack, request, "✅ rolled back to revision 1")
    assert any("another one took over" in line for line in thread), thread
    finals = [line for line in thread if line.startswith("✅ rolled back to revision 1")]
    assert len(finals) == 1, thread
    told = finals[0]
    assert "as revision 4" in told
    assert 'deployment "workshop" successfully rolled out' in told
    assert "timed out" not in told
    assert "revision 4, still reads pending-rollback" in told
    way_out = "helm rollback workshop 1 --namespace default --kube-context sandbox"
    assert f"`/rollback workshop 1` or `{way_out}` records it as deployed" in told
    # The heir ran no helm rollback of its own.
    assert world.workshop() == [
        (1, "superseded", "Install complete"),
        (2, "superseded", "Upgrade complete"),
        (3, "deployed", "Upgrade complete"),
        interrupted,
    ]
    # The advice is right: helm refuses an upgrade until the way out has been run, and accepts one after.
    upgrade = ("upgrade", "workshop", str(world.helm.chart), "--set", "image.tag=1.16.0")
    refused = world.helm.run(*upgrade, check=False)
    assert "another operation (install/upgrade/rollback) is in progress" in refused.stderr
    world.helm.run(*way_out.split()[1:])
    assert world.workshop()[-1] == (5, "deployed", "Rollback to 1")
    world.helm.run(*upgrade)
    assert world.workshop()[-1] == (6, "deployed", "Upgrade complete")
