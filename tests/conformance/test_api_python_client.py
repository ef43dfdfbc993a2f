"""The official `kubernetes` Python client (what the bot uses) against kubesim via the written kubeconfig."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config, watch

from sandbox.kubesim.cluster import KubeSim


@pytest.fixture
def api(kubesim: KubeSim, tmp_path: Path) -> Iterator[client.ApiClient]:
    kubeconfig = tmp_path / "kubeconfig"
    kubesim.write_kubeconfig(kubeconfig)
    api_client = config.new_client_from_config(str(kubeconfig), context="sandbox")
    yield api_client
    api_client.close()


def _deployment(name: str) -> dict:
    return {
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "nginx:1.25"}]},
            },
        },
    }


def test_create_read_patch_and_errors(api: client.ApiClient) -> None:
    apps = client.AppsV1Api(api)
    created = apps.create_namespaced_deployment("default", _deployment("web"))
    assert created.metadata.generation == 1
    assert created.spec.strategy.rolling_update.max_surge == "25%"
    patched = apps.patch_namespaced_deployment(
        "web", "default", [{"op": "replace", "path": "/spec/replicas", "value": 3}]
    )
    assert patched.spec.replicas == 3
    assert patched.metadata.generation == 2
    with pytest.raises(client.ApiException) as caught:
        apps.read_namespaced_deployment("nope", "default")
    assert caught.value.status == 404


def test_watch_stream_with_field_selector(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    core.create_namespaced_config_map("default", {"metadata": {"name": "one"}, "data": {"a": "b"}})
    core.create_namespaced_config_map("default", {"metadata": {"name": "two"}, "data": {"a": "b"}})
    events = [
        (event["type"], event["object"].metadata.name)
        for event in watch.Watch().stream(
            core.list_namespaced_config_map, "default", field_selector="metadata.name=two", timeout_seconds=1
        )
    ]
    assert events == [("ADDED", "two")]
