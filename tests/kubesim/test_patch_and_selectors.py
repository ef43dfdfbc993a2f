"""Patch algorithms and selectors in isolation."""

from __future__ import annotations

import pytest

from sandbox.kubesim.patch import PatchError, json_patch, merge_patch, strategic_merge
from sandbox.kubesim.selectors import (
    SelectorError,
    label_selector_from_dict,
    labels_match,
    parse_label_selector,
    selector_to_string,
)


def test_json_patch_add_to_end_of_list_and_move() -> None:
    doc = {"a": [1, 2], "b": {"c": 1}}
    out = json_patch(doc, [{"op": "add", "path": "/a/-", "value": 3}, {"op": "move", "from": "/b/c", "path": "/d"}])
    assert out == {"a": [1, 2, 3], "b": {}, "d": 1}
    assert doc == {"a": [1, 2], "b": {"c": 1}}, "the input is not mutated"


def test_json_patch_escaped_pointer() -> None:
    doc = {"metadata": {"annotations": {"a/b": "1"}}}
    out = json_patch(doc, [{"op": "remove", "path": "/metadata/annotations/a~1b"}])
    assert out == {"metadata": {"annotations": {}}}


def test_json_patch_remove_missing_key_fails() -> None:
    with pytest.raises(PatchError, match="doc is missing"):
        json_patch({"a": {}}, [{"op": "remove", "path": "/a/b"}])


def test_merge_patch_rfc7386() -> None:
    assert merge_patch({"a": "b", "c": {"d": "e", "f": "g"}}, {"a": "z", "c": {"f": None}}) == {
        "a": "z",
        "c": {"d": "e"},
    }
    assert merge_patch({"a": [1, 2]}, {"a": [3]}) == {"a": [3]}


def test_strategic_merge_ports_merge_by_container_port_and_service_port() -> None:
    pod = {"spec": {"containers": [{"name": "c", "ports": [{"containerPort": 80, "name": "http"}]}]}}
    patch = {"spec": {"containers": [{"name": "c", "ports": [{"containerPort": 443}]}]}}
    merged = strategic_merge(pod, patch, "Pod")
    # Like apimachinery: items new to the list come before the server-only ones.
    assert merged["spec"]["containers"][0]["ports"] == [{"containerPort": 443}, {"containerPort": 80, "name": "http"}]
    svc = {"spec": {"ports": [{"port": 80, "targetPort": 8080}]}}
    merged_svc = strategic_merge(svc, {"spec": {"ports": [{"port": 80, "targetPort": 9090}]}}, "Service")
    assert merged_svc["spec"]["ports"] == [{"port": 80, "targetPort": 9090}]


def test_strategic_merge_atomic_lists_are_replaced() -> None:
    doc = {"spec": {"containers": [{"name": "c", "args": ["a", "b"]}], "tolerations": [{"key": "x"}]}}
    patch = {"spec": {"containers": [{"name": "c", "args": ["z"]}], "tolerations": [{"key": "y"}]}}
    merged = strategic_merge(doc, patch, "Pod")
    assert merged["spec"]["containers"][0]["args"] == ["z"]
    assert merged["spec"]["tolerations"] == [{"key": "y"}]


def test_strategic_merge_set_element_order() -> None:
    doc = {"spec": {"containers": [{"name": "a"}, {"name": "b"}]}}
    patch = {
        "spec": {
            "$setElementOrder/containers": [{"name": "b"}, {"name": "a"}],
            "containers": [{"name": "a", "image": "x"}],
        }
    }
    merged = strategic_merge(doc, patch, "Pod")
    assert merged["spec"]["containers"] == [{"name": "b"}, {"name": "a", "image": "x"}]


def test_strategic_merge_list_replace_directive() -> None:
    doc = {"spec": {"containers": [{"name": "a"}, {"name": "b"}]}}
    patch = {"spec": {"containers": [{"name": "c"}, {"$patch": "replace"}]}}
    assert strategic_merge(doc, patch, "Pod")["spec"]["containers"] == [{"name": "c"}]


def test_strategic_merge_null_deletes_and_directives_are_not_stored() -> None:
    doc = {"spec": {"paused": True, "replicas": 1}}
    merged = strategic_merge(doc, {"spec": {"paused": None, "template": {"$patch": "replace", "a": 1}}}, "Deployment")
    assert merged == {"spec": {"replicas": 1, "template": {"a": 1}}}


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ("app=web", {"app": "web"}, True),
        ("app==web", {"app": "api"}, False),
        ("app!=web", {}, True),
        ("tier in (a, b),app", {"tier": "b", "app": "x"}, True),
        ("tier notin (a,b)", {"tier": "a"}, False),
        ("!canary", {"canary": "1"}, False),
        ("", {"anything": "1"}, True),
    ],
    ids=["eq", "double-eq", "neq-missing", "in-and-exists", "notin", "not-exists", "empty"],
)
def test_label_selectors(selector: str, labels: dict[str, str], expected: bool) -> None:
    assert labels_match(parse_label_selector(selector), labels) is expected


def test_bad_label_selector_raises() -> None:
    with pytest.raises(SelectorError):
        parse_label_selector("a in b")


def test_label_selector_dict_round_trip_sorted_like_kubectl() -> None:
    selector = {"matchLabels": {"b": "2", "a": "1"}, "matchExpressions": [{"key": "c", "operator": "Exists"}]}
    assert selector_to_string(selector) == "a=1,b=2,c"
    assert labels_match(label_selector_from_dict(selector), {"a": "1", "b": "2", "c": ""})


def test_strategic_merge_delete_directive_on_a_map_removes_the_field() -> None:
    doc = {"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}, "replicas": 2}}
    merged = strategic_merge(doc, {"spec": {"strategy": {"rollingUpdate": {"$patch": "delete"}}}}, "Deployment")
    assert merged == {"spec": {"strategy": {"type": "RollingUpdate"}, "replicas": 2}}


def test_strategic_merge_keeps_server_only_items_at_their_live_positions() -> None:
    doc = {"spec": {"containers": [{"name": "a"}, {"name": "x"}, {"name": "b"}]}}
    patch = {
        "spec": {
            "$setElementOrder/containers": [{"name": "b"}, {"name": "a"}],
            "containers": [{"name": "a", "image": "i"}],
        }
    }
    merged = strategic_merge(doc, patch, "Pod")
    assert [c["name"] for c in merged["spec"]["containers"]] == ["x", "b", "a"]
    keyed = strategic_merge({"metadata": {"finalizers": ["a", "b"]}}, {"metadata": {"finalizers": ["c", "a"]}}, "Pod")
    assert keyed["metadata"]["finalizers"] == ["c", "a", "b"]


def test_strategic_merge_explicit_merge_directive_is_the_default() -> None:
    merged = strategic_merge({"spec": {"a": 1}}, {"spec": {"$patch": "merge", "b": 2}}, "Deployment")
    assert merged == {"spec": {"a": 1, "b": 2}}
