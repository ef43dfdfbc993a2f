"""Server-side apply bookkeeping: ownership, conflicts, removal of dropped fields."""

from __future__ import annotations

import pytest

from sandbox.kubesim import ssa
from sandbox.kubesim.resources import BY_KEY
from sandbox.kubesim.store import ApiError, Store

DEPLOYMENTS = ("apps", "v1", "deployments")
INFO = BY_KEY[DEPLOYMENTS]


def _applied(image: str = "nginx:1.25", env: list[dict] | None = None) -> dict:
    container: dict = {"name": "web", "image": image}
    if env is not None:
        container["env"] = env
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [container]}},
        },
    }


@pytest.fixture
def store() -> Store:
    s = Store()
    s.create(("", "v1", "namespaces"), {"metadata": {"name": "default"}})
    return s


def _apply(store: Store, body: dict, manager: str = "helm", force: bool = False) -> tuple[dict, bool]:
    return ssa.apply(store, INFO, "default", "web", body, manager=manager, force=force, dry_run=False)


def test_leaf_fields_address_keyed_list_items() -> None:
    paths = {
        ssa.render_path(path) for path, _ in ssa.leaf_fields(_applied(env=[{"name": "A", "value": "1"}]), "Deployment")
    }
    assert '.spec.template.spec.containers[name="web"].image' in paths
    assert '.spec.template.spec.containers[name="web"].env[name="A"].value' in paths
    assert ".metadata.labels.app" in paths


def test_first_apply_creates_and_second_updates(store: Store) -> None:
    created, was_created = _apply(store, _applied())
    assert was_created
    assert created["metadata"]["generation"] == 1
    updated, was_created = _apply(store, _applied("nginx:1.26"))
    assert not was_created
    assert updated["metadata"]["generation"] == 2


def test_update_by_another_manager_makes_apply_conflict(store: Store) -> None:
    created, _ = _apply(store, _applied())
    edited = store.get(DEPLOYMENTS, "default", "web")
    edited["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:9"
    after = store.update(DEPLOYMENTS, edited)
    ssa.record_update(store, INFO, created, after, "kubectl-set")
    with pytest.raises(ApiError) as caught:
        _apply(store, _applied())
    assert caught.value.code == 409
    assert caught.value.message == (
        'Apply failed with 1 conflict: conflict with "kubectl-set" using apps/v1: '
        '.spec.template.spec.containers[name="web"].image'
    )
    forced, _ = _apply(store, _applied(), force=True)
    assert forced["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.25"


def test_applying_the_same_value_as_another_manager_is_not_a_conflict(store: Store) -> None:
    _apply(store, _applied(), manager="kubectl")
    result, _ = _apply(store, _applied(), manager="helm")
    assert result["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.25"


def test_fields_dropped_by_the_applier_are_removed_but_others_fields_stay(store: Store) -> None:
    _apply(store, _applied(env=[{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]))
    labelled = store.get(DEPLOYMENTS, "default", "web")
    labelled["metadata"]["labels"]["team"] = "blue"
    before = store.get(DEPLOYMENTS, "default", "web")
    ssa.record_update(store, INFO, before, store.update(DEPLOYMENTS, labelled), "kubectl-label")
    result, _ = _apply(store, _applied())
    container = result["spec"]["template"]["spec"]["containers"][0]
    assert "env" not in container
    assert result["metadata"]["labels"] == {"app": "web", "team": "blue"}
