"""Server-side apply and field ownership, approximating structured-merge-diff.

Ownership is tracked per leaf field path (lists with merge keys are addressed per item, atomic lists
are single leaves). Every write through the server records which manager set which fields; an apply
conflicts when it changes a field whose current owner is another manager, unless forced. An applier's
fields that disappear from its next apply are removed from the object (unless another manager owns them).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from sandbox.kubesim.patch import list_strategy, strategic_merge
from sandbox.kubesim.resources import ResourceInfo
from sandbox.kubesim.store import ApiError, Store, clone

# A path element: a map key (str), or a list item addressed by merge key / set value.
PathElem = str | tuple[str, str, Any]
FieldPath = tuple[PathElem, ...]

_ITEM = object()
_CSA_MIGRATIONS = {
    "kubectl": ("kubectl-client-side-apply", "before-first-apply")
}  # marker value for "this keyed list item exists"
_IGNORED_TOP = {"apiVersion", "kind", "status"}
_IGNORED_META = {"uid", "resourceVersion", "generation", "creationTimestamp", "managedFields", "name", "namespace"}


def render_path(path: FieldPath) -> str:
    out = []
    for elem in path:
        if isinstance(elem, str):
            out.append("." + elem)
        elif elem[0] == "k":
            out.append(f"[{elem[1]}={json.dumps(elem[2])}]")
        else:
            out.append(f"[{json.dumps(elem[2])}]")
    return "".join(out)


def leaf_fields(obj: dict[str, Any], kind: str) -> Iterator[tuple[FieldPath, Any]]:
    """(path, value) for every leaf field of obj, plus an item marker for every keyed list item."""
    for key, value in obj.items():
        if key in _IGNORED_TOP:
            continue
        if key == "metadata" and isinstance(value, dict):
            for mkey, mval in value.items():
                if mkey in _IGNORED_META:
                    continue
                yield from _walk(mval, kind, ("metadata",), mkey)
            continue
        yield from _walk(value, kind, (), key)


def _walk(value: Any, kind: str, map_path: tuple[str, ...], key: str) -> Iterator[tuple[FieldPath, Any]]:
    yield from _walk_at(value, kind, (*map_path, key), (*map_path, key))


def _walk_at(value: Any, kind: str, map_path: tuple[str, ...], path: FieldPath) -> Iterator[tuple[FieldPath, Any]]:
    if isinstance(value, dict) and value:
        for k, v in value.items():
            yield from _walk_at(v, kind, (*map_path, k), (*path, k))
        return
    if isinstance(value, list) and value:
        strategy = list_strategy(kind, map_path[:-1], map_path[-1])
        if strategy is not None:
            for item in value:
                if strategy == "":
                    yield (*path, ("v", "", item)), item
                elif isinstance(item, dict) and strategy in item:
                    item_path: FieldPath = (*path, ("k", strategy, item[strategy]))
                    yield item_path, _ITEM
                    for k, v in item.items():
                        yield from _walk_at(v, kind, (*map_path, k), (*item_path, k))
            return
    yield path, value


def _lookup(obj: Any, path: FieldPath) -> tuple[bool, Any]:
    cur = obj
    for elem in path:
        if isinstance(elem, str):
            if not isinstance(cur, dict) or elem not in cur:
                return False, None
            cur = cur[elem]
        else:
            if not isinstance(cur, list):
                return False, None
            for item in cur:
                if (elem[0] == "v" and item == elem[2]) or (
                    elem[0] == "k" and isinstance(item, dict) and item.get(elem[1]) == elem[2]
                ):
                    cur = item
                    break
            else:
                return False, None
    return True, cur


def _delete(obj: Any, path: FieldPath) -> None:
    found, parent = _lookup(obj, path[:-1])
    if not found:
        return
    last = path[-1]
    if isinstance(last, str):
        if isinstance(parent, dict):
            parent.pop(last, None)
    elif isinstance(parent, list):
        for index, item in enumerate(parent):
            if (last[0] == "v" and item == last[2]) or (
                last[0] == "k" and isinstance(item, dict) and item.get(last[1]) == last[2]
            ):
                del parent[index]
                return


def _prune_emptied(obj: dict[str, Any], removed: list[FieldPath], applied: Iterable[FieldPath]) -> None:
    """Drop maps/lists that only held removed fields (the applier no longer mentions them at all)."""
    still_applied = {path[:n] for path in applied for n in range(1, len(path) + 1)}
    for path in removed:
        for depth in range(len(path) - 1, 0, -1):
            ancestor = path[:depth]
            if ancestor in still_applied:
                break
            found, value = _lookup(obj, ancestor)
            if not found or value not in ({}, []):
                break
            _delete(obj, ancestor)


def _side(store: Store, info: ResourceInfo, namespace: str, name: str) -> dict[str, Any]:
    return store.side.setdefault((info.key, namespace, name), {"owners": {}, "applied": {}})


def record_update(
    store: Store, info: ResourceInfo, old: dict[str, Any] | None, new: dict[str, Any], manager: str
) -> None:
    """After a non-apply write: `manager` now owns every field it added or changed."""
    meta = new["metadata"]
    side = _side(store, info, meta.get("namespace", ""), meta["name"])
    owners: dict[FieldPath, str] = side["owners"]
    old_fields = dict(leaf_fields(old, info.kind)) if old else {}
    new_fields = dict(leaf_fields(new, info.kind))
    for path, value in new_fields.items():
        if path not in old_fields or old_fields[path] != value:
            owners[path] = manager
    for path in old_fields.keys() - new_fields.keys():
        owners.pop(path, None)


def apply(
    store: Store,
    info: ResourceInfo,
    namespace: str,
    name: str,
    body: dict[str, Any],
    *,
    manager: str,
    force: bool,
    dry_run: bool,
) -> tuple[dict[str, Any], bool]:
    """Server-side apply; returns (object, created)."""
    if not isinstance(body, dict):
        raise ApiError.bad_request("the body of an apply request must be an object")
    body = {k: v for k, v in body.items() if k != "status"}
    meta = body.setdefault("metadata", {})
    if meta.get("name") and meta["name"] != name:
        raise ApiError.bad_request("the name of the object does not match the name on the URL")
    meta["name"] = name
    if info.namespaced:
        meta["namespace"] = namespace
    applied_fields = dict(leaf_fields(body, info.kind))
    with store.lock:
        current = store.try_get(info.key, namespace, name)
        if current is None:
            created = store.create(info.key, body, dry_run=dry_run)
            if not dry_run:
                side = _side(store, info, namespace, name)
                side["applied"][manager] = clone(body)
                for path in applied_fields:
                    side["owners"][path] = manager
            return created, True
        side = _side(store, info, namespace, name)
        owners: dict[FieldPath, str] = side["owners"]
        conflicts: dict[str, list[str]] = {}
        # kubectl migrates client-side-apply ownership to its server-side manager before the first
        # server-side apply (csaupgrade, via managedFields); the same takeover happens here directly.
        inherited = _CSA_MIGRATIONS.get(manager, ())
        for path, owner in list(owners.items()):
            if owner in inherited:
                owners[path] = manager
        for path, value in applied_fields.items():
            owner = owners.get(path)
            if owner is None or owner == manager or value is _ITEM:
                continue
            found, current_value = _lookup(current, path)
            if found and current_value != value:
                conflicts.setdefault(owner, []).append(render_path(path))
        if conflicts and not force:
            raise _conflict_error(info, name, conflicts)
        merged = clone(current)
        previous = side["applied"].get(manager)
        if previous is not None:
            previous_fields = dict(leaf_fields(previous, info.kind))
            removed = [
                path
                for path in sorted(previous_fields.keys() - applied_fields.keys(), key=len)
                if owners.get(path) in (None, manager)
            ]
            # Shortest paths first: a dropped list item goes as a whole, its fields then no longer resolve.
            for path in removed:
                _delete(merged, path)
            _prune_emptied(merged, removed, applied_fields.keys())
        merged = strategic_merge(merged, body, info.kind)
        merged["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        result = store.update(info.key, merged, dry_run=dry_run)
        if not dry_run:
            side = _side(store, info, namespace, name)
            owners = side["owners"]
            if previous is not None:
                for path in previous_fields.keys() - applied_fields.keys():
                    if owners.get(path) == manager:
                        owners.pop(path, None)
            for path in applied_fields:
                owners[path] = manager
            side["applied"][manager] = clone(body)
        return result, False


def _conflict_error(info: ResourceInfo, name: str, conflicts: dict[str, list[str]]) -> ApiError:
    total = sum(len(paths) for paths in conflicts.values())
    gv = info.api_version
    if total == 1:
        owner, paths = next(iter(conflicts.items()))
        text = f'Apply failed with 1 conflict: conflict with "{owner}" using {gv}: {paths[0]}'
    else:
        parts = []
        for owner, paths in conflicts.items():
            if len(paths) == 1:
                parts.append(f'conflict with "{owner}" using {gv}: {paths[0]}')
            else:
                parts.append(f'conflicts with "{owner}" using {gv}:\n' + "\n".join(f"- {p}" for p in paths))
        text = f"Apply failed with {total} conflicts: " + "\n".join(parts)
    causes = [
        {"reason": "FieldManagerConflict", "message": f'conflict with "{owner}" using {gv}', "field": p}
        for owner, paths in conflicts.items()
        for p in paths
    ]
    return ApiError(409, "Conflict", text, {"name": name, "group": info.group, "kind": info.plural, "causes": causes})
