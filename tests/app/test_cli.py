"""`rollbot check-config` and `rollbot serve`, run as real processes the way operators run them."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from sandbox.slack import FakeSlack, seed

REPO = Path(__file__).resolve().parents[2]
ROLLBOT = [sys.executable, "-m", "bot.cli"]
SERVE = [sys.executable, "-m", "bot"]  # the Procfile's `web:` line
REDIS_PASSWORD = "s3cr3t-redis-pw"

VALID = """
defaults:
  approvals: {required: 1, approvers: [U0AAA, U0BBB], approver_groups: [S0SRE],
              allow_self_approval: false, expires_after: 15m}
  allowed_channels: [C0INCIDENT]
targets:
  workshop:   {backend: helm, release: workshop, namespace: default, kube_context: sandbox}
  bootcamp:   {backend: kubernetes, kind: Deployment, name: kubernetes-bootcamp, namespace: default}
  fluentd:    {backend: kubernetes, kind: DaemonSet, name: fluentd, namespace: kube-system, approvals: {required: 2}}
  myservice:  {backend: ecs, cluster: default, service: myservice, region: ap-northeast-1}
"""


def rollbot(
    *args: str, env: dict[str, str] | None = None, command: list[str] = ROLLBOT
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "ROLLBOT_", "REDIS_"))}
    return subprocess.run(
        [*command, *args], cwd=REPO, env=clean | (env or {}), capture_output=True, text=True, timeout=60, check=False
    )


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def catalog_file(tmp_path: Path):
    def write(text: str) -> Path:
        path = tmp_path / "catalog.yaml"
        path.write_text(text, encoding="utf-8")
        return path

    return write


def test_a_valid_catalog_passes_with_a_one_line_summary(catalog_file) -> None:
    result = rollbot("check-config", str(catalog_file(VALID)))
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\n") == 1
    assert "OK, 4 target(s)" in result.stdout
    assert "backends: ecs, helm, kubernetes" in result.stdout


def test_every_problem_is_printed_with_its_path_and_exit_code_2(catalog_file) -> None:
    broken = (
        VALID.replace("fluentd:    {backend: kubernetes", "fluentd:    {backend: kubernets").replace(
            "required: 1, approvers", "required: 0, approvers"
        )
        + "  workshop2: {backend: helm, release: w, approvals: {required: 0}}\n  bad: {backend: ecs}\n"
    )
    result = rollbot("check-config", str(catalog_file(broken)))
    assert result.returncode == 2
    assert "defaults.approvals.required: must be ≥ 1" in result.stderr
    assert "targets.workshop2.approvals.required: must be ≥ 1" in result.stderr
    assert "targets.fluentd: backend must be one of helm, kubernetes, ecs" in result.stderr
    assert "targets.bad.service: required field is missing" in result.stderr


def test_yaml_syntax_errors_carry_the_line_number(catalog_file) -> None:
    result = rollbot("check-config", str(catalog_file("targets:\n  workshop: {backend: helm\n  other: [\n")))
    assert result.returncode == 2
    assert "line 3" in result.stderr
    assert "YAML syntax error" in result.stderr


def test_the_path_defaults_to_rollbot_config(catalog_file) -> None:
    path = catalog_file(VALID)
    assert rollbot("check-config", env={"ROLLBOT_CONFIG": str(path)}).returncode == 0
    missing = rollbot("check-config")
    assert missing.returncode == 2
    assert "ROLLBOT_CONFIG" in missing.stderr
    unreadable = rollbot("check-config", str(path.with_name("nope.yaml")))
    assert unreadable.returncode == 2
    assert "cannot read the file" in unreadable.stderr


def test_serve_refuses_to_start_without_a_signing_secret_in_http_mode(catalog_file) -> None:
    result = rollbot(
        "serve",
        env={"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "", "ROLLBOT_CONFIG": str(catalog_file(VALID))},
    )
    assert result.returncode == 2
    assert "SLACK_SIGNING_SECRET is empty" in result.stderr
    assert "xoxb-1" not in result.stderr + result.stdout


def test_serve_reports_a_broken_catalog_before_touching_slack(catalog_file) -> None:
    result = rollbot(
        "serve",
        env={
            "SLACK_BOT_TOKEN": "xoxb-1",
            "SLACK_SIGNING_SECRET": "secret-0123456789",
            "ROLLBOT_CONFIG": str(catalog_file("targets: {x: {backend: helm}}")),
        },
    )
    assert result.returncode == 2
    assert "targets.x.release: required field is missing" in result.stderr


def test_serve_refuses_an_app_token_that_is_not_an_app_level_token(catalog_file) -> None:
    result = rollbot(
        "serve",
        env={"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_APP_TOKEN": "xoxb-wrong", "ROLLBOT_CONFIG": str(catalog_file(VALID))},
    )
    assert result.returncode == 2
    assert "xapp-" in result.stderr


def test_serve_says_why_it_cannot_start_when_slack_is_unreachable(catalog_file) -> None:
    result = rollbot(
        "serve",
        env={
            "SLACK_BOT_TOKEN": "xoxb-1",
            "SLACK_SIGNING_SECRET": "secret-0123456789",
            "SLACK_API_URL": "http://127.0.0.1:9/api/",
            "ROLLBOT_CONFIG": str(catalog_file(VALID)),
        },
    )
    assert result.returncode == 1
    assert "rollbot serve: cannot start" in result.stderr
    assert "secret-0123456789" not in result.stdout + result.stderr


def test_serve_names_an_unreachable_redis_without_its_password(catalog_file) -> None:
    with FakeSlack() as slack:
        result = rollbot(
            env={
                "SLACK_BOT_TOKEN": seed.BOT_TOKEN,
                "SLACK_SIGNING_SECRET": seed.SIGNING_SECRET,
                "SLACK_API_URL": slack.api_url,
                "ROLLBOT_CONFIG": str(catalog_file(VALID)),
                "ROLLBOT_HOST": "127.0.0.1",
                "ROLLBOT_PORT": "0",
                "REDIS_URL": f"redis://:{REDIS_PASSWORD}@127.0.0.1:{closed_port()}/0",
            },
            command=SERVE,
        )
    assert result.returncode == 1
    assert "rollbot serve: cannot start: Redis at REDIS_URL=redis://:[REDACTED]@127.0.0.1:" in result.stderr
    assert "Connection refused" in result.stderr
    assert "Traceback" not in result.stderr
    assert REDIS_PASSWORD not in result.stdout + result.stderr
    assert seed.BOT_TOKEN not in result.stdout + result.stderr


def test_a_refused_argument_is_echoed_redacted(catalog_file) -> None:
    result = rollbot("serve", f"--redis=rediss://rollbot:{REDIS_PASSWORD}@redis.internal:6380/0")
    assert result.returncode == 2
    assert "unrecognized arguments: --redis=rediss://rollbot:[REDACTED]@redis.internal:6380/0" in result.stderr
    assert REDIS_PASSWORD not in result.stderr


def test_check_config_output_hides_configured_secrets(catalog_file) -> None:
    # A catalog path is no place for a secret, but whatever the command prints is redacted all the same.
    secret_dir = catalog_file(VALID).parent / REDIS_PASSWORD
    secret_dir.mkdir()
    path = secret_dir / "catalog.yaml"
    path.write_text("targets: {x: {backend: helm}}", encoding="utf-8")
    result = rollbot("check-config", str(path), env={"REDIS_URL": f"redis://:{REDIS_PASSWORD}@h:6379/0"})
    assert result.returncode == 2
    assert "[REDACTED]/catalog.yaml: 1 problem(s)" in result.stderr
    assert REDIS_PASSWORD not in result.stderr


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("ROLLBOT_LOG_VENDOR", "loud", "ROLLBOT_LOG_VENDOR: Input should be 'quiet' or 'debug'"),
        ("ROLLBOT_PORT", "http", "ROLLBOT_PORT: Input should be a valid integer"),
        ("ROLLBOT_LOG_LEVEL", "verbose", "ROLLBOT_LOG_LEVEL: unknown log level 'verbose'"),
    ],
)
def test_bad_settings_are_named_with_exit_code_2_and_no_traceback(catalog_file, variable, value, says) -> None:
    result = rollbot(
        "serve",
        env={
            "SLACK_BOT_TOKEN": "xoxb-1",
            "SLACK_SIGNING_SECRET": "secret-0123456789",
            "ROLLBOT_CONFIG": str(catalog_file(VALID)),
            variable: value,
        },
    )
    assert result.returncode == 2
    assert f"rollbot serve: {says}" in result.stderr
    assert "Traceback" not in result.stderr


def test_rollbot_log_vendor_accepts_debug_in_any_case(catalog_file) -> None:
    result = rollbot("check-config", env={"ROLLBOT_CONFIG": str(catalog_file(VALID)), "ROLLBOT_LOG_VENDOR": "DEBUG"})
    assert result.returncode == 0, result.stderr
