"""`rollbot check-config` on automatic rollback: who opted in under which limits, and every mistake by its path."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.app.test_cli import rollbot

AUTO = """
defaults:
  approvals: {required: 1, approvers: [U0AAA, U0BBB]}
  detect: {channel: C0INCIDENT}
  auto_rollback_limits: {per_target: 2/30m, per_context: 5/15m}
targets:
  bootcamp:
    backend: kubernetes
    kind: Deployment
    name: kubernetes-bootcamp
    auto_rollback: {on: [ProgressDeadlineExceeded, CrashLoopBackOff, alert, pipeline], countdown: 2m, approvals: 0}
  web: {backend: kubernetes, kind: Deployment, name: web}
"""


@pytest.fixture
def write(tmp_path: Path):
    def _write(text: str) -> Path:
        path = tmp_path / "catalog.yaml"
        path.write_text(text, encoding="utf-8")
        return path

    return _write


def test_the_summary_names_the_targets_that_opted_in_and_the_limits(write) -> None:
    result = rollbot("check-config", str(write(AUTO)))
    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip().endswith("automatic rollback: bootcamp (limits 2/30m per target, 5/15m per context)")


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (
            ("CrashLoopBackOff, alert", "crashloopbackoff, alert"),
            "targets.bootcamp.auto_rollback.on: 'crashloopbackoff': reasons are case-sensitive — "
            "did you mean CrashLoopBackOff?",
        ),
        (
            ("per_context: 5/15m", "per_context: 5 per 15m"),
            "defaults.auto_rollback_limits.per_context: '5 per 15m' is not a limit like 1/1h",
        ),
        (
            ("approvals: 0}", "approvals: 3}"),
            "targets.bootcamp.auto_rollback.approvals: 3 approvals needed but only 2 approvers listed",
        ),
        (("countdown: 2m", "countdown: soon"), "targets.bootcamp.auto_rollback.countdown: expected a duration"),
        (("  detect: {channel: C0INCIDENT}\n", ""), "the countdown runs on the incident card, and no channel is set"),
        (("on: [ProgressDeadlineExceeded, CrashLoopBackOff, alert, pipeline]", "on: []"), "list at least one"),
    ],
)
def test_a_mistake_is_named_by_its_path_without_a_traceback(write, change: tuple[str, str], problem: str) -> None:
    broken = AUTO.replace(*change)
    assert broken != AUTO
    result = rollbot("check-config", str(write(broken)))
    assert result.returncode == 2
    assert problem in result.stderr
    assert "Traceback" not in result.stderr
