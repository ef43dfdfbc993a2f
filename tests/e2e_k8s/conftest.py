"""A real bot with the real Kubernetes backend, against kubesim, driven through its signed HTTP endpoint.

Each test gets a fresh kubesim (with the seeds' missing images), a kubeconfig with context `sandbox`, the fake
Slack, a private Redis database and a bot built by `bot.app.build_app` exactly as in production. The real
`kubectl` arranges the workloads, as people do.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.app import RollbotApp, build_app
from bot.settings import Settings
from sandbox.kubesim.cluster import KubeSim
from sandbox.kubesim.registry import RegistryConfig
from sandbox.slack.driver import SlackDriver
from sandbox.slack.seed import ALICE, BOB, BOT_TOKEN, CAROL, INCIDENT, SIGNING_SECRET
from sandbox.slack.server import FakeSlack
from tests._policy import require_tool
from tests.conformance.conftest import KUBECTL, CliRunner

MISSING_IMAGES = ["*:v10", "*non-existing*", "*:broken"]
POD_READY_SECONDS = 0.1

CATALOG: dict[str, Any] = {
    "defaults": {
        "approvals": {"required": 1, "approvers": [ALICE, BOB, CAROL], "expires_after": "15m"},
        "kubernetes": {"allowed_namespaces": ["default"]},
    },
    "targets": {
        "bootcamp": {
            "backend": "kubernetes",
            "kind": "Deployment",
            "name": "kubernetes-bootcamp",
            "kube_context": "sandbox",
        },
        "web": {"backend": "kubernetes", "kind": "Deployment", "name": "web", "kube_context": "sandbox"},
        "agent": {"backend": "kubernetes", "kind": "DaemonSet", "name": "agent", "kube_context": "sandbox"},
        "db": {"backend": "kubernetes", "kind": "StatefulSet", "name": "db", "kube_context": "sandbox"},
        "fluentd": {
            "backend": "kubernetes",
            "kind": "DaemonSet",
            "name": "fluentd",
            "namespace": "kube-system",
            "kube_context": "sandbox",
        },
        "elsewhere": {"backend": "kubernetes", "kind": "Deployment", "name": "web", "kube_context": "production"},
    },
}


@pytest.fixture(autouse=True)
def _no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    # slack_sdk honours HTTP(S)_PROXY and ignores NO_PROXY: loopback must not go through a proxy.
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)


@dataclass
class KubeCluster:
    sim: KubeSim
    kubeconfig: Path
    kubectl: CliRunner


def start_cluster(tmp_path: Path, registry: RegistryConfig | None = None) -> tuple[KubeSim, KubeCluster]:
    """A fresh kubesim and a kubectl for it; `registry` (kept by a test that changes it later) defaults to the
    seeds' missing images."""
    require_tool("kubectl", KUBECTL.exists(), f"the real kubectl at {KUBECTL}")
    registry = registry if registry is not None else RegistryConfig(missing=list(MISSING_IMAGES))
    sim = KubeSim(pod_ready_seconds=POD_READY_SECONDS, registry=registry).start()
    tmp_path.mkdir(parents=True, exist_ok=True)
    kubeconfig = tmp_path / "kubeconfig"
    sim.write_kubeconfig(kubeconfig)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path / "home"),
        "KUBECONFIG": str(kubeconfig),
        "KUBECACHEDIR": str(tmp_path / "kube-cache"),
    }
    return sim, KubeCluster(sim, kubeconfig, CliRunner(KUBECTL, env, tmp_path))


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[KubeCluster]:
    sim, cluster = start_cluster(tmp_path / "cluster")
    try:
        yield cluster
    finally:
        sim.stop()


@pytest.fixture
def make_cluster(tmp_path: Path) -> Iterator[Callable[[str], KubeCluster]]:
    """Fresh kubesim instances on demand (the parity tests compare two of them)."""
    started: list[KubeSim] = []

    def make(name: str) -> KubeCluster:
        sim, cluster = start_cluster(tmp_path / name)
        started.append(sim)
        return cluster

    yield make
    for sim in started:
        sim.stop()


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


def bot_settings(
    fake_slack: FakeSlack,
    redis_url: str,
    catalog_path: Path,
    cluster: KubeCluster,
    *,
    rollout_timeout: timedelta = timedelta(seconds=30),
    slack_budget_scale: float = 1.0,
) -> Settings:
    """A bot on the fake Slack and kubesim, sweeping every 200 ms."""
    return Settings(
        slack_bot_token=BOT_TOKEN,
        slack_signing_secret=SIGNING_SECRET,
        slack_api_url=fake_slack.api_url,
        redis_url=redis_url,
        config_path=catalog_path,
        kubeconfig=str(cluster.kubeconfig),
        host="127.0.0.1",
        port=0,
        rollout_timeout=rollout_timeout,
        sweep_interval=timedelta(milliseconds=200),
        slack_budget_scale=slack_budget_scale,
    )


@contextmanager
def running_bot(settings: Settings) -> Iterator[RollbotApp]:
    app = build_app(settings).start()
    try:
        yield app
    finally:
        app.stop()


@pytest.fixture
def make_bot(fake_slack: FakeSlack, redis_url: str, tmp_path: Path) -> Iterator[Callable[[KubeCluster], RollbotApp]]:
    started: list[RollbotApp] = []
    catalog_path = tmp_path / "catalog.yaml"
    catalog_path.write_text(yaml.safe_dump(CATALOG), encoding="utf-8")

    def make(cluster: KubeCluster) -> RollbotApp:
        bot = build_app(bot_settings(fake_slack, redis_url, catalog_path, cluster)).start()
        started.append(bot)
        return bot

    yield make
    for bot in reversed(started):
        bot.stop()


@pytest.fixture
def bot(make_bot: Callable[[KubeCluster], RollbotApp], cluster: KubeCluster) -> RollbotApp:
    return make_bot(cluster)


@pytest.fixture
def slack(bot: RollbotApp, fake_slack: FakeSlack) -> Iterator[SlackDriver]:
    with SlackDriver(bot.events_url, SIGNING_SECRET, fake_slack) as driver:
        yield driver


__all__ = ["ALICE", "BOB", "INCIDENT", "KubeCluster"]
