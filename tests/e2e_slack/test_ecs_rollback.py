"""ECS end to end: signed Slack requests → the bot → the real ECS backend → moto + the rollout driver.

The driver ticks in the background in real time (every 0.2 s), so the bot polls a rollout that really moves;
the world is seed 002's `myservice` (rev 4 the bad build, rev 2 INACTIVE, auto scaling registered) plus a
CodeDeploy-controlled `myservice-bluegreen`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.app import RollbotApp
from bot.backends.aws_ecs import EcsBackend
from bot.core.catalog import BackendKind, Catalog, parse_catalog
from bot.core.operations import MessageRef
from sandbox.aws import FAIL, AwsWorld
from sandbox.aws.scenarios import seed_myservice
from sandbox.aws.testing import sandbox_env
from sandbox.slack.records import blocks_plain_text
from sandbox.slack.seed import ALICE, BOB, CAROL, INCIDENT, SRE_GROUP
from tests.e2e_slack.conftest import (
    WAIT,
    request_messages,
    request_rollback,
    thread_texts,
    wait_for_phase,
    wait_for_thread_line,
)
from tests.fakes.memory_backend import MemoryBackend

CATALOG: dict[str, Any] = {
    "defaults": {
        "approvals": {
            "required": 1,
            "approvers": [ALICE, BOB, CAROL],
            "approver_groups": [SRE_GROUP],
            "allow_self_approval": False,
            "expires_after": "15m",
        },
    },
    "targets": {
        "myservice": {"backend": "ecs", "cluster": "default", "service": "myservice", "region": "us-east-1"},
        "bluegreen": {"backend": "ecs", "cluster": "default", "service": "myservice-bluegreen", "region": "us-east-1"},
    },
}
# A rollout here takes about a second; the ECS backend polls every 1 s at first.
ROLLOUT_WAIT = 20.0


@pytest.fixture(scope="module")
def world() -> Iterator[AwsWorld]:
    with AwsWorld() as running:
        yield running


@pytest.fixture
def aws(world: AwsWorld, monkeypatch: pytest.MonkeyPatch) -> Iterator[AwsWorld]:
    world.reset()
    for key, value in sandbox_env(world.url).items():
        monkeypatch.setenv(key, value)
    seed_myservice(world.client("ecs"), world.client("application-autoscaling"))
    world.driver.run_in_background(0.2)
    yield world
    world.driver.stop_background()


@pytest.fixture
def catalog() -> Catalog:
    return parse_catalog(CATALOG)


@pytest.fixture
def catalog_path(tmp_path: Path) -> Path:
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(CATALOG), encoding="utf-8")
    return path


@pytest.fixture
def bot(make_bot: Callable[..., RollbotApp], backend: MemoryBackend, aws: AwsWorld) -> RollbotApp:
    backends = {kind: backend for kind in BackendKind} | {BackendKind.ECS: EcsBackend()}
    return make_bot(backends=backends)


def ecs(aws: AwsWorld) -> Any:
    return aws.client("ecs")


def td_status(aws: AwsWorld, revision: int) -> str:
    answer = ecs(aws).describe_task_definition(taskDefinition=f"myservice:{revision}")
    return str(answer["taskDefinition"]["status"])


def primary(aws: AwsWorld) -> str:
    service = ecs(aws).describe_services(cluster="default", services=["myservice"])["services"][0]
    return str(next(d for d in service["deployments"] if d["status"] == "PRIMARY")["taskDefinition"]).rsplit("/")[-1]


def scalable(aws: AwsWorld) -> dict[str, Any]:
    found = aws.client("application-autoscaling").describe_scalable_targets(ServiceNamespace="ecs")["ScalableTargets"]
    return {k: v for k, v in found[0].items() if k not in ("CreationTime", "ScalableTargetARN")}


def reply_to(fake: Any, user: str, containing: str, ack: Any = None) -> list[str]:
    def found() -> list[str]:
        texts = [r.text + str((r.body or {}).get("blocks", "")) for r in fake.responses("commands", user=user)]
        texts += [e.all_text() for e in fake.ephemerals(user=user)]
        if ack is not None and ack.ephemeral_text:
            texts.append(ack.ephemeral_text + str((ack.json or {}).get("blocks", "")))
        return [text for text in texts if containing in text]

    result: list[str] = fake.wait_for(found, WAIT, description=f"a reply to {user} containing {containing!r}")
    return result


def linked(bot: RollbotApp, request: Any) -> None:
    """The request message is posted before the bot links it to the operation; react only once it is linked."""
    ref = MessageRef(channel=request.channel, ts=request.ts)
    deadline = time.monotonic() + WAIT
    while bot.store.find_by_message(ref) is None:
        assert time.monotonic() < deadline, "the request message was never linked to its operation"
        time.sleep(0.01)


def approve_and_wait(slack: Any, fake: Any, bot: RollbotApp, text: str, phase: str) -> tuple[Any, str]:
    request = request_rollback(slack, fake, bot, text)
    linked(bot, request)
    ack = slack.reaction_added(BOB, "white_check_mark", INCIDENT, request.ts)
    assert ack.status == 200, ack.text
    try:
        wait_for_phase(fake, request, phase, timeout=ROLLOUT_WAIT)
    except TimeoutError:
        print(fake.message(request.channel, request.ts).all_text(), thread_texts(fake, request))
        print([e.all_text() for e in fake.ephemerals()], fake.messages(INCIDENT)[-3:])
        raise
    final = fake.message(request.channel, request.ts).all_text()
    return request, final + "\n" + "\n".join(thread_texts(fake, request))


def test_an_ecs_rollback_progresses_to_completed(slack, fake_slack, bot, aws) -> None:
    request = request_rollback(slack, fake_slack, bot, "myservice")
    linked(bot, request)
    preview = request.message.all_text()
    assert "revision 4 → 3" in preview
    assert "registry.example.com/myservice:1.3.0" in preview
    assert "registry.example.com/myservice:1.2.0" in preview
    slack.reaction_added(BOB, "white_check_mark", INCIDENT, request.ts)
    wait_for_phase(fake_slack, request, "succeeded", timeout=ROLLOUT_WAIT)
    thread = "\n".join(wait_for_thread_line(fake_slack, request, "COMPLETED with 2/2 tasks running"))
    # Progress is one message edited in place: its earlier versions carry the intermediate counts.
    earlier = [
        f"{edit.text}\n{blocks_plain_text(edit.blocks)}"
        for message in fake_slack.messages(request.channel, thread_ts=request.ts)
        for edit in message.history
    ]
    assert "running 0/2, pending 0, failed 0 (IN_PROGRESS)" in "\n".join([thread, *earlier])
    assert "has reached a steady state." in thread
    assert primary(aws) == "myservice:3"
    fake_slack.assert_no_errors()


def test_a_target_that_also_fails_ends_failed_with_ecs_reason(slack, fake_slack, bot, aws) -> None:
    ecs(aws).update_service(
        cluster="default",
        service="myservice",
        deploymentConfiguration={"deploymentCircuitBreaker": {"enable": True, "rollback": False}},
    )
    aws.driver.plan_task_definition("myservice:3", FAIL)
    _, text = approve_and_wait(slack, fake_slack, bot, "myservice", "failed")
    assert "ECS deployment circuit breaker: task failed to start." in text


def test_a_circuit_breaker_rollback_while_waiting_is_reported_truthfully(slack, fake_slack, bot, aws) -> None:
    aws.driver.plan_task_definition("myservice:3", FAIL)
    _, text = approve_and_wait(slack, fake_slack, bot, "myservice", "failed")
    assert "circuit breaker stopped the rollback to myservice:3" in text
    assert "rolled the service back to myservice:4 on its own" in text
    assert "rolled back to revision 3" not in text


def test_deregister_removes_exactly_the_rolled_back_from_revision(slack, fake_slack, bot, aws) -> None:
    _, text = approve_and_wait(slack, fake_slack, bot, "myservice --deregister", "succeeded")
    assert "deregistered myservice:4" in text
    assert [td_status(aws, n) for n in (1, 2, 3, 4)] == ["ACTIVE", "INACTIVE", "ACTIVE", "INACTIVE"]


def test_deregister_removes_nothing_when_the_rollback_fails(slack, fake_slack, bot, aws) -> None:
    aws.driver.plan_task_definition("myservice:3", FAIL)
    _, text = approve_and_wait(slack, fake_slack, bot, "myservice --deregister", "failed")
    assert "myservice:4 was not deregistered" in text
    assert [td_status(aws, n) for n in (1, 2, 3, 4)] == ["ACTIVE", "INACTIVE", "ACTIVE", "ACTIVE"]


def test_suspend_and_resume_auto_scaling_leave_the_scalable_target_as_it_was(slack, fake_slack, bot, aws) -> None:
    before = scalable(aws)
    _, text = approve_and_wait(
        slack, fake_slack, bot, "myservice --suspend-auto-scaling --resume-auto-scaling", "succeeded"
    )
    assert "auto scaling restored" in text
    after = scalable(aws)
    assert {k: v for k, v in after.items() if k != "SuspendedState"} == before
    assert not any((after.get("SuspendedState") or {}).values())


def test_dry_run_changes_nothing(slack, fake_slack, bot, aws) -> None:
    described = ecs(aws).describe_services(cluster="default", services=["myservice"])["services"][0]
    ack = slack.slash_command("myservice --dry-run --deregister", user=ALICE, channel=INCIDENT)
    assert ack.status == 200
    reply = reply_to(fake_slack, ALICE, "Dry run")
    assert "registry.example.com/myservice:1.2.0" in reply[-1]
    assert ecs(aws).describe_services(cluster="default", services=["myservice"])["services"][0] == described
    assert [td_status(aws, n) for n in (3, 4)] == ["ACTIVE", "ACTIVE"]
    assert request_messages(fake_slack) == []


def test_an_inactive_target_revision_is_refused_with_the_active_ones(slack, fake_slack, bot, aws) -> None:
    slack.slash_command("myservice 2", user=ALICE, channel=INCIDENT)
    reply = reply_to(fake_slack, ALICE, "has no revision 2")
    assert "myservice:2 is INACTIVE (deregistered)" in reply[-1]
    assert "Revisions that exist: 1, 3, 4" in reply[-1]
    assert request_messages(fake_slack) == []


def test_a_codedeploy_service_is_refused_clearly(slack, fake_slack, bot, aws) -> None:
    slack.slash_command("bluegreen 1", user=ALICE, channel=INCIDENT)
    reply = reply_to(fake_slack, ALICE, "CodeDeploy")
    assert "blue/green" in reply[-1]
    assert request_messages(fake_slack) == []


def test_deregister_with_no_wait_is_refused(slack, fake_slack, bot, aws) -> None:
    ack = slack.slash_command("myservice --deregister --no-wait", user=ALICE, channel=INCIDENT)
    reply = reply_to(fake_slack, ALICE, "no-wait", ack)
    assert "deregister" in reply[-1]
    assert request_messages(fake_slack) == []


def test_history_and_status_show_the_task_definition_revisions(slack, fake_slack, bot, aws) -> None:
    slack.slash_command("history myservice", user=ALICE, channel=INCIDENT)
    history = reply_to(fake_slack, ALICE, "History of myservice")[-1]
    assert "INACTIVE" in history
    assert "PRIMARY deployment, COMPLETED, 2/2 running" in history
    assert "registry.example.com/myservice:1.3.0" in history
    slack.slash_command("status myservice", user=ALICE, channel=INCIDENT)
    reply_to(fake_slack, ALICE, "at revision 4")
