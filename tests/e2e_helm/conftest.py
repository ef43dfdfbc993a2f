"""A real bot with its real backends, a real helm and a real chart, against a fresh kubesim, through signed HTTP.

Each test gets a fresh kubesim, a kubeconfig with context `sandbox`, the chart `helm create workshop` writes,
the fake Slack, a private Redis database and a bot built by `bot.app.build_app` exactly as in production
(`ROLLBOT_HELM` = `.tools/bin/helm`). The bot's helm subprocesses inherit the process environment, so the
fixture points HOME and helm's cache/config/data directories at the test's own directory with `setenv`.
The test arranges the release with the same helm binary, as people do (`tests/backends/helm_world.py`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.app import RollbotApp, build_app
from bot.settings import Settings
from sandbox.kubesim.cluster import KubeSim
from sandbox.slack.driver import SlackDriver
from sandbox.slack.seed import ALICE, BOB, BOT_TOKEN, CAROL, INCIDENT, SIGNING_SECRET
from sandbox.slack.server import FakeSlack
from tests._policy import require_tool
from tests.backends.helm_world import HELM, HelmWorld
from tests.conformance.conftest import KUBECTL, CliRunner
from tests.e2e_slack.conftest import WAIT, request_messages

# Pods become Ready quickly: the rules under test do not depend on the delay, the suite's duration does.
POD_READY_SECONDS = 0.1
# Generous for a loaded machine; every wait returns as soon as its condition holds.
ROLLOUT_WAIT = 45.0

CATALOG: dict[str, Any] = {
    "defaults": {
        "approvals": {"required": 1, "approvers": [ALICE, BOB, CAROL], "expires_after": "15m"},
    },
    "targets": {
        "workshop": {"backend": "helm", "release": "workshop", "namespace": "default", "kube_context": "sandbox"},
        # In the catalog, but nobody ever installed it (a typo in the catalog, or an uninstalled release).
        "ghost": {"backend": "helm", "release": "ghost", "namespace": "default", "kube_context": "sandbox"},
    },
}


@pytest.fixture(autouse=True)
def _no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    # slack_sdk honours HTTP(S)_PROXY and ignores NO_PROXY: loopback must not go through a proxy.
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def kubesim(request: pytest.FixtureRequest) -> Iterator[KubeSim]:
    """A fresh kubesim; `@pytest.mark.parametrize("kubesim", [seconds], indirect=True)` slows its pods down."""
    with KubeSim(pod_ready_seconds=getattr(request, "param", POD_READY_SECONDS)) as sim:
        yield sim


@pytest.fixture
def helm_world(kubesim: KubeSim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> HelmWorld:
    kubeconfig = tmp_path / "kubeconfig"
    kubesim.write_kubeconfig(kubeconfig)
    world = HelmWorld(kubesim, tmp_path, kubeconfig)
    # The bot runs helm with the process environment: the same isolated HOME and caches as the test's helm.
    for key, value in world.env.items():
        if key != "PATH":
            monkeypatch.setenv(key, value)
    return world


@pytest.fixture
def kubectl(helm_world: HelmWorld) -> CliRunner:
    require_tool("kubectl", KUBECTL.exists(), f"the real kubectl at {KUBECTL}")
    env = helm_world.env | {"KUBECACHEDIR": str(helm_world.workdir / "kube-cache")}
    return CliRunner(KUBECTL, env, helm_world.workdir)


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


@pytest.fixture
def make_bot(
    fake_slack: FakeSlack, redis_url: str, tmp_path: Path, helm_world: HelmWorld
) -> Iterator[Callable[..., RollbotApp]]:
    """Build and start a bot with the real backends; `rollout_timeout` and friends may be overridden."""
    started: list[RollbotApp] = []
    catalog_path = tmp_path / "catalog.yaml"
    catalog_path.write_text(yaml.safe_dump(CATALOG), encoding="utf-8")

    def make(**overrides: Any) -> RollbotApp:
        fields: dict[str, Any] = {
            "slack_bot_token": BOT_TOKEN,
            "slack_signing_secret": SIGNING_SECRET,
            "slack_api_url": fake_slack.api_url,
            "redis_url": redis_url,
            "config_path": catalog_path,
            "kubeconfig": str(helm_world.kubeconfig),
            "helm_path": str(HELM),
            "host": "127.0.0.1",
            "port": 0,
            "rollout_timeout": timedelta(seconds=30),
            "sweep_interval": timedelta(milliseconds=200),
        }
        bot = build_app(Settings(**(fields | overrides))).start()
        started.append(bot)
        return bot

    yield make
    for bot in reversed(started):
        bot.stop()


@pytest.fixture
def bot(make_bot: Callable[..., RollbotApp]) -> RollbotApp:
    return make_bot()


@pytest.fixture
def slack(bot: RollbotApp, fake_slack: FakeSlack) -> Iterator[SlackDriver]:
    with SlackDriver(bot.events_url, SIGNING_SECRET, fake_slack) as driver:
        yield driver


def ephemeral_reply(fake: FakeSlack, user: str, containing: str, timeout: float = WAIT) -> str:
    """The text of the first ephemeral message `user` got that contains `containing` (waits for it)."""

    def found() -> str | None:
        texts = [e.all_text() for e in fake.ephemerals(user=user)]
        return next((text for text in texts if containing in text), None)

    reply: str = fake.wait_for(found, timeout, description=f"an ephemeral to {user} containing {containing!r}")
    return reply


def verdict(lines: list[str], prefix: str) -> str:
    """The one thread line starting with `prefix` (the rollout message may be posted after it, so not lines[-1])."""
    found = [line for line in lines if line.startswith(prefix)]
    assert len(found) == 1, "\n".join(lines)
    return found[0]


def no_request_was_posted(fake: FakeSlack) -> bool:
    return request_messages(fake, INCIDENT) == []


__all__ = ["ALICE", "BOB", "INCIDENT", "ROLLOUT_WAIT"]
