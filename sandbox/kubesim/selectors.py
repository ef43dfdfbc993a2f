"""Label and field selectors, parsed once and cached (watch filtering runs them on every write)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any


class SelectorError(ValueError):
    pass


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!"
    values: frozenset[str] = frozenset()

    def matches(self, labels: dict[str, str]) -> bool:
        present = self.key in labels
        if self.op == "=":
            return present and labels[self.key] in self.values
        if self.op == "in":
            return present and labels[self.key] in self.values
        if self.op == "!=":
            return not present or labels[self.key] not in self.values
        if self.op == "notin":
            return not present or labels[self.key] not in self.values
        if self.op == "exists":
            return present
        return not present  # "!"


LabelSelector = tuple[Requirement, ...]

_SET_RE = re.compile(r"^\s*(!?)\s*([A-Za-z0-9_.\-/]+)\s*(?:(notin|in)\s*\(([^)]*)\))?\s*$")
_EQ_RE = re.compile(r"^\s*([A-Za-z0-9_.\-/]+)\s*(==|=|!=)\s*([A-Za-z0-9_.\-]*)\s*$")


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside `in (...)` value lists."""
    parts: list[str] = []
    depth = 0
    current: list[str] = []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return [p for p in (x.strip() for x in parts) if p]


@lru_cache(maxsize=4096)
def parse_label_selector(text: str | None) -> LabelSelector:
    if not text:
        return ()
    reqs: list[Requirement] = []
    for part in _split_top_level(text):
        eq = _EQ_RE.match(part)
        if eq:
            key, op, value = eq.groups()
            reqs.append(Requirement(key, "!=" if op == "!=" else "=", frozenset([value])))
            continue
        st = _SET_RE.match(part)
        if not st:
            raise SelectorError(f"unable to parse requirement: {part!r}")
        bang, key, set_op, values = st.groups()
        if set_op:
            if bang:
                raise SelectorError(f"unable to parse requirement: {part!r}")
            vals = frozenset(v.strip() for v in values.split(",") if v.strip())
            reqs.append(Requirement(key, set_op, vals))
        else:
            reqs.append(Requirement(key, "!" if bang else "exists"))
    return tuple(reqs)


def labels_match(selector: LabelSelector, labels: dict[str, str] | None) -> bool:
    if not selector:
        return True
    labels = labels or {}
    return all(r.matches(labels) for r in selector)


def label_selector_from_dict(selector: dict[str, Any] | None) -> LabelSelector:
    """A metav1.LabelSelector (matchLabels + matchExpressions) as requirements.

    Note: an empty/absent LabelSelector dict matches everything, like the API's LabelSelectorAsSelector.
    """
    if not selector:
        return ()
    reqs: list[Requirement] = []
    for key, value in sorted((selector.get("matchLabels") or {}).items()):
        reqs.append(Requirement(key, "=", frozenset([str(value)])))
    for expr in selector.get("matchExpressions") or []:
        op = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}[expr["operator"]]
        reqs.append(Requirement(expr["key"], op, frozenset(expr.get("values") or [])))
    return tuple(reqs)


def selector_to_string(selector: dict[str, Any] | None) -> str:
    """Render a metav1.LabelSelector the way kubectl sends it (`a=b,c=d`, keys sorted)."""
    parts: list[str] = []
    for req in label_selector_from_dict(selector):
        vals = sorted(req.values)
        if req.op == "=":
            parts.append(f"{req.key}={vals[0]}")
        elif req.op in ("in", "notin"):
            parts.append(f"{req.key} {req.op} ({','.join(vals)})")
        elif req.op == "exists":
            parts.append(req.key)
        else:
            parts.append(f"!{req.key}")
    return ",".join(parts)


@dataclass(frozen=True)
class FieldRequirement:
    path: tuple[str, ...]
    negate: bool
    value: str


FieldSelector = tuple[FieldRequirement, ...]


@lru_cache(maxsize=4096)
def parse_field_selector(text: str | None) -> FieldSelector:
    if not text:
        return ()
    reqs: list[FieldRequirement] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if "!=" in part:
            key, value = part.split("!=", 1)
            negate = True
        elif "==" in part:
            key, value = part.split("==", 1)
            negate = False
        elif "=" in part:
            key, value = part.split("=", 1)
            negate = False
        else:
            raise SelectorError(f"invalid selector: '{text}'; can't understand '{part}'")
        reqs.append(FieldRequirement(tuple(key.strip().split(".")), negate, value.strip()))
    return tuple(reqs)


def _field_value(obj: dict[str, Any], path: tuple[str, ...]) -> str:
    cur: Any = obj
    for step in path:
        if not isinstance(cur, dict):
            return ""
        cur = cur.get(step)
        if cur is None:
            return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


def fields_match(selector: FieldSelector, obj: dict[str, Any]) -> bool:
    for req in selector:
        equal = _field_value(obj, req.path) == req.value
        if equal == req.negate:
            return False
    return True
