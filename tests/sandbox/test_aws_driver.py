"""The ECS rollout driver: moto's services gain deployments that progress, fail and roll back (ecs.md §4)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from sandbox.aws import FAIL, HANG, AwsWorld
from sandbox.aws.driver import circuit_breaker_threshold
from sandbox.aws.scenarios import myservice_revisions, seed_service
from tests._policy import require_tool

CLUSTER, SERVICE = "default", "myservice"


@pytest.fixture(scope="module")
def world() -> Iterator[AwsWorld]:
    with AwsWorld() as running:
        yield running


@pytest.fixture
def ecs(world: AwsWorld) -> Any:
    world.reset()
    client = world.client("ecs")
    return client


def arrange(ecs: Any, breaker: tuple[bool, bool] | None = (True, True)) -> None:
    seed_service(ecs, cluster=CLUSTER, service=SERVICE, revisions=myservice_revisions(), circuit_breaker=breaker)


def rows(ecs: Any) -> list[tuple[str, str, str, int, int]]:
    service = ecs.describe_services(cluster=CLUSTER, services=[SERVICE])["services"][0]
    return [
        (d["status"], d["taskDefinition"].rsplit("/", 1)[-1], d["rolloutState"], d["runningCount"], d["failedTasks"])
        for d in service["deployments"]
    ]


def ticks_until_quiet(world: AwsWorld, limit: int = 50) -> int:
    for count in range(limit):
        if not world.driver.tick():
            return count
    raise AssertionError("the driver never went quiet")


def call(url: str, body: dict[str, Any] | None = None, method: str = "POST") -> dict[str, Any]:
    data = json.dumps(body or {}).encode() if method == "POST" else None
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - http:// to the sandbox only
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        answer: dict[str, Any] = json.loads(response.read())
        return answer


def post(url: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    return call(url, body)


def get(url: str) -> dict[str, Any]:
    return call(url, method="GET")


def test_a_created_service_starts_out_completed_with_every_task_running(ecs: Any) -> None:
    arrange(ecs)
    assert rows(ecs) == [("PRIMARY", "myservice:4", "COMPLETED", 2, 0)]


def test_a_new_task_definition_inserts_a_primary_deployment_and_demotes_the_old_one(ecs: Any) -> None:
    arrange(ecs)
    answer = ecs.update_service(cluster=CLUSTER, service=SERVICE, taskDefinition="myservice:3")["service"]
    assert answer["taskDefinition"] == "arn:aws:ecs:us-east-1:123456789012:task-definition/myservice:3"
    assert rows(ecs) == [
        ("PRIMARY", "myservice:3", "IN_PROGRESS", 0, 0),
        ("ACTIVE", "myservice:4", "COMPLETED", 2, 0),
    ]


def test_a_desired_count_change_alone_starts_no_deployment(ecs: Any) -> None:
    arrange(ecs)
    ecs.update_service(cluster=CLUSTER, service=SERVICE, desiredCount=3)
    assert [r[:3] for r in rows(ecs)] == [("PRIMARY", "myservice:4", "COMPLETED")]


def test_a_succeeding_rollout_completes_with_events_newest_first(world: AwsWorld, ecs: Any) -> None:
    arrange(ecs)
    ecs.update_service(cluster=CLUSTER, service=SERVICE, taskDefinition="myservice:3")
    world.driver.tick()
    assert rows(ecs) == [("PRIMARY", "myservice:3", "IN_PROGRESS", 1, 0), ("ACTIVE", "myservice:4", "COMPLETED", 1, 0)]
    ticks_until_quiet(world)
    assert rows(ecs) == [("PRIMARY", "myservice:3", "COMPLETED", 2, 0)]
    service = ecs.describe_services(cluster=CLUSTER, services=[SERVICE])["services"][0]
    messages = [e["message"] for e in service["events"]]
    assert messages[0] == "(service myservice) has reached a steady state."
    assert messages[1].endswith("deployment completed.")
    assert len({e["id"] for e in service["events"]}) == len(service["events"])
    assert service["runningCount"] == 2
    assert [c.task_definition.rsplit("/", 1)[-1] for c in world.driver.completions] == ["myservice:3"]


def test_a_failing_rollout_without_the_breaker_retries_forever(world: AwsWorld, ecs: Any) -> None:
    arrange(ecs, breaker=None)
    world.driver.plan(SERVICE, FAIL)
    ecs.update_service(cluster=CLUSTER, service=SERVICE, taskDefinition="myservice:3")
    for _ in range(10):
        world.driver.tick()
    assert rows(ecs)[0] == ("PRIMARY", "myservice:3", "IN_PROGRESS", 0, 10)


def test_the_breaker_without_rollback_marks_the_deployment_failed(world: AwsWorld, ecs: Any) -> None:
    arrange(ecs, breaker=(True, False))
    world.driver.plan_task_definition("myservice:3", FAIL)
    ecs.update_service(cluster=CLUSTER, service=SERVICE, taskDefinition="myservice:3")
    ticks_until_quiet(world)
    assert rows(ecs) == [("PRIMARY", "myservice:3", "FAILED", 0, 3), ("ACTIVE", "myservice:4", "COMPLETED", 2, 0)]


def test_the_breaker_with_rollback_goes_back_to_the_last_completed_deployment(world: AwsWorld, ecs: Any) -> None:
    arrange(ecs, breaker=(True, True))
    world.driver.plan_task_definition("myservice:3", FAIL)
    ecs.update_service(cluster=CLUSTER, service=SERVICE, taskDefinition="myservice:3")
    for _ in range(circuit_breaker_threshold(2)):
        world.driver.tick()
    primary, failed = rows(ecs)[:2]
    assert primary[:3] == ("PRIMARY", "myservice:4", "IN_PROGRESS")
    assert failed == ("ACTIVE", "myservice:3", "FAILED", 0, 3)
    ticks_until_quiet(world)
    assert rows(ecs) == [("PRIMARY", "myservice:4", "COMPLETED", 2, 0)]
    assert [e["detail"]["eventName"] for e in world.driver.emitted] == [
        "SERVICE_DEPLOYMENT_IN_PROGRESS",
        "SERVICE_DEPLOYMENT_FAILED",
        "SERVICE_DEPLOYMENT_IN_PROGRESS",
        "SERVICE_DEPLOYMENT_COMPLETED",
    ]
    # The trap of ecs.md §2.4: the stock waiter calls this "stable" although the deployment of 3 failed.
    ecs.get_waiter("services_stable").wait(
        cluster=CLUSTER, services=[SERVICE], WaiterConfig={"Delay": 1, "MaxAttempts": 1}
    )


def test_a_hanging_rollout_does_not_move(world: AwsWorld, ecs: Any) -> None:
    arrange(ecs)
    world.driver.plan(SERVICE, HANG)
    ecs.update_service(cluster=CLUSTER, service=SERVICE, taskDefinition="myservice:3")
    assert world.driver.tick() == 0
    assert rows(ecs)[0] == ("PRIMARY", "myservice:3", "IN_PROGRESS", 0, 0)


def test_the_control_api_seeds_plans_and_ticks_over_http(world: AwsWorld, ecs: Any) -> None:
    seeded = post(f"{world.url}/_driver/scenario", {"name": "myservice"})
    assert seeded["service"] == "myservice"
    post(f"{world.url}/_driver/plan", {"task_definition": "myservice:3", "mode": "fail"})
    ecs.update_service(cluster=CLUSTER, service=SERVICE, taskDefinition="myservice:3")
    assert post(f"{world.url}/_driver/tick")["moved"] == 1
    emitted = get(f"{world.url}/_driver/emitted")["events"]
    assert emitted[-1]["detail"]["eventName"] == "SERVICE_DEPLOYMENT_IN_PROGRESS"
    post(f"{world.url}/_driver/reset")
    assert ecs.list_clusters()["clusterArns"] == []


def test_the_sandbox_runs_as_a_process_with_its_control_endpoint() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "sandbox.aws", "--port", "0", "--scenario", "myservice", "--tick", "0.1"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        url = line.split()[3]
        assert post(f"{url}/_driver/tick")["moved"] == 0
        assert get(f"{url}/_driver/completions") == {"completions": []}
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_the_seed_002_demo_plays_to_the_end() -> None:
    require_tool("redis-server", shutil.which("redis-server") is not None, "not on PATH")
    done = subprocess.run(
        [sys.executable, "-m", "sandbox.aws.demo"], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "1:ACTIVE 2:INACTIVE 3:ACTIVE 4:INACTIVE" in done.stdout
    assert "PRIMARY myservice:3 desired:2 running:2 COMPLETED" in done.stdout
