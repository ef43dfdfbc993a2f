"""Seed 000 (the EKS workshop's Helm rollback chapter) with the real helm v4 and kubectl against kubesim.

A `helm create` chart is installed, upgraded to an image that does not exist (pods go ImagePullBackOff),
inspected with `helm history`/`helm status`, and rolled back to revision 1.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sandbox.kubesim.cluster import KubeSim
from tests.conformance.conftest import CliRunner, needs_controllers

pytestmark = [pytest.mark.needs_helm, pytest.mark.needs_kubectl, needs_controllers]

RELEASE = "workshop"
BROKEN = ("--set", "image.repository=brentley/ecsdemo-nodejs-non-existing", "--set", "image.tag=latest")


@pytest.fixture
def chart(helm: CliRunner, tmp_path: Path) -> str:
    helm("create", "eksdemo")
    return str(tmp_path / "eksdemo")


def _history(helm: CliRunner) -> list[tuple[int, str, str]]:
    """(revision, status, description) rows of `helm history` in output order."""
    rows = helm("history", RELEASE, "-o", "json").json()
    return [(row["revision"], row["status"], row["description"]) for row in rows]


def _pod_rows(kubectl: CliRunner) -> list[list[str]]:
    lines = kubectl("get", "pods").stdout.splitlines()
    return [line.split() for line in lines[1:] if line.strip()]


def _deployment_images(kubesim: KubeSim) -> list[str]:
    deployment = kubesim.store.get(("apps", "v1", "deployments"), "default", "workshop-eksdemo")
    return [c["image"] for c in deployment["spec"]["template"]["spec"]["containers"]]


def test_upgrade_to_missing_image_shows_image_pull_backoff_and_rollback_restores_revision_one(
    helm: CliRunner, kubectl: CliRunner, chart: str, kubesim: KubeSim, wait_for: Callable[..., Any]
) -> None:
    install = helm("install", RELEASE, chart, "--set", "replicaCount=3", "--wait", "--timeout", "30s")
    assert "STATUS: deployed" in install.stdout
    assert "REVISION: 1" in install.stdout
    good_images = _deployment_images(kubesim)
    assert wait_for(lambda: len(_pod_rows(kubectl)) == 3, message="three pods")

    upgrade = helm("upgrade", RELEASE, chart, "--set", "replicaCount=3", *BROKEN)
    assert 'Release "workshop" has been upgraded. Happy Helming!' in upgrade.stdout
    assert "REVISION: 2" in upgrade.stdout

    def broken_pod() -> list[str] | None:
        return next((row for row in _pod_rows(kubectl) if row[2] == "ImagePullBackOff"), None)

    row = wait_for(broken_pod, message="a pod in ImagePullBackOff")
    assert row[1] == "0/1"
    running = [r for r in _pod_rows(kubectl) if r[2] == "Running"]
    assert len(running) == 3, "the old ReplicaSet keeps serving while the new pod cannot pull"

    status = helm("status", RELEASE).stdout
    assert "STATUS: deployed" in status
    assert "REVISION: 2" in status
    assert _history(helm) == [
        (1, "superseded", "Install complete"),
        (2, "deployed", "Upgrade complete"),
    ]

    rollback = helm("rollback", RELEASE, "1")
    assert "Rollback was a success! Happy Helming!" in rollback.stdout
    status = helm("status", RELEASE).stdout
    assert "STATUS: deployed" in status
    assert "REVISION: 3" in status
    assert _history(helm) == [
        (1, "superseded", "Install complete"),
        (2, "superseded", "Upgrade complete"),
        (3, "deployed", "Rollback to 1"),
    ]
    assert _deployment_images(kubesim) == good_images

    def recovered() -> bool:
        rows = _pod_rows(kubectl)
        return len(rows) == 3 and all(r[1] == "1/1" and r[2] == "Running" for r in rows)

    wait_for(recovered, message="the error is gone: three Running pods only")

    table = helm("history", RELEASE).stdout.splitlines()
    assert table[0].split()[:3] == ["REVISION", "UPDATED", "STATUS"]
    assert [line.split()[0] for line in table[1:]] == ["1", "2", "3"]


def test_upgrade_with_wait_to_a_missing_image_fails_and_marks_the_release_failed(
    helm: CliRunner, kubectl: CliRunner, chart: str
) -> None:
    helm("install", RELEASE, chart, "--wait", "--timeout", "30s")
    failed = helm("upgrade", RELEASE, chart, *BROKEN, "--wait", "--timeout", "3s", check=False)
    assert failed.returncode == 1
    assert "Error: UPGRADE FAILED:" in failed.stderr
    assert "context deadline exceeded" in failed.stderr
    assert "STATUS: failed" in helm("status", RELEASE).stdout
    history = _history(helm)
    assert [(rev, status) for rev, status, _ in history] == [(1, "deployed"), (2, "failed")]
    assert history[1][2].startswith('Upgrade "workshop" failed:')

    helm("rollback", RELEASE, "1", "--wait", "--timeout", "30s")
    assert [(rev, status) for rev, status, _ in _history(helm)] == [(1, "superseded"), (2, "failed"), (3, "deployed")]


def test_release_is_stored_in_helm_secrets(helm: CliRunner, kubectl: CliRunner, chart: str) -> None:
    helm("install", RELEASE, chart)
    secrets = kubectl("get", "secrets", "-l", "owner=helm,name=workshop", "-o", "json").json()["items"]
    assert [s["metadata"]["name"] for s in secrets] == ["sh.helm.release.v1.workshop.v1"]
    assert secrets[0]["type"] == "helm.sh/release.v1"
    assert secrets[0]["metadata"]["labels"]["status"] == "deployed"
    table = kubectl("get", "secrets").stdout
    assert "sh.helm.release.v1.workshop.v1   helm.sh/release.v1   1" in table


def test_uninstall_removes_release_objects(helm: CliRunner, kubectl: CliRunner, chart: str) -> None:
    helm("install", RELEASE, chart)
    assert 'release "workshop" uninstalled' in helm("uninstall", RELEASE).stdout
    assert kubectl("get", "deployments", "-o", "name").stdout.strip() == ""
    missing = helm("status", RELEASE, check=False)
    assert missing.returncode == 1
    assert "release: not found" in missing.stderr
