"""Store semantics: resourceVersion, generation, conflicts, watches and listeners."""

from __future__ import annotations

import pytest

from sandbox.kubesim.store import ApiError, Store

DEPLOYMENTS = ("apps", "v1", "deployments")
CONFIGMAPS = ("", "v1", "configmaps")
NAMESPACES = ("", "v1", "namespaces")


def _deployment(name: str = "web", image: str = "nginx:1.25") -> dict:
    return {
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": image}]},
            },
        },
    }


@pytest.fixture
def store() -> Store:
    s = Store()
    s.create(NAMESPACES, {"metadata": {"name": "default"}})
    return s


def test_create_sets_server_fields_and_defaults(store: Store) -> None:
    obj = store.create(DEPLOYMENTS, _deployment())
    assert obj["kind"] == "Deployment"
    assert obj["apiVersion"] == "apps/v1"
    assert obj["metadata"]["generation"] == 1
    assert obj["spec"]["replicas"] == 1
    assert obj["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent"


def test_configmaps_have_no_generation(store: Store) -> None:
    obj = store.create(CONFIGMAPS, {"metadata": {"name": "c", "namespace": "default"}, "data": {}})
    assert "generation" not in obj["metadata"]


def test_generate_name_appends_five_characters(store: Store) -> None:
    obj = store.create(CONFIGMAPS, {"metadata": {"generateName": "cfg-", "namespace": "default"}})
    name = obj["metadata"]["name"]
    assert name.startswith("cfg-")
    assert len(name) == len("cfg-") + 5


def test_create_duplicate_is_already_exists(store: Store) -> None:
    store.create(DEPLOYMENTS, _deployment())
    with pytest.raises(ApiError) as caught:
        store.create(DEPLOYMENTS, _deployment())
    assert caught.value.code == 409
    assert caught.value.reason == "AlreadyExists"
    assert caught.value.message == 'deployments.apps "web" already exists'


def test_update_with_stale_resource_version_conflicts(store: Store) -> None:
    first = store.create(DEPLOYMENTS, _deployment())
    store.update(DEPLOYMENTS, {**first, "spec": {**first["spec"], "replicas": 3}})
    with pytest.raises(ApiError) as caught:
        store.update(DEPLOYMENTS, first)
    assert caught.value.status()["message"] == (
        'Operation cannot be fulfilled on deployments.apps "web": the object has been modified; '
        "please apply your changes to the latest version and try again"
    )


def test_update_without_resource_version_is_unconditional(store: Store) -> None:
    first = store.create(CONFIGMAPS, {"metadata": {"name": "c", "namespace": "default"}, "data": {"a": "1"}})
    del first["metadata"]["resourceVersion"]
    first["data"] = {"a": "2"}
    assert store.update(CONFIGMAPS, first)["data"] == {"a": "2"}


def test_spec_change_bumps_generation_but_metadata_change_does_not(store: Store) -> None:
    obj = store.create(DEPLOYMENTS, _deployment())
    obj["metadata"]["labels"] = {"x": "y"}
    obj = store.update(DEPLOYMENTS, obj)
    assert obj["metadata"]["generation"] == 1
    obj["spec"]["replicas"] = 4
    assert store.update(DEPLOYMENTS, obj)["metadata"]["generation"] == 2


def test_noop_update_keeps_the_resource_version(store: Store) -> None:
    obj = store.create(DEPLOYMENTS, _deployment())
    again = store.update(DEPLOYMENTS, obj)
    assert again["metadata"]["resourceVersion"] == obj["metadata"]["resourceVersion"]


def test_main_resource_write_keeps_status_and_status_write_keeps_spec(store: Store) -> None:
    obj = store.create(DEPLOYMENTS, _deployment())
    obj["status"] = {"replicas": 5}
    obj = store.update(DEPLOYMENTS, obj)
    assert "status" not in obj
    obj["status"] = {"replicas": 5}
    obj["spec"]["replicas"] = 9
    obj = store.update(DEPLOYMENTS, obj, subresource="status")
    assert obj["status"] == {"replicas": 5}
    assert obj["spec"]["replicas"] == 1


def test_listener_sees_every_committed_change(store: Store) -> None:
    seen: list[tuple[str, str]] = []
    store.add_listener(lambda etype, res, obj: seen.append((etype, obj["metadata"]["name"])))
    obj = store.create(CONFIGMAPS, {"metadata": {"name": "c", "namespace": "default"}})
    obj["data"] = {"a": "b"}
    store.update(CONFIGMAPS, obj)
    store.delete(CONFIGMAPS, "default", "c")
    assert seen == [("ADDED", "c"), ("MODIFIED", "c"), ("DELETED", "c")]


def test_watch_replays_from_a_resource_version(store: Store) -> None:
    start = store.create(CONFIGMAPS, {"metadata": {"name": "a", "namespace": "default"}})["metadata"]["resourceVersion"]
    store.create(CONFIGMAPS, {"metadata": {"name": "b", "namespace": "default"}})
    watch = store.watch(CONFIGMAPS, "default", since_rv=start)
    assert watch.next_raw(timeout=1)[1]["metadata"]["name"] == "b"
    store.create(CONFIGMAPS, {"metadata": {"name": "c", "namespace": "default"}})
    etype, obj = next(iter(watch))
    assert (etype, obj["metadata"]["name"]) == ("ADDED", "c")
    watch.stop()
    assert list(watch) == []


def test_watch_without_resource_version_starts_with_current_objects(store: Store) -> None:
    store.create(CONFIGMAPS, {"metadata": {"name": "a", "namespace": "default"}})
    watch = store.watch(CONFIGMAPS)
    assert watch.next_raw(timeout=1)[0] == "ADDED"
    assert watch.next_raw(timeout=0.05) is None
    watch.stop()


def test_watch_too_old_is_expired() -> None:
    store = Store(event_window=3)
    store.create(NAMESPACES, {"metadata": {"name": "default"}})
    for index in range(6):
        store.create(CONFIGMAPS, {"metadata": {"name": f"c{index}", "namespace": "default"}})
    with pytest.raises(ApiError) as caught:
        store.watch(CONFIGMAPS, since_rv="1")
    assert caught.value.code == 410


def test_finalizers_delay_deletion_until_removed(store: Store) -> None:
    store.create(CONFIGMAPS, {"metadata": {"name": "c", "namespace": "default", "finalizers": ["x/y"]}})
    pending = store.delete(CONFIGMAPS, "default", "c")
    assert pending["metadata"]["deletionTimestamp"]
    pending["metadata"]["finalizers"] = []
    store.update(CONFIGMAPS, pending)
    assert store.try_get(CONFIGMAPS, "default", "c") is None


def test_orphan_propagation_is_visible_on_the_deleted_event(store: Store) -> None:
    seen: list[dict] = []
    store.add_listener(lambda etype, res, obj: seen.append(obj) if etype == "DELETED" else None)
    store.create(DEPLOYMENTS, _deployment())
    store.delete(DEPLOYMENTS, "default", "web", propagation="Orphan")
    assert seen[0]["metadata"]["finalizers"] == ["orphan"]


def test_deleting_a_namespace_deletes_its_objects(store: Store) -> None:
    store.create(NAMESPACES, {"metadata": {"name": "team"}})
    store.create(CONFIGMAPS, {"metadata": {"name": "c", "namespace": "team"}})
    store.delete(NAMESPACES, None, "team")
    assert store.list(CONFIGMAPS, "team")[0] == []


def test_list_filters_by_label_and_field_selectors(store: Store) -> None:
    for name, team in (("a", "x"), ("b", "y"), ("c", "x")):
        store.create(CONFIGMAPS, {"metadata": {"name": name, "namespace": "default", "labels": {"team": team}}})
    names = [o["metadata"]["name"] for o in store.list(CONFIGMAPS, "default", label_selector="team in (x)")[0]]
    assert names == ["a", "c"]
    only = store.list(CONFIGMAPS, None, field_selector="metadata.name=b,metadata.namespace=default")[0]
    assert [o["metadata"]["name"] for o in only] == ["b"]
