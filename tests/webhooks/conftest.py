"""A real bot on 127.0.0.1:0 with its webhooks enabled, the fake Slack, a real redis-server, and (for the
Alertmanager tests) a real `prometheus-alertmanager` process whose webhook receivers post to the bot."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.app import RollbotApp, build_app
from bot.core.catalog import BackendKind, parse_catalog
from bot.core.incident_record import INCIDENT_EVENT_TYPE
from sandbox.slack.records import Message
from sandbox.slack.seed import ALICE, BOB, INCIDENT
from sandbox.slack.server import FakeSlack
from tests._policy import require_tool
from tests.e2e_slack.conftest import arrange_all, bot_settings
from tests.fakes.memory_backend import MemoryBackend

TOKEN = "am-token-0123456789"
SECRET = "pipeline-secret-0123456789"
CATALOG: dict[str, Any] = {
    "defaults": {"approvals": {"required": 1, "approvers": [ALICE, BOB]}},
    "targets": {
        # Watched by rollbot: its health rule ends the incident, the alert's end is only noted.
        "bootcamp": {
            "backend": "kubernetes",
            "kind": "Deployment",
            "name": "kubernetes-bootcamp",
            "detect": {"channel": INCIDENT, "alert_match": {"service": "bootcamp"}},
        },
        # Reports only (detection off): the alert's end ends the incident.
        "shop-1": {
            "backend": "kubernetes",
            "kind": "Deployment",
            "name": "shop-1",
            "namespace": "shop",
            "detect": {"channel": INCIDENT, "enabled": False},
        },
    },
}
# Generous for a loaded machine; every wait returns as soon as its condition holds.
WAIT = 10.0


@pytest.fixture(autouse=True)
def _no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


@pytest.fixture
def bot(fake_slack: FakeSlack, redis_url: str, tmp_path: Path) -> Iterator[RollbotApp]:
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(CATALOG), encoding="utf-8")
    catalog = parse_catalog(CATALOG)
    backend = MemoryBackend()
    arrange_all(backend, catalog)
    settings = bot_settings(fake_slack, redis_url, path, webhook_token=TOKEN, webhook_secret=SECRET, detect=False)
    app = build_app(settings, backends={kind: backend for kind in BackendKind}, catalog=catalog)
    app.start()
    yield app
    app.stop()


def incident_cards(fake: FakeSlack) -> list[Message]:
    return [m for m in fake.messages(INCIDENT) if (m.metadata or {}).get("event_type") == INCIDENT_EVENT_TYPE]


def card_payload(card: Message) -> dict[str, Any]:
    return dict((card.metadata or {})["event_payload"])


def metric(bot: RollbotApp, name: str, **labels: str) -> float:
    return bot.metrics.registry.get_sample_value(name, labels) or 0.0


def wait_until(condition: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def http_post(url: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    """POST and return the status and the JSON answer (4xx/5xx included)."""
    request = urllib.request.Request(url, data=body, method="POST", headers=headers or {})  # noqa: S310
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (http only)
            return response.status, _json(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, _json(exc.read())


def _json(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError:
        return {"raw": raw.decode(errors="replace")}
    return value if isinstance(value, dict) else {"value": value}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Alertmanager:
    url: str

    def post_alerts(self, *alerts: dict[str, Any]) -> None:
        status, body = http_post(f"{self.url}/api/v2/alerts", json.dumps(list(alerts)).encode())
        assert status == 200, body


@pytest.fixture
def alertmanager(bot: RollbotApp, tmp_path: Path) -> Iterator[Alertmanager]:
    binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    require_tool("prometheus-alertmanager", binary is not None, "Debian package prometheus-alertmanager")
    assert binary is not None
    hook = f"{bot.url}/webhooks/alertmanager"
    config = {
        "route": {
            "receiver": "rollbot",
            "group_by": ["alertname", "service"],
            # group_wait 1 s: the first notification; repeats every second make redeliveries happen fast.
            "group_wait": "1s",
            "group_interval": "1s",
            "repeat_interval": "1s",
            "routes": [{"receiver": "impostor", "matchers": ['team="impostor"']}],
        },
        "receivers": [
            {"name": "rollbot", "webhook_configs": [_webhook(hook, TOKEN)]},
            {"name": "impostor", "webhook_configs": [_webhook(hook, "not-the-token")]},
        ],
    }
    config_path = tmp_path / "alertmanager.yml"
    config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
    port = _free_port()
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config_path}",
            f"--storage.path={tmp_path / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",  # a single instance: no gossip port to collide with
            "--log.level=warn",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _is_ready(url, process), "alertmanager to be ready")
        yield Alertmanager(url)
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()


def _webhook(url: str, token: str) -> dict[str, Any]:
    return {
        "url": url,
        "send_resolved": True,
        "http_config": {"authorization": {"type": "Bearer", "credentials": token}},
    }


def _is_ready(url: str, process: subprocess.Popen[str]) -> bool:
    if process.poll() is not None:
        stderr = process.stderr.read() if process.stderr is not None else ""
        raise AssertionError(f"alertmanager exited with {process.returncode}: {stderr[-2000:]}")
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as response:  # noqa: S310
            return bool(response.status == 200)
    except OSError:
        return False
