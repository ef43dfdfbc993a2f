"""Fault injection in kubesim (`/_sim/faults`), seen through the real kubectl, the kubernetes client and raw HTTP."""

from __future__ import annotations

import http.client
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config

from sandbox.faults import FaultClient, InvalidFault
from sandbox.kubesim.cluster import write_kubeconfig
from sandbox.kubesim.server import ApiServer
from sandbox.kubesim.store import Store
from tests._policy import require_tool
from tests.conformance.conftest import KUBECTL, CliRunner

DEPLOYMENTS = "/apis/apps/v1/namespaces/*/deployments/*"
CONFIGMAPS = "/api/v1/namespaces/default/configmaps"


@pytest.fixture
def server() -> Iterator[ApiServer]:
    store = Store()
    store.create(("", "v1", "namespaces"), {"metadata": {"name": "default"}})
    store.create(
        ("apps", "v1", "deployments"),
        {
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "nginx:1.25"}]},
                },
            },
        },
    )
    api = ApiServer(store).start()
    yield api
    api.stop()


@pytest.fixture
def faults(server: ApiServer) -> FaultClient:
    return FaultClient(server.url)


@pytest.fixture
def kubeconfig(server: ApiServer, tmp_path: Path) -> Path:
    path = tmp_path / "kubeconfig"
    write_kubeconfig(path, server.url)
    return path


@pytest.fixture
def kubectl(kubeconfig: Path, tmp_path: Path) -> CliRunner:
    require_tool("kubectl", KUBECTL.exists(), f"the real kubectl at {KUBECTL}")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path / "home"),
        "KUBECONFIG": str(kubeconfig),
        "KUBECACHEDIR": str(tmp_path / "kube-cache"),
    }
    return CliRunner(KUBECTL, env, tmp_path)


@pytest.fixture
def apps(kubeconfig: Path) -> Iterator[client.AppsV1Api]:
    api_client = config.new_client_from_config(str(kubeconfig), context="sandbox")
    yield client.AppsV1Api(api_client)
    api_client.close()


def get(server: ApiServer, path: str) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def test_kubectl_patch_sees_an_injected_500_and_the_deployment_is_unchanged(
    faults: FaultClient, kubectl: CliRunner
) -> None:
    faults.add(method="PATCH", path=DEPLOYMENTS, status=500)
    result = kubectl("patch", "deployment", "web", "-p", '{"spec":{"replicas":5}}', check=False)
    assert result.returncode != 0
    assert "injected fault" in result.stderr
    # GETs are not matched by a PATCH rule: kubectl still reads the untouched deployment.
    assert kubectl("get", "deployment", "web", "-o", "json").json()["spec"]["replicas"] == 1


def test_the_python_client_sees_an_injected_409_as_a_conflict_status(
    faults: FaultClient, apps: client.AppsV1Api
) -> None:
    faults.add(method="patch", path=DEPLOYMENTS, status=409, count=1)
    with pytest.raises(client.ApiException) as failure:
        apps.patch_namespaced_deployment("web", "default", {"spec": {"replicas": 3}})
    assert failure.value.status == 409
    status = json.loads(failure.value.body)
    assert (status["kind"], status["reason"], status["code"], status["message"]) == (
        "Status",
        "Conflict",
        409,
        "injected fault",
    )
    # count=1: the retry goes through, as after a real optimistic-concurrency conflict.
    assert apps.patch_namespaced_deployment("web", "default", {"spec": {"replicas": 3}}).spec.replicas == 3


def test_a_seeded_probability_fails_the_same_requests_on_every_run(server: ApiServer, faults: FaultClient) -> None:
    def failures() -> list[int]:
        faults.clear()
        faults.add(method="GET", path=CONFIGMAPS, status=503, probability=0.5, seed=42)
        return [i for i in range(30) if get(server, CONFIGMAPS)[0] == 503]

    first = failures()
    assert first == failures()
    assert 0 < len(first) < 30
    listed = faults.list()[0]
    assert (listed["seen"], listed["hits"]) == (30, len(first))


def test_count_limits_how_often_a_fault_fires(server: ApiServer, faults: FaultClient) -> None:
    faults.add(method="*", path="/api/v1/namespaces/default/*", status=500, count=2)
    codes = [get(server, CONFIGMAPS)[0] for _ in range(4)]
    assert codes == [500, 500, 200, 200]
    assert faults.list()[0]["hits"] == 2
    faults.clear()
    assert faults.list() == []


def test_a_delay_hangs_the_request_before_it_is_answered(server: ApiServer, faults: FaultClient) -> None:
    faults.add(method="GET", path=CONFIGMAPS, delay=0.4, count=1)
    faults.add(method="GET", path=CONFIGMAPS, delay=0.4, status=504, count=1)
    started = time.monotonic()
    assert get(server, CONFIGMAPS)[0] == 200
    assert time.monotonic() - started >= 0.4
    started = time.monotonic()
    code, status = get(server, CONFIGMAPS)
    assert time.monotonic() - started >= 0.4
    assert (code, status["reason"]) == (504, "Timeout")


def test_a_429_carries_retry_after_like_priority_and_fairness(server: ApiServer, faults: FaultClient) -> None:
    faults.add(path=CONFIGMAPS, status=429, count=1)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("GET", CONFIGMAPS)
    response = conn.getresponse()
    body = json.loads(response.read())
    conn.close()
    assert (response.status, response.getheader("Retry-After")) == (429, "1")
    assert body["details"] == {"retryAfterSeconds": 1}


def test_a_watch_fault_refuses_the_watch_before_the_stream_opens(server: ApiServer, faults: FaultClient) -> None:
    faults.add(method="GET", path=CONFIGMAPS, status=503, watch=True)
    code, status = get(server, CONFIGMAPS + "?watch=true&timeoutSeconds=1")
    assert (code, status["reason"]) == (503, "ServiceUnavailable")
    # The same path without ?watch is a list, which the watch-only rule leaves alone.
    assert get(server, CONFIGMAPS)[0] == 200


@pytest.mark.parametrize(
    ("rule", "complaint"),
    [
        ({"path": CONFIGMAPS, "status": 500, "probability": 1.5}, "probability: Input should be less than or equal"),
        ({"path": CONFIGMAPS}, "give a status to answer with, a delay to hang for, or both"),
        ({"path": CONFIGMAPS, "status": 500, "method": "FETCH"}, "method: Value error, must be * or one of"),
        ({"path": CONFIGMAPS, "status": 200}, "status: Input should be greater than or equal to 400"),
        ({"path": CONFIGMAPS, "status": 500, "colour": "red"}, "colour: Extra inputs are not permitted"),
    ],
    ids=["probability-above-one", "does-nothing", "unknown-method", "not-an-error", "unknown-field"],
)
def test_a_bad_rule_is_refused_with_what_to_fix(faults: FaultClient, rule: dict, complaint: str) -> None:
    with pytest.raises(InvalidFault, match="invalid fault rule") as refused:
        faults.add(**rule)
    assert complaint in str(refused.value)
    assert faults.list() == []
