"""The controller runtime's work queue and owner index."""

from __future__ import annotations

import threading
import time

from sandbox.kubesim.controllers.runtime import OwnerIndex, WorkQueue
from sandbox.kubesim.controllers.util import (
    compute_hash,
    go_json,
    hash_controller_revision,
    revision_patch,
    safe_encode,
)

RS = ("apps", "v1", "replicasets")


def test_queue_deduplicates_and_requeues_keys_changed_while_processing() -> None:
    q = WorkQueue()
    q.add(("Deployment", "ns", "a"))
    q.add(("Deployment", "ns", "a"))
    q.add(("Deployment", "ns", "b"))
    first = q.get()
    assert first == ("Deployment", "ns", "a")
    q.add(first)  # changed while being processed: must come back, but only after done()
    assert q.get() == ("Deployment", "ns", "b")
    q.done(("Deployment", "ns", "b"))
    assert not q.idle()
    q.done(first)
    assert q.get() == first
    q.done(first)
    assert q.idle()


def test_delayed_items_come_back_after_their_delay() -> None:
    q = WorkQueue()
    start = time.monotonic()
    q.add_after(("Kubelet", "ns", "p"), 0.2)
    got: list[tuple[str, str, str] | None] = []
    t = threading.Thread(target=lambda: got.append(q.get()))
    t.start()
    t.join(2)
    assert got == [("Kubelet", "ns", "p")]
    assert time.monotonic() - start >= 0.2
    q.stop()
    assert q.get() is None


def test_owner_index_tracks_dependents_and_dangling_owners() -> None:
    index = OwnerIndex()
    assert index.apply("ADDED", (RS, "ns", "web-1"), "rs-uid", ("deploy-uid",), orphan=False) == ["deploy-uid"]
    index.apply("ADDED", (("apps", "v1", "deployments"), "ns", "web"), "deploy-uid", ())
    assert index.dependents_of("deploy-uid") == [(RS, "ns", "web-1")]
    index.apply("MODIFIED", (RS, "ns", "web-1"), "rs-uid", (), orphan=True)
    assert index.dependents_of("deploy-uid") == []
    assert index.orphans_in(RS, "ns") == ["web-1"]
    index.apply("DELETED", (RS, "ns", "web-1"), "rs-uid", ())
    assert index.orphans_in(RS, "ns") == []
    assert not index.is_live("rs-uid")


def test_hashes_use_the_safe_alphabet_and_depend_on_collision_count() -> None:
    template = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx"}]}}
    h0, h1 = compute_hash(template, None), compute_hash(template, 1)
    assert h0 != h1
    assert set(h0 + h1) <= set("bcdfghjklmnpqrstvwxz2456789")
    # Semantically equal templates (absent vs empty fields) hash the same.
    assert compute_hash({**template, "spec": {**template["spec"], "volumes": []}}, None) == h0
    # apimachinery's SafeEncodeString maps decimal digits onto these characters.
    assert safe_encode("0123456789") == "456789bcdf"
    data = revision_patch(template)
    assert go_json(data).startswith('{"spec":{"template":{"$patch":"replace","metadata"')
    assert hash_controller_revision(data, 0) != hash_controller_revision(data, 1)


def test_go_json_escapes_html_like_go() -> None:
    assert go_json({"b": "<a&b>", "a": 1}) == '{"a":1,"b":"\\u003ca\\u0026b\\u003e"}'
