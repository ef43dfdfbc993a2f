"""Seed 002 played end to end: `myservice` on ECS (moto + the rollout driver), fake Slack, Redis, a real rollbot.

    .venv/bin/python -m sandbox.aws.demo

The bot is built with `bot.app.build_app` from operator settings; only `AWS_ENDPOINT_URL` (boto3's standard
configuration) points it at the sandbox. The story: `myservice` runs task definition 4, a bad build; revision 2
was deregistered long ago; a CodeDeploy-controlled `myservice-bluegreen` sits next to it. The on-call engineer
looks at the history, previews, rolls back with `--deregister --suspend-auto-scaling --resume-auto-scaling`, a
second engineer approves, and AWS is checked afterwards. `play()` takes any object with the `EcsDemo` helpers, so
the main demo (`sandbox/demo`) can run the same story in its own world once its catalog has `ECS_TARGETS`.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from sandbox.aws.scenarios import seed_myservice
from sandbox.aws.testing import sandbox_env
from sandbox.aws.world import AwsWorld
from sandbox.demo.room import DemoFailed, IncidentRoom
from sandbox.slack.seed import ALICE, BOB, CAROL, INCIDENT, SRE_GROUP

# What the demo's catalog needs for seed 002 (the main demo can merge these into its own targets).
ECS_TARGETS: dict[str, Any] = {
    "myservice": {"backend": "ecs", "cluster": "default", "service": "myservice", "region": "us-east-1"},
    "bluegreen": {"backend": "ecs", "cluster": "default", "service": "myservice-bluegreen", "region": "us-east-1"},
}
CATALOG: dict[str, Any] = {
    "defaults": {
        "approvals": {
            "required": 1,
            "approvers": [ALICE, BOB, CAROL],
            "approver_groups": [SRE_GROUP],
            "allow_self_approval": False,
            "expires_after": "15m",
        },
        "allowed_channels": [INCIDENT],
    },
    "targets": ECS_TARGETS,
}
# Seconds between two steps of the rollout driver: a rollback of 2 tasks then takes about a second.
DRIVER_TICK = 0.3


class EcsDemo(IncidentRoom):
    """moto + the rollout driver with seed 002's services; boto3 reaches it through AWS_ENDPOINT_URL."""

    def __init__(self) -> None:
        super().__init__(prefix="rollbot-ecs-demo-")
        self.aws = AwsWorld()

    def open_world(self) -> None:
        os.environ.update(sandbox_env(self.aws.url))
        seed_myservice(self.aws.client("ecs"), self.aws.client("application-autoscaling"))
        self.aws.driver.run_in_background(DRIVER_TICK)

    def close_world(self) -> None:
        self.aws.close()

    def catalog(self) -> dict[str, Any]:
        return CATALOG

    def show_service(self) -> None:
        """What `aws ecs describe-services` would show, in ecspresso's one-line-per-deployment words."""
        ecs = self.aws.client("ecs")
        service = ecs.describe_services(cluster="default", services=["myservice"])["services"][0]
        print(f"$ aws ecs describe-services --services myservice  → taskDefinition {service['taskDefinition']}")
        for d in service["deployments"]:
            print(
                f"  {d['status']:>8} {d['taskDefinition'].rsplit('/', 1)[-1]} desired:{d['desiredCount']} "
                f"running:{d['runningCount']} {d.get('rolloutState', '')}"
            )
        statuses = [
            f"{n}:{ecs.describe_task_definition(taskDefinition=f'myservice:{n}')['taskDefinition']['status']}"
            for n in range(1, 5)
        ]
        print(f"$ aws ecs list-task-definitions --family-prefix myservice  → {' '.join(statuses)}")
        scalable = self.aws.client("application-autoscaling").describe_scalable_targets(ServiceNamespace="ecs")
        for target in scalable["ScalableTargets"]:
            print(f"  {target['ResourceId']} suspended: {target.get('SuspendedState') or 'nothing'}")


def play(demo: EcsDemo) -> None:
    demo.say("seed 002: myservice runs task definition 4, a bad build; revision 2 was deregistered long ago")
    demo.show_service()

    demo.say("what ecspresso users expect: history, a preview, refusals that explain themselves")
    demo.type_command(ALICE, "history myservice")
    demo.type_command(ALICE, "myservice 2")
    demo.type_command(ALICE, "bluegreen 1")
    demo.type_command(ALICE, "myservice --deregister --no-wait")
    demo.type_command(ALICE, "myservice 3 --dry-run --deregister")

    demo.say("the rollback itself; a second engineer approves with ✅")
    demo.type_command(
        ALICE,
        'myservice 3 --deregister --suspend-auto-scaling --resume-auto-scaling --reason "5xx since rev 4"',
    )
    request = demo.request_message("myservice")
    demo.react(BOB, request)
    phase = demo.final_phase(request)
    if phase != "succeeded":
        raise DemoFailed(f"the rollback ended {phase}")

    demo.say("afterwards, AWS agrees: PRIMARY on 3, revision 4 INACTIVE, auto scaling as it was")
    demo.show_service()


def main() -> int:
    try:
        with EcsDemo() as demo:
            play(demo)
    except DemoFailed as exc:
        print(f"\nDEMO FAILED: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
