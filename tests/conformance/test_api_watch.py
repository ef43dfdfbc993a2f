"""Watches as kubectl uses them, plus the raw watch protocol (watch-list bookmark, resume, 410)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from sandbox.kubesim.cluster import KubeSim
from sandbox.kubesim.server import ApiServer
from sandbox.kubesim.store import Store
from tests.conformance.conftest import CliRunner, needs_controllers

pytestmark = pytest.mark.needs_kubectl

CONFIGMAPS = ("", "v1", "configmaps")


def _watch_events(url: str, timeout: float = 5.0) -> list[dict]:
    """Read a whole (server-terminated) watch stream."""
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - loopback test server
        return [json.loads(line) for line in response.read().splitlines() if line.strip()]


def _create_configmap(kubesim: KubeSim, name: str, labels: dict[str, str] | None = None) -> dict:
    return kubesim.store.create(
        CONFIGMAPS, {"metadata": {"name": name, "namespace": "default", "labels": labels or {}}, "data": {"k": "v"}}
    )


def test_kubectl_get_watch_prints_changes_until_the_request_timeout(kubectl: CliRunner, kubesim: KubeSim) -> None:
    _create_configmap(kubesim, "first")
    watcher = kubectl.popen("get", "configmaps", "-w", "--request-timeout=2s")
    try:
        assert watcher.stdout is not None
        header = watcher.stdout.readline()
        first = watcher.stdout.readline()
        # kubectl watches from the RV of its initial list, so this change cannot be missed.
        _create_configmap(kubesim, "second")
        rest, stderr = watcher.communicate(timeout=15)
    finally:
        watcher.kill()
    assert watcher.returncode == 0, stderr
    assert header.split() == ["NAME", "DATA", "AGE"]
    assert first.split()[:2] == ["first", "1"]
    later = [line.split()[0] for line in rest.splitlines()]
    assert later == ["second"]


def test_watch_list_sends_initial_events_then_the_end_bookmark(kubesim: KubeSim) -> None:
    _create_configmap(kubesim, "a")
    _create_configmap(kubesim, "b")
    url = (
        f"{kubesim.url}/api/v1/namespaces/default/configmaps?watch=true&sendInitialEvents=true"
        "&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&timeoutSeconds=1"
    )
    events = _watch_events(url)
    added = [e["object"]["metadata"]["name"] for e in events if e["type"] == "ADDED"]
    assert added[:2] == ["a", "b"]
    bookmark = events[2]
    assert bookmark["type"] == "BOOKMARK"
    assert bookmark["object"]["kind"] == "ConfigMap"
    assert bookmark["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
    assert bookmark["object"]["metadata"]["resourceVersion"] == kubesim.store.resource_version


def test_send_initial_events_without_not_older_than_is_rejected(kubesim: KubeSim) -> None:
    url = f"{kubesim.url}/api/v1/namespaces/default/configmaps?watch=true&sendInitialEvents=true&timeoutSeconds=1"
    with pytest.raises(urllib.error.HTTPError) as caught:
        _watch_events(url)
    assert caught.value.code == 422


def test_watch_resumes_after_a_resource_version_and_filters_by_label(kubesim: KubeSim) -> None:
    start = _create_configmap(kubesim, "before", {"team": "a"})["metadata"]["resourceVersion"]
    _create_configmap(kubesim, "other", {"team": "b"})
    _create_configmap(kubesim, "after", {"team": "a"})
    url = (
        f"{kubesim.url}/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={start}"
        "&labelSelector=team%3Da&timeoutSeconds=1"
    )
    events = _watch_events(url)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "after")]


def test_object_leaving_the_label_selector_is_seen_as_deleted(kubesim: KubeSim) -> None:
    created = _create_configmap(kubesim, "mover", {"team": "a"})
    moved = dict(created, metadata={**created["metadata"], "labels": {"team": "b"}})
    kubesim.store.update(CONFIGMAPS, moved)
    url = (
        f"{kubesim.url}/api/v1/namespaces/default/configmaps?watch=1&resourceVersion="
        f"{created['metadata']['resourceVersion']}&labelSelector=team%3Da&timeoutSeconds=1"
    )
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in _watch_events(url)] == [("DELETED", "mover")]


def test_watch_from_an_expired_resource_version_ends_with_410() -> None:
    store = Store(event_window=2)
    store.create(("", "v1", "namespaces"), {"metadata": {"name": "default"}})
    server = ApiServer(store).start()
    try:
        for index in range(5):
            store.create(CONFIGMAPS, {"metadata": {"name": f"cm-{index}", "namespace": "default"}})
        events = _watch_events(f"{server.url}/api/v1/namespaces/default/configmaps?watch=1&resourceVersion=1")
    finally:
        server.stop()
    assert len(events) == 1
    assert events[0]["type"] == "ERROR"
    assert events[0]["object"]["code"] == 410
    assert events[0]["object"]["reason"] == "Expired"


@needs_controllers
def test_rollout_status_uses_watch_list_and_finishes(kubectl: CliRunner) -> None:
    kubectl("create", "deployment", "web", "--image=nginx:1.25", "--replicas=2")
    result = kubectl("rollout", "status", "deployment/web", "--timeout=20s")
    assert result.stdout.strip().splitlines()[-1] == 'deployment "web" successfully rolled out'
