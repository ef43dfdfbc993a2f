"""Patch algorithms: RFC 6902 JSON patch, RFC 7386 merge patch and strategic merge patch.

The strategic-merge metadata (patchMergeKey / patchStrategy struct tags of the built-in types) is
encoded in `list_strategy` by field name and context, which covers every kind kubesim serves.
"""

from __future__ import annotations

from typing import Any

from sandbox.kubesim.store import clone


class PatchError(ValueError):
    """A patch that cannot be applied; the server answers 422 Invalid (or 400 for malformed patches)."""


# ------------------------------------------------------------------------------------------ JSON patch


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def _split_pointer(pointer: str) -> list[str]:
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise PatchError(f"JSON pointer must start with '/': {pointer!r}")
    return [_unescape(t) for t in pointer[1:].split("/")]


def _container_for(doc: Any, tokens: list[str], op: str, path: str) -> tuple[Any, str]:
    cur = doc
    for token in tokens[:-1]:
        if isinstance(cur, dict):
            if token not in cur:
                raise PatchError(f'{op} operation does not apply: doc is missing path: "{path}": missing value')
            cur = cur[token]
        elif isinstance(cur, list):
            try:
                cur = cur[int(token)]
            except (ValueError, IndexError) as exc:
                raise PatchError(
                    f'{op} operation does not apply: doc is missing path: "{path}": missing value'
                ) from exc
        else:
            raise PatchError(f'{op} operation does not apply: doc is missing path: "{path}": missing value')
    return cur, tokens[-1]


def _get_pointer(doc: Any, path: str, op: str) -> Any:
    cur = doc
    for token in _split_pointer(path):
        if isinstance(cur, dict) and token in cur:
            cur = cur[token]
        elif isinstance(cur, list) and token.isdigit() and int(token) < len(cur):
            cur = cur[int(token)]
        else:
            raise PatchError(f'{op} operation does not apply: doc is missing path: "{path}": missing value')
    return cur


def _list_index(container: list[Any], key: str, op: str, path: str, *, for_insert: bool) -> int:
    if key == "-" and for_insert:
        return len(container)
    try:
        idx = int(key)
    except ValueError as exc:
        raise PatchError(f'{op} operation does not apply: doc is missing path: "{path}": invalid index') from exc
    limit = len(container) if for_insert else len(container) - 1
    if idx < 0 or idx > limit:
        raise PatchError(f'{op} operation does not apply: doc is missing path: "{path}": index out of range')
    return idx


def _add(doc: Any, path: str, value: Any, op: str = "add") -> Any:
    tokens = _split_pointer(path)
    if not tokens:
        return value
    container, key = _container_for(doc, tokens, op, path)
    if isinstance(container, dict):
        container[key] = value
    elif isinstance(container, list):
        container.insert(_list_index(container, key, op, path, for_insert=True), value)
    else:
        raise PatchError(f'{op} operation does not apply: doc is missing path: "{path}": missing value')
    return doc


def _remove(doc: Any, path: str, op: str = "remove") -> Any:
    tokens = _split_pointer(path)
    if not tokens:
        raise PatchError(f"{op} operation does not apply: cannot remove the document root")
    container, key = _container_for(doc, tokens, op, path)
    if isinstance(container, dict):
        if key not in container:
            raise PatchError(f"{op} operation does not apply: doc is missing key: {path}: missing value")
        return container.pop(key)
    if isinstance(container, list):
        return container.pop(_list_index(container, key, op, path, for_insert=False))
    raise PatchError(f'{op} operation does not apply: doc is missing path: "{path}": missing value')


def json_patch(doc: Any, operations: Any) -> Any:
    if not isinstance(operations, list):
        raise PatchError("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    doc = clone(doc)
    for operation in operations:
        if not isinstance(operation, dict) or "op" not in operation:
            raise PatchError("Unexpected kind: missing op")
        op = operation["op"]
        path = operation.get("path", "")
        if op == "add":
            doc = _add(doc, path, clone(operation.get("value")))
        elif op == "remove":
            _remove(doc, path)
        elif op == "replace":
            tokens = _split_pointer(path)
            if not tokens:
                doc = clone(operation.get("value"))
                continue
            container, key = _container_for(doc, tokens, op, path)
            if isinstance(container, dict):
                if key not in container:
                    raise PatchError(f"replace operation does not apply: doc is missing key: {path}: missing value")
                container[key] = clone(operation.get("value"))
            elif isinstance(container, list):
                container[_list_index(container, key, op, path, for_insert=False)] = clone(operation.get("value"))
            else:
                raise PatchError(f"replace operation does not apply: doc is missing path: {path}: missing value")
        elif op == "move":
            value = _remove(doc, operation.get("from", ""), "move")
            doc = _add(doc, path, value, "move")
        elif op == "copy":
            value = clone(_get_pointer(doc, operation.get("from", ""), "copy"))
            doc = _add(doc, path, value, "copy")
        elif op == "test":
            actual = _get_pointer(doc, path, "test")
            if actual != operation.get("value"):
                raise PatchError(f"testing value {path} failed: test failed")
        else:
            raise PatchError(f"Unexpected kind: {op}")
    return doc


# ------------------------------------------------------------------------------------------ merge patch


def merge_patch(doc: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, null deletes, everything else replaces."""
    if not isinstance(patch, dict):
        return clone(patch)
    result = clone(doc) if isinstance(doc, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            result[key] = merge_patch(result.get(key), value)
        else:
            result[key] = clone(value)
    return result


# ------------------------------------------------------------------------------------------ strategic merge

# Lists of objects merged by key (patchStrategy:"merge", patchMergeKey:...).
_MERGE_KEYS: dict[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "imagePullSecrets": "name",
    "ownerReferences": "uid",
    "conditions": "type",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
    "resourceClaims": "name",
    "containerStatuses": "name",
    "initContainerStatuses": "name",
}
# Lists of scalars merged as sets (patchStrategy:"merge" on []string).
_PRIMITIVE_MERGE = {"finalizers"}


def list_strategy(kind: str, path: tuple[str, ...], field: str) -> str | None:
    """The merge key of list `field` at `path` (a tuple of map keys), "" for a merged scalar list,
    or None for an atomic list that patches replace wholesale."""
    if field == "ports":
        if kind == "Service" and path == ("spec",):
            return "port"
        if "containers" in path or "initContainers" in path or "ephemeralContainers" in path:
            return "containerPort"
        return None
    if field == "finalizers":
        return "" if path == ("metadata",) else None
    if field == "conditions" and path and path[-1] != "status":
        return None
    return _MERGE_KEYS.get(field)


_DIRECTIVE = "$patch"
_RETAIN = "$retainKeys"
_ORDER_PREFIX = "$setElementOrder/"
_DELETE_PRIM_PREFIX = "$deleteFromPrimitiveList/"


def strip_directives(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: strip_directives(v) for k, v in value.items() if not (k.startswith("$") or k == _DIRECTIVE)}
    if isinstance(value, list):
        return [strip_directives(v) for v in value if not (isinstance(v, dict) and set(v) == {_DIRECTIVE})]
    return value


def strategic_merge(doc: Any, patch: Any, kind: str, *, path: tuple[str, ...] = ()) -> Any:
    """Apply a strategic merge patch (apimachinery strategicpatch semantics, common directives)."""
    if not isinstance(patch, dict):
        return clone(patch)
    original = clone(doc) if isinstance(doc, dict) else {}
    return _merge_map(original, patch, kind, path)


def _merge_map(original: dict[str, Any], patch: dict[str, Any], kind: str, path: tuple[str, ...]) -> dict[str, Any]:
    directive = patch.get(_DIRECTIVE)
    if directive == "replace":
        return strip_directives({k: v for k, v in patch.items() if k != _DIRECTIVE})
    if directive == "delete":
        return {}
    if directive not in (None, "merge"):
        raise PatchError(f"Unknown patch type: {directive}")
    retain = patch.get(_RETAIN)
    orders: dict[str, list[Any]] = {}
    # $setElementOrder interleaves server-only items by their position in the list *before* the patch.
    server_lists = {
        key[len(_ORDER_PREFIX) :]: list(original.get(key[len(_ORDER_PREFIX) :]) or [])
        for key in patch
        if key.startswith(_ORDER_PREFIX)
    }
    for key, value in patch.items():
        if key in (_DIRECTIVE, _RETAIN):
            continue
        if key.startswith(_ORDER_PREFIX):
            orders[key[len(_ORDER_PREFIX) :]] = value or []
            continue
        if key.startswith(_DELETE_PRIM_PREFIX):
            field = key[len(_DELETE_PRIM_PREFIX) :]
            remove = set(map(_hashable, value or []))
            if isinstance(original.get(field), list):
                original[field] = [v for v in original[field] if _hashable(v) not in remove]
            continue
        if value is None:
            original.pop(key, None)
            continue
        current = original.get(key)
        if isinstance(value, dict) and value.get(_DIRECTIVE) == "delete":
            original.pop(key, None)  # `{"field": {"$patch": "delete"}}` removes the whole map
        elif isinstance(value, dict):
            merged = _merge_map(current if isinstance(current, dict) else {}, value, kind, (*path, key))
            original[key] = merged
        elif isinstance(value, list):
            strategy = list_strategy(kind, path, key)
            if strategy is None:
                original[key] = strip_directives(value)
            else:
                original[key] = _merge_list(
                    current if isinstance(current, list) else [], value, strategy, kind, (*path, key)
                )
        else:
            original[key] = value
    for field, order in orders.items():
        if isinstance(original.get(field), list):
            merge_key = list_strategy(kind, path, field)
            original[field] = _normalize_order(original[field], order, server_lists[field], merge_key)
    if isinstance(retain, list):
        keep = set(retain)
        for key in list(original):
            if key not in keep:
                del original[key]
    return original


def _hashable(value: Any) -> Any:
    if isinstance(value, dict | list):
        import json

        return json.dumps(value, sort_keys=True)
    return value


def _merge_list(original: list[Any], patch: list[Any], merge_key: str, kind: str, path: tuple[str, ...]) -> list[Any]:
    if any(isinstance(item, dict) and item.get(_DIRECTIVE) == "replace" and len(item) == 1 for item in patch):
        return strip_directives([i for i in patch if not (isinstance(i, dict) and i.get(_DIRECTIVE) == "replace")])
    if merge_key == "":
        # A set of scalars: union.
        result = list(original)
        seen = {_hashable(v) for v in result}
        for item in patch:
            if _hashable(item) not in seen:
                result.append(item)
                seen.add(_hashable(item))
        return _normalize_order(result, patch, original, merge_key)
    result = [clone(item) for item in original]
    for item in patch:
        if not isinstance(item, dict):
            raise PatchError(f"merging an object in json but data type is not struct, instead is: {type(item)}")
        key_value = item.get(merge_key)
        if item.get(_DIRECTIVE) == "delete":
            result = [o for o in result if not (isinstance(o, dict) and o.get(merge_key) == key_value)]
            continue
        if key_value is None:
            raise PatchError(f"map: {item} does not contain declared merge key: {merge_key}")
        for index, existing in enumerate(result):
            if isinstance(existing, dict) and existing.get(merge_key) == key_value:
                result[index] = _merge_map(existing, item, kind, path)
                break
        else:
            result.append(_merge_map({}, item, kind, path))
    patch_order = [i for i in patch if not (isinstance(i, dict) and i.get(_DIRECTIVE) == "delete")]
    return _normalize_order(result, patch_order, original, merge_key)


def _normalize_order(merged: list[Any], order: list[Any], server: list[Any], merge_key: str | None) -> list[Any]:
    """The element order of apimachinery's normalizeElementOrder.

    Items named by `order` (the patch list or $setElementOrder) follow that order; the others (server-only
    items) keep their live order; the two runs are interleaved by position in the live list, preferring
    the patch item whenever the comparison is undecided (an item absent from the live list).
    """

    def ident(value: Any) -> Any:
        if merge_key and isinstance(value, dict):
            return _hashable(value.get(merge_key))
        return _hashable(value)

    order_rank = {ident(v): i for i, v in enumerate(order)}
    server_rank = {ident(v): i for i, v in enumerate(server)}
    patch_items = sorted((v for v in merged if ident(v) in order_rank), key=lambda v: order_rank[ident(v)])
    server_only = sorted(
        (v for v in merged if ident(v) not in order_rank), key=lambda v: server_rank.get(ident(v), len(server))
    )
    result: list[Any] = []
    i = j = 0
    while i < len(server_only) or j < len(patch_items):
        if j >= len(patch_items):
            result.append(server_only[i])
            i += 1
        elif i >= len(server_only):
            result.append(patch_items[j])
            j += 1
        else:
            left = server_rank.get(ident(server_only[i]))
            right = server_rank.get(ident(patch_items[j]))
            if left is not None and right is not None and left < right:
                result.append(server_only[i])
                i += 1
            else:
                result.append(patch_items[j])
                j += 1
    return result
