"""Helm v4 server-side apply against kubesim's field ownership: drift made by kubectl conflicts."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conformance.conftest import CliRunner, needs_controllers

pytestmark = [pytest.mark.needs_helm, pytest.mark.needs_kubectl, needs_controllers]


@pytest.fixture
def chart(helm: CliRunner, tmp_path: Path) -> str:
    helm("create", "shop")
    return str(tmp_path / "shop")


def test_rollback_conflicts_with_an_image_changed_by_kubectl_set_image(
    helm: CliRunner, kubectl: CliRunner, chart: str
) -> None:
    helm("install", "shop", chart)
    helm("upgrade", "shop", chart, "--set", "replicaCount=2")
    kubectl("set", "image", "deployment/shop", "shop=nginx:9.9")
    failed = helm("rollback", "shop", "1", check=False)
    assert failed.returncode == 1
    assert (
        'Apply failed with 1 conflict: conflict with "kubectl-set" using apps/v1: '
        '.spec.template.spec.containers[name="shop"].image'
    ) in failed.stderr
    statuses = [row["status"] for row in helm("history", "shop", "-o", "json").json()]
    assert statuses[-1] == "failed"


def test_upgrade_removes_fields_dropped_from_the_chart(helm: CliRunner, kubectl: CliRunner, chart: str) -> None:
    helm("install", "shop", chart, "--set", "podAnnotations.team=blue")
    template = kubectl("get", "deployment", "shop", "-o", "json").json()["spec"]["template"]
    assert template["metadata"]["annotations"] == {"team": "blue"}
    # Non-empty values, otherwise helm reuses the previous release's values.
    helm("upgrade", "shop", chart, "--set", "replicaCount=1")
    template = kubectl("get", "deployment", "shop", "-o", "json").json()["spec"]["template"]
    assert "team" not in (template["metadata"].get("annotations") or {})


def test_install_over_an_existing_unowned_object_is_refused(helm: CliRunner, kubectl: CliRunner, chart: str) -> None:
    kubectl("create", "serviceaccount", "shop")
    failed = helm("install", "shop", chart, check=False)
    assert failed.returncode == 1
    assert "exists and cannot be imported into the current release" in failed.stderr


def test_release_installed_with_client_side_apply_upgrades_and_rolls_back(
    helm: CliRunner, kubectl: CliRunner, chart: str
) -> None:
    helm("install", "shop", chart, "--server-side=false")
    helm("upgrade", "shop", chart, "--set", "image.tag=non-existing")
    image = "{.spec.template.spec.containers[0].image}"
    assert kubectl("get", "deployment", "shop", "-o", f"jsonpath={image}").stdout == "nginx:non-existing"
    helm("rollback", "shop", "1")
    assert kubectl("get", "deployment", "shop", "-o", f"jsonpath={image}").stdout == "nginx:1.16.0"
    assert [row["status"] for row in helm("history", "shop", "-o", "json").json()] == [
        "superseded",
        "superseded",
        "deployed",
    ]
