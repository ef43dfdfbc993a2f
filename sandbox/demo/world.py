"""The demo's world: kubesim, fake Slack, a private Redis and a real rollbot, wired like production.

The bot is built with `bot.app.build_app` from the same settings an operator sets (`SLACK_API_URL`,
`REDIS_URL`, `ROLLBOT_CONFIG`, `KUBECONFIG`, `ROLLBOT_HELM`); only the URLs point at the simulated world.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from bot.app import RollbotApp, build_app
from bot.settings import Settings
from sandbox.kubesim.cluster import KubeSim
from sandbox.kubesim.registry import RegistryConfig
from sandbox.redis_server import RedisServer
from sandbox.slack.driver import SlackDriver
from sandbox.slack.records import Message
from sandbox.slack.seed import ALICE, BOB, BOT_TOKEN, CAROL, INCIDENT, SIGNING_SECRET, SRE_GROUP
from sandbox.slack.server import FakeSlack
from sandbox.slack.transcript import TranscriptPrinter

REPO = Path(__file__).resolve().parents[2]
TOOLS = REPO / ".tools" / "bin"
# The seeds' missing images: bootcamp's v10 (seed 004) and anything called non-existing (seed 000).
MISSING_IMAGES = ["*:v10", "*non-existing*"]

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
        "kubernetes": {"allowed_namespaces": ["default"]},
    },
    "targets": {
        "bootcamp": {
            "backend": "kubernetes",
            "kind": "Deployment",
            "name": "kubernetes-bootcamp",
            "namespace": "default",
            "kube_context": "sandbox",
        },
        "workshop": {"backend": "helm", "release": "workshop", "namespace": "default", "kube_context": "sandbox"},
    },
}


class DemoFailed(Exception):
    pass


class DemoWorld:
    def __init__(self, *, pod_ready_seconds: float = 0.5) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="rollbot-demo-"))
        self.kubesim = KubeSim(pod_ready_seconds=pod_ready_seconds, registry=RegistryConfig(missing=MISSING_IMAGES))
        self.redis = RedisServer()
        self.slack = FakeSlack()
        self.kubeconfig = self.workdir / "kubeconfig"
        self.bot: RollbotApp | None = None
        self.driver: SlackDriver | None = None
        self.env: dict[str, str] = {}

    # -- lifecycle -----------------------------------------------------------------------------------------

    def __enter__(self) -> DemoWorld:
        # The transcript is the demo's output; the bot's own logs would interleave with it.
        logging.basicConfig(level=logging.WARNING)
        from bot.logging import configure_logging

        configure_logging("WARNING")
        self.kubesim.start()
        self.kubesim.write_kubeconfig(self.kubeconfig)
        self.redis.start()
        self.slack.start()
        self.slack.subscribe(TranscriptPrinter(self.slack, show_ephemerals=True))
        catalog_path = self.workdir / "catalog.yaml"
        catalog_path.write_text(yaml.safe_dump(CATALOG), encoding="utf-8")
        self.env = {
            "PATH": f"{TOOLS}{os.pathsep}{os.environ.get('PATH', '')}",
            "HOME": str(self.workdir / "home"),
            "KUBECONFIG": str(self.kubeconfig),
            "HELM_CACHE_HOME": str(self.workdir / "helm-cache"),
            "HELM_CONFIG_HOME": str(self.workdir / "helm-config"),
            "HELM_DATA_HOME": str(self.workdir / "helm-data"),
        }
        settings = Settings(
            slack_bot_token=BOT_TOKEN,
            slack_signing_secret=SIGNING_SECRET,
            slack_api_url=self.slack.api_url,
            redis_url=self.redis.url(0),
            config_path=catalog_path,
            kubeconfig=str(self.kubeconfig),
            helm_path=self.binary("helm"),
            host="127.0.0.1",
            port=0,
            rollout_timeout=timedelta(minutes=2),
        )
        # The helm subprocess must see the demo's HOME and caches, not the user's.
        os.environ.update({key: value for key, value in self.env.items() if key != "PATH"})
        self.bot = build_app(settings).start()
        self.driver = SlackDriver(self.bot.events_url, SIGNING_SECRET, self.slack)
        self.say(f"rollbot is listening on {self.bot.events_url}; fake Slack at {self.slack.api_url}")
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
        self.kubesim.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    # -- the terminal ----------------------------------------------------------------------------------------

    @staticmethod
    def say(text: str) -> None:
        print(f"\n── {text}", flush=True)

    def binary(self, name: str) -> str:
        found = TOOLS / name
        if found.exists():
            return str(found)
        on_path = shutil.which(name)
        if on_path is None:
            raise DemoFailed(f"`{name}` not found: run `make setup` (scripts/setup-tools.sh fetches it)")
        return on_path

    def sh(self, tool: str, *args: str, check: bool = True, show: bool = True) -> subprocess.CompletedProcess[str]:
        """Run the real kubectl or helm against kubesim and show it like a terminal would."""
        if show:
            print(f"$ {tool} {' '.join(args)}", flush=True)
        result = subprocess.run(
            [self.binary(tool), *args],
            env=self.env,
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if show:
            output = (result.stdout + result.stderr).rstrip()
            if output:
                print(output, flush=True)
        if check and result.returncode != 0:
            raise DemoFailed(f"{tool} {' '.join(args)} exited {result.returncode}")
        return result

    # -- Slack ---------------------------------------------------------------------------------------------

    def type_command(self, user: str, text: str) -> None:
        assert self.driver is not None
        print(f"\n@{self.slack.user_name(user)} types: /rollback {text}", flush=True)
        ack = self.driver.slash_command(text, user=user, channel=INCIDENT)
        if ack.status != 200:
            raise DemoFailed(f"the bot answered {ack.status} to /rollback {text}")

    def react(self, user: str, message: Message, reaction: str = "white_check_mark") -> None:
        assert self.driver is not None
        self.driver.reaction_added(user, reaction, INCIDENT, message.ts)

    def wait_for(self, what: str, condition: Callable[[], Any], timeout: float = 60) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            # Wake on every change in the fake workspace; give up this round after a second to re-check.
            with contextlib.suppress(TimeoutError):
                self.slack.wait_for(lambda: bool(condition()), timeout=min(1.0, max(0.0, deadline - time.monotonic())))
        raise DemoFailed(f"timed out waiting for {what}")

    def request_message(self, target: str) -> Message:
        def find() -> Message | None:
            for message in self.slack.messages(INCIDENT):
                payload = (message.metadata or {}).get("event_payload") or {}
                if payload.get("target") == target and payload.get("phase") == "awaiting_approval":
                    return message
            return None

        message: Message = self.wait_for(f"the request message for {target}", find, timeout=30)
        return message

    def final_phase(self, message: Message, timeout: float = 120) -> str:
        def phase() -> str | None:
            current = next((m for m in self.slack.messages(INCIDENT) if m.ts == message.ts), None)
            payload = ((current.metadata if current else None) or {}).get("event_payload") or {}
            value = payload.get("phase")
            return value if value in ("succeeded", "failed", "rejected", "expired", "cancelled") else None

        result: str = self.wait_for("the operation to finish", phase, timeout=timeout)
        return result

    def wait_until_rolled_out(self, resource: str, seconds: int = 60) -> None:
        self.sh("kubectl", "rollout", "status", resource, f"--timeout={seconds}s")


def timed(label: str) -> Callable[[Callable[[DemoWorld], None]], Callable[[DemoWorld], None]]:
    def wrap(scenario: Callable[[DemoWorld], None]) -> Callable[[DemoWorld], None]:
        def run(world: DemoWorld) -> None:
            started = time.monotonic()
            scenario(world)
            world.say(f"{label}: done in {time.monotonic() - started:.1f}s")

        return run

    return wrap
