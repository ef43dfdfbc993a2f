"""Strict field validation (`?fieldValidation=Strict`, the kubectl and helm default).

Known fields come from the protobuf field table (pb_schema), which names every JSON field of the kinds
it covers; kinds outside it are not validated. Only unknown fields are reported, like the real decoder.
"""

from __future__ import annotations

from typing import Any

from sandbox.kubesim.pb_schema import SCHEMA
from sandbox.kubesim.protobuf import INLINE_FIELDS, KINDS

_OPAQUE = {"meta.Time", "meta.MicroTime", "intstr.IntOrString", "resource.Quantity", "meta.Duration", "meta.FieldsV1"}
# Set by the server or tolerated by the real decoder although the protobuf table leaves them out.
_EXTRA_TOP = {"apiVersion", "kind", "status"}
_EXTRA_META = {"managedFields", "selfLink"}


def _fields_of(message: str) -> dict[str, tuple[str, str]]:
    """JSON field name -> (label, type), with inline (embedded) messages flattened."""
    out: dict[str, tuple[str, str]] = {}
    for name, label, type_name in SCHEMA.get(message, {}).values():
        if name in INLINE_FIELDS and type_name in SCHEMA:
            out.update(_fields_of(type_name))
        else:
            out[name] = (label, type_name)
    return out


def _walk(value: Any, message: str, path: str, unknown: list[str], prune: bool) -> None:
    if message in _OPAQUE or message not in SCHEMA or not isinstance(value, dict):
        return
    known = _fields_of(message)
    extra = _EXTRA_META if message == "meta.ObjectMeta" else set()
    for key, child in list(value.items()):
        child_path = f"{path}.{key}" if path else key
        spec = known.get(key)
        if spec is None:
            if key not in extra:
                unknown.append(child_path)
                if prune:
                    del value[key]
            continue
        label, type_name = spec
        if type_name not in SCHEMA:
            continue
        if label == "rep" and isinstance(child, list):
            for index, item in enumerate(child):
                _walk(item, type_name, f"{child_path}[{index}]", unknown, prune)
        elif label == "map" and isinstance(child, dict):
            for map_key, item in child.items():
                _walk(item, type_name, f"{child_path}[{map_key}]", unknown, prune)
        else:
            _walk(child, type_name, child_path, unknown, prune)


def unknown_fields(kind: str, obj: dict[str, Any], *, prune: bool = False) -> list[str]:
    """Dotted paths of fields the kind's schema does not declare (empty for kinds without a schema).

    With prune=True they are also removed from obj, which is what decoding into Go structs does.
    """
    entry = KINDS.get(kind)
    if entry is None or kind == "DeleteOptions":
        return []
    unknown: list[str] = []
    top = {k: v for k, v in obj.items() if k not in _EXTRA_TOP}
    _walk(top, entry[1], "", unknown, prune)
    if prune:
        for key in [k for k in obj if k not in _EXTRA_TOP and k not in top]:
            del obj[key]
    return unknown
