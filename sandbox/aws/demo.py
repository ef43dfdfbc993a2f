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
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from bot.app import RollbotApp, build_app
from bot.core.catalog import ChannelId
from bot.core.operations import MessageRef
from bot.settings import Settings
from sandbox.aws.scenarios import seed_myservice
from sandbox.aws.testing import sandbox_env
from sandbox.aws.world import AwsWorld
from sandbox.redis_server import RedisServer
from sandbox.slack.driver import SlackDriver
from sandbox.slack.records import Message
from sandbox.slack.seed import ALICE, BOB, BOT_TOKEN, CAROL, INCIDENT, SIGNING_SECRET, SRE_GROUP
from sandbox.slack.server import FakeSlack
from sandbox.slack.transcript import TranscriptPrinter

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
FINISHED = ("succeeded", "failed", "rejected", "expired", "cancelled")


class DemoFailed(Exception):
    pass


class EcsDemo:
    def __init__(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="rollbot-ecs-demo-"))
        self.aws = AwsWorld()
        self.redis = RedisServer()
        self.slack = FakeSlack()
        self.bot: RollbotApp | None = None
        self.driver: SlackDriver | None = None

    def __enter__(self) -> EcsDemo:
        from bot.logging import configure_logging

        configure_logging("WARNING")
        os.environ.update(sandbox_env(self.aws.url))
        seed_myservice(self.aws.client("ecs"), self.aws.client("application-autoscaling"))
        self.aws.driver.run_in_background(DRIVER_TICK)
        self.redis.start()
        self.slack.start()
        self.slack.subscribe(TranscriptPrinter(self.slack, show_ephemerals=True))
        catalog_path = self.workdir / "catalog.yaml"
        catalog_path.write_text(yaml.safe_dump(CATALOG), encoding="utf-8")
        settings = Settings(
            slack_bot_token=BOT_TOKEN,
            slack_signing_secret=SIGNING_SECRET,
            slack_api_url=self.slack.api_url,
            redis_url=self.redis.url(0),
            config_path=catalog_path,
            host="127.0.0.1",
            port=0,
            rollout_timeout=timedelta(minutes=2),
        )
        self.bot = build_app(settings).start()
        self.driver = SlackDriver(self.bot.events_url, SIGNING_SECRET, self.slack)
        self.say(f"rollbot on {self.bot.events_url}; AWS (moto + rollout driver) on {self.aws.url}")
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.driver is not None:
            self.driver.close()
        if self.bot is not None:
            self.bot.stop()
        self.slack.stop()
        self.redis.stop()
        self.aws.close()
        shutil.rmtree(self.workdir, ignore_errors=True)

    @staticmethod
    def say(text: str) -> None:
        print(f"\n── {text}", flush=True)

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

    def type_command(self, user: str, text: str) -> None:
        """Type a command and wait for the bot's answer (after its "Working on…"), so the transcript reads in order."""
        assert self.driver is not None
        before = len(self.slack.ephemerals(user=user))
        print(f"\n@{self.slack.user_name(user)} types: /rollback {text}", flush=True)
        ack = self.driver.slash_command(text, user=user, channel=INCIDENT)
        if ack.status != 200:
            raise DemoFailed(f"the bot answered {ack.status} to /rollback {text}")
        self.wait_for("the answer", lambda: len(self.slack.ephemerals(user=user)) >= before + 2, timeout=30)

    def react(self, user: str, message: Message, reaction: str = "white_check_mark") -> None:
        assert self.driver is not None
        self.driver.reaction_added(user, reaction, INCIDENT, message.ts)

    def wait_for(self, what: str, condition: Callable[[], Any], timeout: float = 60) -> Any:
        changed = threading.Event()
        unsubscribe = self.slack.subscribe(lambda _change: changed.set())
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                value = condition()
                if value:
                    return value
                changed.wait(timeout=min(1.0, max(0.0, deadline - time.monotonic())))
                changed.clear()
        finally:
            unsubscribe()
        raise DemoFailed(f"timed out waiting for {what}")

    def request_message(self, target: str) -> Message:
        def find() -> Message | None:
            for message in self.slack.messages(INCIDENT):
                payload = (message.metadata or {}).get("event_payload") or {}
                if payload.get("target") == target and payload.get("phase") == "awaiting_approval":
                    return message
            return None

        message: Message = self.wait_for(f"the request message for {target}", find, timeout=30)
        assert self.bot is not None
        ref = MessageRef(channel=ChannelId(message.channel), ts=message.ts)
        self.wait_for("the request to be linked", lambda: self.bot and self.bot.store.find_by_message(ref))
        return message

    def final_phase(self, message: Message, timeout: float = 120) -> str:
        def phase() -> str | None:
            current = next((m for m in self.slack.messages(INCIDENT) if m.ts == message.ts), None)
            value = ((current.metadata if current else None) or {}).get("event_payload", {}).get("phase")
            return value if value in FINISHED else None

        result: str = self.wait_for("the operation to finish", phase, timeout=timeout)
        return result


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
