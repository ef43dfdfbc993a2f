"""`rollbot check-config` on catalog groups: every problem by its path, exit code 2, no traceback."""

from __future__ import annotations

from tests.app.test_cli import VALID, catalog_file, rollbot

__all__ = ["catalog_file"]  # the fixture, shared with test_cli


def test_a_valid_group_passes(catalog_file) -> None:
    result = rollbot("check-config", str(catalog_file(VALID + "groups:\n  shop: [bootcamp, workshop, myservice]\n")))
    assert result.returncode == 0, result.stderr


def test_group_problems_are_named_by_path(catalog_file) -> None:
    groups = (
        "groups:\n"
        "  workshop: [bootcamp, myservice]\n"  # the name of a target
        "  shop: [bootcamp, wrokshop]\n"  # a member that does not exist
        "  lonely: [bootcamp]\n"  # one member is not a batch
    )
    result = rollbot("check-config", str(catalog_file(VALID + groups)))

    assert result.returncode == 2
    assert "groups.workshop: a group can't share its name with a target" in result.stderr
    assert "groups.shop: unknown target(s) wrokshop" in result.stderr
    assert "groups.lonely: a group needs at least two targets" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_group_nobody_could_approve_is_refused(catalog_file) -> None:
    catalog = VALID.replace(
        "myservice:  {backend: ecs, cluster: default, service: myservice, region: ap-northeast-1}",
        "myservice:  {backend: ecs, cluster: default, service: myservice, region: ap-northeast-1,"
        " approvals: {approvers: [U0CCC], approver_groups: []}}",
    ).replace("approvers: [U0AAA, U0BBB], approver_groups: [S0SRE]", "approvers: [U0AAA, U0BBB], approver_groups: []")
    result = rollbot("check-config", str(catalog_file(catalog + "groups:\n  shop: [workshop, myservice]\n")))

    assert result.returncode == 2
    assert "groups.shop: no approver or approver group is allowed for every member" in result.stderr
