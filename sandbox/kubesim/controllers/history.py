"""ControllerRevision bookkeeping shared by the DaemonSet and StatefulSet controllers
(pkg/controller/history/controller_history.go)."""

from __future__ import annotations

from typing import Any

from sandbox.kubesim.controllers.runtime import Runtime
from sandbox.kubesim.controllers.util import CONTROLLERREVISIONS, controller_ref, go_json
from sandbox.kubesim.store import ApiError, clone

Obj = dict[str, Any]


def revision_number(cr: Obj) -> int:
    return int(cr.get("revision") or 0)


def sort_revisions(crs: list[Obj]) -> list[Obj]:
    """history.SortControllerRevisions: by revision, then creation time, then name."""
    return sorted(
        crs, key=lambda c: (revision_number(c), c["metadata"].get("creationTimestamp", ""), c["metadata"]["name"])
    )


def data_bytes(cr: Obj) -> str:
    return go_json(cr.get("data") or {})


def new_revision(
    owner: Obj, template_labels: dict[str, str], data: Obj, revision: int, name: str, extra_labels: Obj
) -> Obj:
    labels = dict(template_labels)
    labels.update(extra_labels)
    meta: Obj = {
        "name": name,
        "namespace": owner["metadata"]["namespace"],
        "labels": labels,
        "ownerReferences": [controller_ref(owner)],
    }
    annotations = owner["metadata"].get("annotations")
    if annotations:
        meta["annotations"] = dict(annotations)
    return {
        "apiVersion": "apps/v1",
        "kind": "ControllerRevision",
        "metadata": meta,
        "data": data,
        "revision": revision,
    }


def owned_revisions(rt: Runtime, owner: Obj) -> list[Obj]:
    return rt.owned(owner["metadata"]["uid"], CONTROLLERREVISIONS)


def set_revision(rt: Runtime, cr: Obj, revision: int) -> Obj:
    """UpdateControllerRevision: the roll-forward that turns an old revision into the newest."""
    if revision_number(cr) == revision:
        return cr
    updated = clone(cr)
    updated["revision"] = revision
    return rt.store.update(CONTROLLERREVISIONS, updated, check_rv=False)


def delete_revision(rt: Runtime, cr: Obj) -> None:
    try:
        rt.store.delete(CONTROLLERREVISIONS, cr["metadata"]["namespace"], cr["metadata"]["name"])
    except ApiError as exc:
        if exc.code != 404:
            raise
