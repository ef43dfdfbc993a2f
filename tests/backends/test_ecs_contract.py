"""The ECS backend meets the backend contract on moto + the rollout driver."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bot.backends.aws_ecs import EcsBackend
from bot.core.catalog import EcsTarget, SlackUserId, Target, TargetName
from bot.core.catalog_approvals import ApprovalPolicy
from bot.core.rollouts import RevisionNumber
from sandbox.aws import AwsWorld
from sandbox.aws.scenarios import RevisionSpec, myservice_revisions, register_revisions, seed_service
from sandbox.aws.testing import VirtualTime, sandbox_env
from tests.contracts.backend_contract import BackendCase, BackendContract


@pytest.fixture(scope="module")
def world() -> Iterator[AwsWorld]:
    with AwsWorld() as running:
        yield running


class TestEcsBackend(BackendContract):
    @pytest.fixture
    def backend_case(self, world: AwsWorld, monkeypatch: pytest.MonkeyPatch) -> BackendCase:
        world.reset()
        for key, value in sandbox_env(world.url).items():
            monkeypatch.setenv(key, value)
        seed_service(world.client("ecs"), cluster="default", service="myservice", revisions=myservice_revisions())
        time = VirtualTime(world.driver)
        target = Target(
            name=TargetName("myservice"),
            spec=EcsTarget(cluster="default", service="myservice", region="us-east-1"),
            policy=ApprovalPolicy(approvers=(SlackUserId("U0AAA"),)),
        )
        return BackendCase(
            backend=EcsBackend(monotonic=time.monotonic, sleep=time.sleep),
            target=target,
            good=RevisionNumber(3),
            current=RevisionNumber(4),
            settle=lambda: None,  # the backend's own poll sleeps drive the rollout (VirtualTime)
            deploy=lambda: deploy_new_task_definition(world),
        )


def deploy_new_task_definition(world: AwsWorld) -> RevisionNumber:
    """Someone registers the next task definition and updates the service to it; the deployment completes."""
    ecs = world.client("ecs")
    arns = register_revisions(ecs, "myservice", [RevisionSpec(images={"app": "registry.example.com/myservice:1.4.0"})])
    (revision, arn), *_ = arns.items()
    ecs.update_service(cluster="default", service="myservice", taskDefinition=arn)
    world.driver.settle("default", "myservice")
    return RevisionNumber(revision)
