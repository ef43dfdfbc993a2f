"""`rollbot check-config` and `rollbot serve`, run as real processes the way operators run them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ROLLBOT = [sys.executable, "-m", "bot.cli"]

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


def rollbot(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "ROLLBOT_", "REDIS_"))}
    return subprocess.run(
        [*ROLLBOT, *args], cwd=REPO, env=clean | (env or {}), capture_output=True, text=True, timeout=60, check=False
    )


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
