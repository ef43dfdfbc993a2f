"""`rollbot serve` as operators run it: environment in, JSON logs out, Slack's endpoint and probes on one port."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.slack.driver import SlackDriver
from sandbox.slack.seed import BOT_TOKEN, DAVE, INCIDENT, SIGNING_SECRET
from sandbox.slack.server import FakeSlack
from tests.app.test_cli import VALID

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


@pytest.fixture
def served(fake_slack: FakeSlack, redis_url: str, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(VALID.replace("[C0INCIDENT]", "[]"), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")} | {
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": fake_slack.api_url,
        "REDIS_URL": redis_url,
        "ROLLBOT_CONFIG": str(catalog),
        "ROLLBOT_HOST": "127.0.0.1",
        "ROLLBOT_PORT": "0",
    }
    process = subprocess.Popen([sys.executable, "-m", "bot"], cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    url = None
    for line in process.stdout:  # JSON log lines; the server says where it listens
        record = json.loads(line)
        if record.get("event") == "serving http":
            url = record["url"]
            break
    assert url, "rollbot serve never said where it listens"
    yield process, url
    if process.poll() is None:
        process.kill()
        process.wait(timeout=10)


def _get(url: str) -> int:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - http to loopback
        return int(response.status)


def test_serve_answers_probes_and_signed_commands_and_stops_on_sigterm(served, fake_slack) -> None:
    process, url = served
    assert _get(f"{url}/healthz") == 200
    assert _get(f"{url}/readyz") == 200
    with SlackDriver(f"{url}/slack/events", SIGNING_SECRET, fake_slack) as slack:
        ack = slack.slash_command("help", user=DAVE, channel=INCIDENT)
        assert ack.status == 200
        assert "workshop" in (ack.ephemeral_text or "") + json.dumps(ack.json)
        assert slack.bad_signature().status == 401
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=15) == 0
    remaining = process.stdout.read() if process.stdout else ""
    assert SIGNING_SECRET not in remaining
    assert BOT_TOKEN not in remaining
