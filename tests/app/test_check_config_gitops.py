"""`rollbot check-config` on the catalog's `gitops` keys: the summary line, and wrong values by their path."""

from __future__ import annotations

from tests.app.test_cli import VALID, catalog_file, rollbot

__all__ = ["catalog_file"]  # the fixture, shared with test_cli


def test_the_summary_says_what_a_reverting_reconciler_means_per_target(catalog_file) -> None:
    text = VALID.replace("defaults:\n", "defaults:\n  gitops: warn\n  gitops_reminder: 2h\n", 1)
    text = text.replace("bootcamp:   {backend: kubernetes,", "bootcamp:   {backend: kubernetes, gitops: suspend,")
    result = rollbot("check-config", str(catalog_file(text)))
    assert result.returncode == 0, result.stderr
    assert "gitops: warn, suspend for bootcamp, reminders every 2h;" in result.stdout


def test_the_default_is_refuse(catalog_file) -> None:
    result = rollbot("check-config", str(catalog_file(VALID)))
    assert result.returncode == 0, result.stderr
    assert "; gitops: refuse; detection:" in result.stdout


def test_a_wrong_mode_is_named_by_its_path(catalog_file) -> None:
    text = VALID.replace("bootcamp:   {backend: kubernetes,", "bootcamp:   {backend: kubernetes, gitops: pause,")
    result = rollbot("check-config", str(catalog_file(text)))
    assert result.returncode == 2
    assert "targets.bootcamp.gitops: Input should be 'suspend', 'warn' or 'refuse'" in result.stderr
    assert "Traceback" not in result.stderr
