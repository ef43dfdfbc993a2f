"""`kubectl get` output: server-side Table columns as the real printers render them."""

from __future__ import annotations

import pytest

from sandbox.kubesim.cluster import KubeSim
from tests.conformance.conftest import CliRunner

pytestmark = pytest.mark.needs_kubectl

PODS = ("", "v1", "pods")


def _pod(kubesim: KubeSim, name: str, container_status: dict, *, phase: str = "Running") -> None:
    """A bare pod on a node the fake kubelet does not run, so the status written here stays."""
    created = kubesim.store.create(
        PODS,
        {
            "metadata": {"name": name, "namespace": "default", "labels": {"case": "table"}},
            "spec": {"containers": [{"name": "app", "image": "example/app:1"}], "nodeName": "edge-9"},
        },
    )
    created["status"] = {
        "phase": phase,
        "podIP": "10.0.0.9",
        "containerStatuses": [{"name": "app", **container_status}],
    }
    kubesim.store.update(PODS, created, subresource="status")


def _rows(kubectl: CliRunner, *args: str) -> list[list[str]]:
    lines = kubectl("get", *args).stdout.splitlines()
    return [line.split() for line in lines]


@pytest.mark.parametrize(
    ("container_status", "phase", "ready", "shown"),
    [
        (
            {"ready": True, "restartCount": 0, "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}},
            "Running",
            "1/1",
            "Running",
        ),
        (
            {"ready": False, "restartCount": 0, "state": {"waiting": {"reason": "ImagePullBackOff"}}},
            "Pending",
            "0/1",
            "ImagePullBackOff",
        ),
        (
            {"ready": False, "restartCount": 0, "state": {"waiting": {"reason": "ErrImagePull"}}},
            "Pending",
            "0/1",
            "ErrImagePull",
        ),
        (
            {"ready": False, "restartCount": 4, "state": {"waiting": {"reason": "CrashLoopBackOff"}}},
            "Running",
            "0/1",
            "CrashLoopBackOff",
        ),
        (
            {"ready": False, "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
            "Succeeded",
            "0/1",
            "Completed",
        ),
    ],
    ids=["running", "image-pull-backoff", "err-image-pull", "crash-loop", "completed"],
)
def test_pod_status_column_follows_the_container_state(
    kubectl: CliRunner, kubesim: KubeSim, container_status: dict, phase: str, ready: str, shown: str
) -> None:
    _pod(kubesim, "p", container_status, phase=phase)
    header, row = _rows(kubectl, "pods", "-l", "case=table")
    assert header == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert row[:4] == ["p", ready, shown, str(container_status["restartCount"])]


def test_pod_wide_output_adds_ip_and_node(kubectl: CliRunner, kubesim: KubeSim) -> None:
    _pod(kubesim, "p", {"ready": True, "restartCount": 0, "state": {"running": {}}})
    header, row = _rows(kubectl, "pods", "-o", "wide", "-l", "case=table")
    assert header[:7] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE"]
    assert row[5:7] == ["10.0.0.9", "edge-9"]


def test_deployment_columns(kubectl: CliRunner) -> None:
    kubectl("create", "deployment", "web", "--image=nginx:1.25", "--replicas=0")
    header, row = _rows(kubectl, "deployments")
    assert header == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert row[:4] == ["web", "0/0", "0", "0"]
    wide_header, wide_row = _rows(kubectl, "deployments", "-o", "wide")
    assert wide_header[5:] == ["CONTAINERS", "IMAGES", "SELECTOR"]
    assert wide_row[5:] == ["nginx", "nginx:1.25", "app=web"]


def test_secret_configmap_and_service_columns(kubectl: CliRunner) -> None:
    kubectl("create", "secret", "generic", "creds", "--from-literal=user=a", "--from-literal=pass=b")
    kubectl("create", "configmap", "settings", "--from-literal=mode=blue")
    kubectl("create", "service", "clusterip", "api", "--tcp=80:8080")
    header, row = _rows(kubectl, "secret", "creds")
    assert header == ["NAME", "TYPE", "DATA", "AGE"]
    assert row[:3] == ["creds", "Opaque", "2"]
    assert _rows(kubectl, "configmap", "settings")[1][:2] == ["settings", "1"]
    header, row = _rows(kubectl, "service", "api")
    assert header == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    assert row[1] == "ClusterIP"
    assert row[2].startswith("10.96.")
    assert row[3:5] == ["<none>", "80/TCP"]


def test_get_all_namespaces_adds_the_namespace_column(kubectl: CliRunner) -> None:
    kubectl("create", "namespace", "team-a")
    kubectl("create", "configmap", "c", "--from-literal=a=b", "-n", "team-a")
    rows = _rows(kubectl, "configmaps", "-A")
    assert rows[0] == ["NAMESPACE", "NAME", "DATA", "AGE"]
    assert ["team-a", "c", "1"] in [row[:3] for row in rows[1:]]


def test_empty_list_message(kubectl: CliRunner) -> None:
    result = kubectl("get", "deployments")
    assert result.stderr.strip() == "No resources found in default namespace."


def test_custom_columns_and_jsonpath_read_the_full_object(kubectl: CliRunner) -> None:
    kubectl("create", "deployment", "web", "--image=nginx:1.25", "--replicas=0")
    out = kubectl(
        "get",
        "deployment",
        "web",
        "-o",
        "custom-columns=NAME:.metadata.name,IMAGE:.spec.template.spec.containers[0].image",
    )
    assert out.stdout.splitlines()[1].split() == ["web", "nginx:1.25"]


def test_logs_of_a_container_that_cannot_pull_its_image(kubectl: CliRunner, kubesim: KubeSim) -> None:
    _pod(kubesim, "p", {"ready": False, "restartCount": 0, "state": {"waiting": {"reason": "ImagePullBackOff"}}})
    result = kubectl("logs", "p", check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        'Error from server (BadRequest): container "app" in pod "p" is waiting to start: '
        "trying and failing to pull image"
    )


def test_logs_of_a_running_container_are_empty(kubectl: CliRunner, kubesim: KubeSim) -> None:
    _pod(kubesim, "p", {"ready": True, "restartCount": 0, "state": {"running": {}}})
    assert kubectl("logs", "p").stdout == ""
