"""A real bot on 127.0.0.1:0: its HTTP endpoint, a real redis-server and the fake Slack, with a scripted backend.

`bot` is a started `RollbotApp` whose backends are one `MemoryBackend` (every backend kind maps to it) with the
catalog's targets arranged as "revision 1 good, revision 2 current". `slack` is the `SlackDriver` that signs
what it sends; `fake_slack` records what the bot did. `request_rollback()` types a command and returns the
request message the bot posted.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.app import RollbotApp, build_app
from bot.core.catalog import BackendKind, Catalog, parse_catalog
from bot.core.operations import METADATA_EVENT_TYPE, Operation
from bot.settings import Settings
from sandbox.slack.driver import SlackDriver
from sandbox.slack.records import Message
from sandbox.slack.seed import ALICE, BOB, BOT_TOKEN, CAROL, INCIDENT, SIGNING_SECRET, SRE_GROUP
from sandbox.slack.server import FakeSlack
from tests.fakes.memory_backend import MemoryBackend, RolloutScript

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
        "workshop": {"backend": "helm", "release": "workshop", "namespace": "default", "kube_context": "sandbox"},
        "bootcamp": {"backend": "kubernetes", "kind": "Deployment", "name": "kubernetes-bootcamp"},
        "fluentd": {
            "backend": "kubernetes",
            "kind": "DaemonSet",
            "name": "fluentd",
            "namespace": "kube-system",
            "approvals": {"required": 2},
        },
        "payload-api": {"backend": "ecs", "cluster": "default", "service": "payload-api", "region": "ap-northeast-1"},
        # Enough independent targets to run more rollbacks at once than Bolt has listener threads (Pitfall A).
        **{
            f"shop-{n}": {"backend": "kubernetes", "kind": "Deployment", "name": f"shop-{n}", "namespace": "shop"}
            for n in range(1, 8)
        },
    },
    # One request for a Kubernetes, a Helm and an ECS target together (batch rollbacks).
    "groups": {"storefront": ["bootcamp", "workshop", "payload-api"]},
}

# Generous for a loaded CI machine; every wait returns as soon as its condition holds.
WAIT = 10.0


@pytest.fixture(autouse=True)
def _no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    # slack_sdk honours HTTP(S)_PROXY and ignores NO_PROXY (slack.md §7.1): loopback must not go through a proxy.
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "SLACK_CLIENT_ID", "SLACK_CLIENT_SECRET"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


@pytest.fixture
def catalog() -> Catalog:
    return parse_catalog(CATALOG)


@pytest.fixture
def catalog_path(tmp_path: Path) -> Path:
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(CATALOG), encoding="utf-8")
    return path


@pytest.fixture
def backend(catalog: Catalog) -> MemoryBackend:
    backend = MemoryBackend()
    arrange_all(backend, catalog)
    return backend


def arrange_all(backend: MemoryBackend, catalog: Catalog, script: RolloutScript | None = None) -> None:
    for name in catalog.names:
        target = catalog.get(name)
        assert target is not None
        backend.arrange(target, revisions=2, script=script or RolloutScript(steps=3))


def bot_settings(fake_slack: FakeSlack, redis_url: str, catalog_path: Path, **overrides: Any) -> Settings:
    fields: dict[str, Any] = {
        "slack_bot_token": BOT_TOKEN,
        "slack_signing_secret": SIGNING_SECRET,
        "slack_api_url": fake_slack.api_url,
        "redis_url": redis_url,
        "config_path": catalog_path,
        "host": "127.0.0.1",
        "port": 0,
        "lease": timedelta(seconds=3),
        "sweep_interval": timedelta(milliseconds=200),
        "rollout_timeout": timedelta(seconds=30),
        # The fake Slack enforces no limits unless a test asks: the bot's budget runs a minute per second too.
        "slack_budget_scale": 60.0,
    }
    return Settings(**(fields | overrides))


@pytest.fixture
def make_bot(
    fake_slack: FakeSlack, redis_url: str, catalog_path: Path, backend: MemoryBackend
) -> Iterator[Callable[..., RollbotApp]]:
    """Build and start a bot (several may share the Redis); all are stopped at the end of the test."""
    started: list[RollbotApp] = []

    def make(**overrides: Any) -> RollbotApp:
        injected = {key: overrides.pop(key) for key in ("clock", "backends", "watchers") if key in overrides}
        settings = bot_settings(fake_slack, redis_url, catalog_path, **overrides)
        backends = injected.pop("backends", None) or {kind: backend for kind in BackendKind}
        app = build_app(settings, backends=backends, **injected)
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


@dataclass
class Request:
    """A posted request message and the operation behind it."""

    message: Message
    operation: Operation

    @property
    def ts(self) -> str:
        return self.message.ts

    @property
    def channel(self) -> str:
        return self.message.channel


def request_messages(fake: FakeSlack, channel: str = INCIDENT) -> list[Message]:
    return [m for m in fake.messages(channel) if (m.metadata or {}).get("event_type") == METADATA_EVENT_TYPE]


def request_rollback(
    slack: SlackDriver,
    fake: FakeSlack,
    bot: RollbotApp,
    text: str = "workshop 1",
    user: str = ALICE,
    channel: str = INCIDENT,
) -> Request:
    before = len(request_messages(fake, channel))
    ack = slack.slash_command(text, user=user, channel=channel)
    assert ack.status == 200, ack.text
    posted = fake.wait_for(
        lambda: (found := request_messages(fake, channel)) and len(found) > before and found,
        WAIT,
        description="the request message",
    )
    message = posted[-1]
    operation_id = message.metadata["event_payload"]["operation_id"]  # type: ignore[index]
    operation = bot.store.get(operation_id)
    assert operation is not None
    return Request(message=message, operation=operation)


def phase_of(fake: FakeSlack, request: Request) -> str:
    message = fake.message(request.channel, request.ts)
    return str((message.metadata or {}).get("event_payload", {}).get("phase"))


def wait_for_phase(fake: FakeSlack, request: Request, phase: str, timeout: float = WAIT) -> Message:
    fake.wait_for(lambda: phase_of(fake, request) == phase, timeout, description=f"request message in phase {phase}")
    return fake.message(request.channel, request.ts)


def eventually(predicate: Callable[[], Any], timeout: float = WAIT, description: str = "") -> Any:
    """Wait for a condition on state the fake Slack cannot signal (Redis): re-check every 20 ms."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not (result := predicate()):
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{description or 'condition'} not satisfied within {timeout} s")
        pause.wait(0.02)
    return result


def thread_texts(fake: FakeSlack, request: Request) -> list[str]:
    return [m.all_text() for m in fake.messages(request.channel, thread_ts=request.ts)]


def wait_for_thread_line(fake: FakeSlack, request: Request, containing: str, timeout: float = WAIT) -> list[str]:
    """The thread once a line containing `containing` is in it."""
    try:
        return fake.wait_for(
            lambda: (lines := thread_texts(fake, request)) and any(containing in line for line in lines) and lines,
            timeout,
            description=f"a thread line containing {containing!r}",
        )
    except TimeoutError as error:
        raise TimeoutError(f"{error}; the thread: {thread_texts(fake, request)}") from None
