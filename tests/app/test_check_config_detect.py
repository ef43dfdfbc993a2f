"""`rollbot check-config` says whether failure detection is on, where its cards go and what it watches."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.app.test_cli import VALID, rollbot

DETECTING = """
defaults:
  approvals: {required: 1, approvers: [U0AAA, U0BBB]}
  detect: {channel: C0INCIDENT, failing_for: 2m, healthy_for: 2m, stall_after: 10m}
  kubernetes: {kube_context: sandbox}
targets:
  bootcamp: {backend: kubernetes, kind: Deployment, name: kubernetes-bootcamp, namespace: default,
             kube_context: sandbox, detect: {channel: C0WEB}}
  legacy:   {backend: kubernetes, kind: Deployment, name: legacy, namespace: legacy, detect: {enabled: false}}
watch:
  - {backend: kubernetes, kube_context: sandbox, namespaces: ["*"]}
  - {backend: helm, kube_context: sandbox, namespaces: [shop]}
  - {backend: ecs, region: us-east-1, clusters: [default]}
"""


@pytest.fixture
def write(tmp_path: Path):
    def _write(text: str) -> Path:
        path = tmp_path / "catalog.yaml"
        path.write_text(text, encoding="utf-8")
        return path

    return _write


def test_a_catalog_without_a_detect_channel_says_detection_is_off(write) -> None:
    result = rollbot("check-config", str(write(VALID)))
    assert result.returncode == 0, result.stderr
    assert "; detection: off (no detect.channel anywhere); automatic rollback: off" in result.stdout


def test_the_summary_names_the_card_channels_and_every_watched_context(write) -> None:
    result = rollbot("check-config", str(write(DETECTING)))
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\n") == 1
    summary = result.stdout.split("detection: ", 1)[1].split("; automatic rollback:")[0].strip()
    assert summary == (
        "cards to C0INCIDENT, C0WEB; watching ecs:us-east-1 (default); helm:sandbox (shop); "
        "kubernetes:sandbox (every namespace)"
    )


def test_a_bad_watch_scope_is_named_by_its_path(write) -> None:
    broken = DETECTING.replace('namespaces: ["*"]', 'namespaces: ["*", default]')
    result = rollbot("check-config", str(write(broken)))
    assert result.returncode == 2
    assert "watch.0" in result.stderr
    assert '"*" already means every namespace' in result.stderr
    assert "Traceback" not in result.stderr
