"""The environment the chart gives the container is one the real bot starts with, in both modes.

The rendered Deployment's command, environment and mounted catalog are turned into a real `rollbot` process:
`value`s as they are, `secretKeyRef`s resolved from the rendered Secret, `fieldRef`s as the kubelet would,
and the ConfigMap's catalog written where ROLLBOT_CONFIG points (under the test's directory instead of
/etc/rollbot). Only the listening address, HOME and helm's caches are moved into the test's reach. The bot must
then become ready against the fake Slack (Socket Mode: connected over its WebSocket; HTTP: answering a signed
slash command) and a private Redis.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sandbox.slack.driver import SlackDriver
from sandbox.slack.seed import ALICE, APP_TOKEN, BOT_TOKEN, INCIDENT, SIGNING_SECRET
from sandbox.slack.server import FakeSlack
from tests.ship.conftest import VENV_BIN, find, follow, free_port, get, wait_for_line

pytestmark = pytest.mark.needs_helm

CATALOG = {
    "defaults": {"approvals": {"required": 1, "approvers": [ALICE, "U0BOB"]}},
    "targets": {"payments": {"backend": "ecs", "cluster": "prod", "service": "payments", "region": "eu-west-1"}},
}


@pytest.fixture
def fake_slack(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSlack]:
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    with FakeSlack() as fake:
        yield fake


def container_process(objects: list[dict[str, Any]], tmp_path: Path) -> tuple[list[str], dict[str, str]]:
    """The command line and environment the kubelet would start, with the catalog mounted under tmp_path."""
    pod = find(objects, "Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    secrets = {s["metadata"]["name"]: s.get("stringData", {}) for s in objects if s["kind"] == "Secret"}
    env: dict[str, str] = {}
    for item in container["env"]:
        source = item.get("valueFrom")
        if source is None:
            env[item["name"]] = str(item["value"])
        elif "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            env[item["name"]] = secrets[ref["name"]][ref["key"]]
        elif source.get("fieldRef", {}).get("fieldPath") == "metadata.name":
            env[item["name"]] = "rb-rollbot-5d4f8-x2x7q"
    config_map = find(objects, "ConfigMap")
    volume = next(v for v in pod["volumes"] if "configMap" in v)
    mount = next(m for m in container["volumeMounts"] if m["name"] == volume["name"])
    mounted = tmp_path / mount["mountPath"].lstrip("/")
    mounted.mkdir(parents=True)
    for item in volume["configMap"]["items"]:
        (mounted / item["path"]).write_text(config_map["data"][item["key"]], encoding="utf-8")
    env["ROLLBOT_CONFIG"] = str(tmp_path / env["ROLLBOT_CONFIG"].lstrip("/"))
    # Moved into the test's reach: the address (tests share the machine), HOME and helm's caches (/tmp).
    env |= {"ROLLBOT_HOST": "127.0.0.1", "ROLLBOT_PORT": str(free_port())}
    for name in ("HOME", "HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"):
        env[name] = str(tmp_path / env[name].lstrip("/"))
    env["PATH"] = f"{VENV_BIN}:/usr/bin:/bin"
    return [str(VENV_BIN / "rollbot"), *container["args"]], env


def start(command: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def stop(process: subprocess.Popen[str]) -> int:
    process.send_signal(signal.SIGTERM)
    return process.wait(timeout=15)


def test_socket_mode_environment_connects_to_slack_and_becomes_ready(
    render: Callable[..., list[dict[str, Any]]], fake_slack: FakeSlack, redis_url: str, tmp_path: Path
) -> None:
    objects = render(
        {
            "slack": {"botToken": BOT_TOKEN, "appToken": APP_TOKEN, "apiUrl": fake_slack.api_url},
            "redis": {"url": redis_url},
            "catalog": CATALOG,
        }
    )
    command, env = container_process(objects, tmp_path)
    assert "SLACK_SIGNING_SECRET" not in env
    process = start(command, env)
    lines = follow(process)
    try:
        wait_for_line(lines, "serving http")  # the probe server
        fake_slack.wait_for_socket(timeout=20)
        port = int(env["ROLLBOT_PORT"])
        assert get(port, "/healthz") == (200, {"status": "ok"})
        assert get(port, "/readyz") == (200, {"status": "ready"})
    finally:
        code = stop(process)
    assert code == 0


def test_http_mode_environment_answers_a_signed_slash_command(
    render: Callable[..., list[dict[str, Any]]], fake_slack: FakeSlack, redis_url: str, tmp_path: Path
) -> None:
    objects = render(
        {
            "mode": "http",
            "slack": {"botToken": BOT_TOKEN, "signingSecret": SIGNING_SECRET, "apiUrl": fake_slack.api_url},
            "redis": {"url": redis_url},
            "catalog": CATALOG,
        }
    )
    command, env = container_process(objects, tmp_path)
    assert "SLACK_APP_TOKEN" not in env
    process = start(command, env)
    lines = follow(process)
    try:
        serving = wait_for_line(lines, "serving http")
        port = int(env["ROLLBOT_PORT"])
        assert serving["url"] == f"http://127.0.0.1:{port}"
        assert get(port, "/readyz") == (200, {"status": "ready"})
        with SlackDriver(f"http://127.0.0.1:{port}/slack/events", SIGNING_SECRET, fake_slack) as slack:
            ack = slack.slash_command("help", user=ALICE, channel=INCIDENT)
        assert ack.status == 200
        assert "payments" in ack.text
    finally:
        code = stop(process)
    assert code == 0
