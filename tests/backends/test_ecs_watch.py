"""The ECS failure watcher against moto + the rollout driver, through boto3's standard configuration.

The driver ticks in the background every 0.3 s (a real ECS moves by itself too), and the watcher polls on its own
schedule, shortened so the tests take seconds but still faster than the driver, as ECS is slower than the bot.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest

from bot.backends.ecs_watch import EcsFailureWatcher
from bot.core.catalog_detect import EcsWatch
from bot.core.detection import ECS_FAILED, Sighting
from bot.core.errors import UnknownTarget
from sandbox.aws import FAIL, HANG, AwsWorld
from sandbox.aws.scenarios import RevisionSpec, seed_service
from sandbox.aws.testing import sandbox_env
from tests.backends.watch_recorder import watching

REGION = "us-east-1"


@pytest.fixture(scope="module")
def world() -> Iterator[AwsWorld]:
    with AwsWorld() as running:
        yield running


@pytest.fixture
def aws(world: AwsWorld, monkeypatch: pytest.MonkeyPatch) -> Iterator[AwsWorld]:
    world.reset()
    for key, value in sandbox_env(world.url).items():
        monkeypatch.setenv(key, value)
    world.driver.run_in_background(0.3)
    yield world
    world.driver.stop_background()


@pytest.fixture
def ecs(aws: AwsWorld) -> Any:
    return aws.client("ecs")


@pytest.fixture
def watcher(aws: AwsWorld) -> EcsFailureWatcher:
    return EcsFailureWatcher(interval=timedelta(seconds=0.2), fast_interval=timedelta(seconds=0.1), retry_initial=0.05)


def revisions(name: str) -> list[RevisionSpec]:
    return [RevisionSpec(images={"app": f"registry.example.com/{name}:1.{n}.0"}) for n in range(3)]


def service(name: str, cluster: str = "default") -> Callable[[Sighting], bool]:
    def matches(sighting: Sighting) -> bool:
        return sighting.service is not None and sighting.service.service == name and sighting.service.cluster == cluster

    return matches


def test_every_service_of_the_scope_is_listed_first_in_batches(ecs: Any, watcher: EcsFailureWatcher) -> None:
    names = [f"svc-{n:02d}" for n in range(12)]  # more than one DescribeServices batch
    for name in names:
        seed_service(ecs, cluster="default", service=name, revisions=revisions(name)[:1])
    seed_service(ecs, cluster="elsewhere", service="not-watched", revisions=revisions("not-watched")[:1])
    with watching(watcher, EcsWatch(region=REGION, clusters=("default",))) as recorder:
        for name in names:
            listed = recorder.wait_for(service(name), what=f"{name} listed")
            assert listed.resync
            assert listed.location == REGION
        first_round = recorder.snapshot()
    assert len(first_round) >= len(names)
    assert not any(service("not-watched", "elsewhere")(s) for s in first_round)
    assert {s.service.service for s in first_round if s.service is not None} == set(names)


def test_a_circuit_breaker_rollback_shows_the_failed_deployment(
    aws: AwsWorld, ecs: Any, watcher: EcsFailureWatcher
) -> None:
    seeded = seed_service(
        ecs, cluster="default", service="web", revisions=revisions("web"), current=2, circuit_breaker=(True, True)
    )
    with watching(watcher, EcsWatch(region=REGION)) as recorder:
        recorder.wait_for(service("web"), what="web listed")
        before = len(recorder.snapshot())
        aws.driver.plan_task_definition("web:3", FAIL)
        ecs.update_service(cluster="default", service="web", taskDefinition=seeded.arns[3])

        failed = recorder.wait_for(
            lambda s: service("web")(s) and any(d.rollout_state == ECS_FAILED for d in s.service.deployments),
            after=before,
            timeout=30,
            what="web's deployment FAILED",
        )
    assert failed.service is not None
    assert not failed.resync
    assert failed.service.is_circuit_breaker_rollback
    bad = next(d for d in failed.service.deployments if d.rollout_state == ECS_FAILED)
    assert bad.task_definition.endswith("web:3")
    assert bad.failed_tasks > 0
    assert any("circuit breaker" in (d.rollout_state_reason or "") for d in failed.service.deployments)
    assert failed.service.events, "the service's recent events come along"


def test_a_deleted_service_is_reported(ecs: Any, watcher: EcsFailureWatcher) -> None:
    seed_service(ecs, cluster="default", service="old", revisions=revisions("old")[:1])
    with watching(watcher, EcsWatch(region=REGION)) as recorder:
        recorder.wait_for(service("old"), what="old listed")
        ecs.delete_service(cluster="default", service="old", force=True)
        gone = recorder.wait_for(lambda s: service("old")(s) and s.deleted, what="old deleted")
    assert not gone.resync


def test_a_missing_cluster_is_a_clear_error(aws: AwsWorld, watcher: EcsFailureWatcher) -> None:
    with watching(watcher, EcsWatch(region=REGION, clusters=("nope",))) as recorder:
        error = recorder.wait_failed()
    assert isinstance(error, UnknownTarget)
    assert "ECS cluster `nope`" in str(error)


def test_a_deployment_in_progress_is_polled_fast_and_reported_every_poll(aws: AwsWorld, ecs: Any) -> None:
    seeded = seed_service(ecs, cluster="default", service="web", revisions=revisions("web"), current=2)
    watcher = EcsFailureWatcher(interval=timedelta(seconds=30), fast_interval=timedelta(seconds=0.1))
    aws.driver.plan_task_definition("web:3", HANG)
    ecs.update_service(cluster="default", service="web", taskDefinition=seeded.arns[3])
    with watching(watcher, EcsWatch(region=REGION)) as recorder:
        first = recorder.wait_for(service("web"), what="web listed")
        assert first.service is not None
        assert first.service.primary is not None
        assert first.service.primary.rollout_state == "IN_PROGRESS"
        # Five more polls within a few seconds, though the slow interval is 30 s and nothing changes.
        for count in range(1, 6):
            recorder.wait_for(service("web"), after=count, timeout=3, what=f"poll {count + 1} of web")


def test_the_tags_of_rollbots_last_rollback_reach_the_snapshot(ecs: Any, watcher: EcsFailureWatcher) -> None:
    seed_service(ecs, cluster="default", service="tagged", revisions=revisions("tagged")[:1])
    arn = ecs.describe_services(cluster="default", services=["tagged"])["services"][0]["serviceArn"]
    tags = {"rollbot:operation": "op-7", "rollbot:rolled-back-to": "tagged:1"}
    ecs.tag_resource(resourceArn=arn, tags=[{"key": k, "value": v} for k, v in tags.items()])
    with watching(watcher, EcsWatch(region=REGION, clusters=("default",))) as recorder:
        listed = recorder.wait_for(service("tagged"), what="tagged listed")
    assert listed.service is not None
    assert (listed.service.rollbot_operation, listed.service.rolled_back_to) == ("op-7", "tagged:1")
