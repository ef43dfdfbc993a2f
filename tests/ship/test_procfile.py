"""The Procfile's commands start: `release` validates the catalog, `web` serves HTTP on $PORT until SIGTERM.

Each command runs exactly as a Procfile platform runs it (`bash -c "<command>"` with the platform's
environment): the installed `rollbot` console script, a fake Slack, a private redis-server.
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest
import yaml

from sandbox.slack.driver import SlackDriver
from sandbox.slack.seed import ALICE, BOT_TOKEN, INCIDENT, SIGNING_SECRET
from sandbox.slack.server import FakeSlack
from tests.ship.conftest import REPO, VENV_BIN, follow, free_port, get, wait_for_line

CATALOG = {
    "defaults": {"approvals": {"required": 1, "approvers": [ALICE, "U0BOB"]}},
    "targets": {"bootcamp": {"backend": "kubernetes", "kind": "Deployment", "name": "kubernetes-bootcamp"}},
}


def procfile() -> dict[str, str]:
    processes: dict[str, str] = {}
    for line in (REPO / "Procfile").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, command = line.split(":", 1)
            processes[name.strip()] = command.strip()
    return processes


def platform_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """What a platform gives the process: PATH with the app's executables, HOME, and the config vars."""
    return {"PATH": f"{VENV_BIN}:/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8", **extra}


@pytest.fixture
def catalog_path(tmp_path: Path) -> Path:
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(CATALOG), encoding="utf-8")
    return path


def run(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", command], env=env, capture_output=True, text=True, timeout=30, check=False)


def test_procfile_declares_web_and_release() -> None:
    processes = procfile()
    assert set(processes) == {"web", "release"}
    assert processes["web"].startswith("rollbot serve")
    assert processes["release"].startswith("rollbot check-config")


def test_release_step_accepts_a_valid_catalog(tmp_path: Path, catalog_path: Path) -> None:
    result = run(procfile()["release"], platform_env(tmp_path, ROLLBOT_CONFIG=str(catalog_path)))
    assert result.returncode == 0, result.stderr
    assert "OK, 1 target(s) (bootcamp)" in result.stdout


def test_release_step_stops_a_deploy_with_a_broken_catalog(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("targets:\n  web: {backend: kubernetes, kind: Pod, name: web}\n", encoding="utf-8")
    result = run(procfile()["release"], platform_env(tmp_path, ROLLBOT_CONFIG=str(broken)))
    assert result.returncode == 2
    assert "targets.web" in result.stderr


def test_web_serves_http_on_port_answers_slack_and_stops_on_sigterm(
    tmp_path: Path, catalog_path: Path, redis_url: str
) -> None:
    port = free_port()
    with FakeSlack() as fake:
        env = platform_env(
            tmp_path,
            PORT=str(port),
            ROLLBOT_HOST="127.0.0.1",
            SLACK_BOT_TOKEN=BOT_TOKEN,
            SLACK_SIGNING_SECRET=SIGNING_SECRET,
            SLACK_API_URL=fake.api_url,
            REDIS_URL=redis_url,
            ROLLBOT_CONFIG=str(catalog_path),
            KUBECONFIG=str(tmp_path / "no-kubeconfig"),
        )
        process = subprocess.Popen(
            ["bash", "-c", f"exec {procfile()['web']}"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        lines = follow(process)
        try:
            serving = wait_for_line(lines, "serving http")
            assert serving["url"] == f"http://127.0.0.1:{port}"
            assert get(port, "/healthz") == (200, {"status": "ok"})
            assert get(port, "/readyz") == (200, {"status": "ready"})
            with SlackDriver(f"http://127.0.0.1:{port}/slack/events", SIGNING_SECRET, fake) as slack:
                ack = slack.slash_command("help", user=ALICE, channel=INCIDENT)
            assert ack.status == 200
            assert "bootcamp" in ack.text
        finally:
            process.send_signal(signal.SIGTERM)
            code = process.wait(timeout=15)
        assert code == 0
