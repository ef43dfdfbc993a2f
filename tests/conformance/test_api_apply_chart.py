"""`kubectl apply` of a whole chart's rendered objects (helm template | kubectl apply -f -)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conformance.conftest import CliRunner

pytestmark = [pytest.mark.needs_kubectl, pytest.mark.needs_helm]


@pytest.fixture
def rendered(helm: CliRunner, tmp_path: Path) -> str:
    helm("create", "shop")
    values = ["--set", "ingress.enabled=true", "--set", "autoscaling.enabled=true"]
    return helm("template", "shop", str(tmp_path / "shop"), *values).stdout


def test_apply_creates_every_object_of_the_chart(kubectl: CliRunner, rendered: str) -> None:
    result = kubectl("apply", "-f", "-", stdin=rendered)
    lines = sorted(result.stdout.splitlines())
    assert "deployment.apps/shop created" in lines
    assert "service/shop created" in lines
    assert "serviceaccount/shop created" in lines
    assert "ingress.networking.k8s.io/shop created" in lines
    assert "horizontalpodautoscaler.autoscaling/shop created" in lines
    assert "pod/shop-test-connection created" in lines


def test_reapplying_the_same_chart_is_unchanged(kubectl: CliRunner, rendered: str) -> None:
    kubectl("apply", "-f", "-", stdin=rendered)
    again = kubectl("apply", "-f", "-", stdin=rendered).stdout.splitlines()
    configured = [line for line in again if not line.endswith("unchanged")]
    # Only the bare test pod may differ (the fake kubelet has meanwhile bound it to a node).
    assert all(line.startswith("pod/") for line in configured), again


def test_server_side_apply_of_the_chart_then_delete(kubectl: CliRunner, rendered: str) -> None:
    applied = kubectl("apply", "--server-side", "-f", "-", stdin=rendered).stdout.splitlines()
    assert "deployment.apps/shop serverside-applied" in applied
    deleted = kubectl("delete", "-f", "-", stdin=rendered).stdout
    assert 'deployment.apps "shop" deleted' in deleted
    assert kubectl("get", "deployments", "-o", "name").stdout.strip() == ""
