"""Helpers shared by the simulated controllers: hashing, Go-compatible JSON, int-or-percent, conditions."""

from __future__ import annotations

import datetime as _dt
import json
import math
from typing import Any

from sandbox.kubesim.resources import ResourceKey

PODS: ResourceKey = ("", "v1", "pods")
EVENTS: ResourceKey = ("", "v1", "events")
NODES: ResourceKey = ("", "v1", "nodes")
DEPLOYMENTS: ResourceKey = ("apps", "v1", "deployments")
REPLICASETS: ResourceKey = ("apps", "v1", "replicasets")
DAEMONSETS: ResourceKey = ("apps", "v1", "daemonsets")
STATEFULSETS: ResourceKey = ("apps", "v1", "statefulsets")
CONTROLLERREVISIONS: ResourceKey = ("apps", "v1", "controllerrevisions")
JOBS: ResourceKey = ("batch", "v1", "jobs")

# apimachinery/pkg/util/rand: SafeEncodeString maps every byte onto an alphabet without vowels,
# so generated names never spell words.
_SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def safe_encode(text: str) -> str:
    return "".join(_SAFE_ALPHABET[b % len(_SAFE_ALPHABET)] for b in text.encode())


def fnv32a(data: bytes, h: int = 0x811C9DC5) -> int:
    for b in data:
        h ^= b
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h


def fnv32(data: bytes, h: int = 0x811C9DC5) -> int:
    for b in data:
        h = (h * 0x01000193) & 0xFFFFFFFF
        h ^= b
    return h


# --------------------------------------------------------------------------- Go JSON encoding

# Fields whose Go type is a map: an empty map is dropped by `omitempty`. Every other empty object is a
# struct (or pointer to one) and Go always emits it, e.g. `"resources":{}` and `"securityContext":{}`.
_MAP_FIELDS = frozenset(
    {"labels", "annotations", "nodeSelector", "limits", "requests", "overhead", "volumeAttributes", "data"}
)
# Plain (non-pointer) bool fields tagged omitempty: false disappears when Go re-encodes them.
_OMIT_FALSE = frozenset({"stdin", "stdinOnce", "tty", "hostNetwork", "hostPID", "hostIPC", "readOnly"})
# Plain int32 fields tagged omitempty.
_OMIT_ZERO = frozenset(
    {"hostPort", "initialDelaySeconds", "timeoutSeconds", "periodSeconds", "successThreshold", "failureThreshold"}
)


def go_roundtrip(value: Any, key: str = "") -> Any:
    """What `json.Marshal` of the typed Go object would contain after decoding `value` from JSON.

    Only the pod-template fields that matter in practice are modelled: nulls, empty strings and empty
    slices/maps vanish (omitempty), empty structs stay, and a few non-pointer scalars drop their zero value.
    Returns None when the value itself is omitted.
    """
    if value is None:
        return None
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            nv = go_roundtrip(v, k)
            if nv is not None:
                out[k] = nv
        if not out and key in _MAP_FIELDS:
            return None
        return out
    if isinstance(value, list):
        items = [go_roundtrip(v) for v in value]
        items = [v for v in items if v is not None]
        return items or None
    if isinstance(value, bool):
        if not value and key in _OMIT_FALSE:
            return None
        return value
    if isinstance(value, str):
        return value or None
    if isinstance(value, int) and value == 0 and key in _OMIT_ZERO:
        return None
    return value


def go_json(value: Any) -> str:
    """Go's encoding of a map[string]interface{}: compact, keys sorted, HTML-escaped."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def semantic(value: Any) -> Any:
    """Normal form for apiequality.Semantic.DeepEqual on typed objects: absent == null == empty."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            nv = semantic(v)
            if nv is not None:
                out[k] = nv
        return out or None
    if isinstance(value, list):
        items = [semantic(v) for v in value]
        # Keep positions: list elements are compared index by index.
        items = [{} if v is None else v for v in items]
        return items or None
    if value == "" or value is None:
        return None
    return value


def template_without_hash(template: dict[str, Any], label: str = "pod-template-hash") -> dict[str, Any]:
    meta = dict(template.get("metadata") or {})
    labels = dict(meta.get("labels") or {})
    labels.pop(label, None)
    meta["labels"] = labels
    out = dict(template)
    out["metadata"] = meta
    return out


def equal_ignore_hash(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """deploymentutil.EqualIgnoreHash: templates equal once pod-template-hash labels are removed."""
    return bool(semantic(template_without_hash(a)) == semantic(template_without_hash(b)))


def compute_hash(template: dict[str, Any], collision_count: int | None) -> str:
    """controller.ComputeHash: fnv32a over the template plus the collision count, safe-encoded.

    Go hashes a spew dump of the typed struct; we hash the semantic JSON form instead, which is stable and
    unique per template (the names differ from a real cluster's, the shape does not).
    """
    h = fnv32a(go_json(semantic(template) or {}).encode())
    if collision_count is not None:
        h = fnv32a((collision_count & 0xFFFFFFFF).to_bytes(4, "little") + b"\0\0\0\0", h)
    return safe_encode(str(h))


def revision_patch(template: dict[str, Any]) -> dict[str, Any]:
    """The `data` of a DaemonSet/StatefulSet ControllerRevision (daemon/update.go and statefulset getPatch)."""
    tmpl = go_roundtrip(template) or {}
    tmpl.setdefault("metadata", {})
    tmpl["$patch"] = "replace"
    # Keys sorted at every level, as Go's map encoding emits them: a server that serialises dicts in
    # insertion order then returns the very bytes kubectl compares against for "skipped rollback".
    patch: dict[str, Any] = _sorted_keys({"spec": {"template": tmpl}})
    return patch


def _sorted_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _sorted_keys(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted_keys(v) for v in value]
    return value


def hash_controller_revision(data: dict[str, Any], probe: int | None) -> str:
    """history.HashControllerRevision: fnv32 (not 32a) of the data bytes, then the decimal probe."""
    h = fnv32(go_json(data).encode())
    if probe is not None:
        h = fnv32(str(probe).encode(), h)
    return safe_encode(str(h))


# --------------------------------------------------------------------------- numbers and time


def scaled_value(value: Any, total: int, round_up: bool) -> int:
    """intstr.GetScaledValueFromIntOrPercent."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    text = str(value)
    if text.endswith("%"):
        pct = int(text[:-1])
        exact = pct * total / 100
        return math.ceil(exact) if round_up else math.floor(exact)
    return int(text)


def now() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


def rfc3339(when: _dt.datetime | None = None) -> str:
    return (when or now()).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str | None) -> _dt.datetime | None:
    if not text:
        return None
    try:
        return _dt.datetime.strptime(text[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=_dt.UTC)
    except ValueError:
        return None


# --------------------------------------------------------------------------- metadata


def controller_ref(owner: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def controller_of(obj: dict[str, Any]) -> dict[str, Any] | None:
    refs: list[dict[str, Any]] = obj.get("metadata", {}).get("ownerReferences") or []
    for ref in refs:
        if ref.get("controller"):
            return ref
    return None


def is_controlled_by(obj: dict[str, Any], owner_uid: str) -> bool:
    ref = controller_of(obj)
    return ref is not None and ref.get("uid") == owner_uid


def get_condition(status: dict[str, Any], ctype: str) -> dict[str, Any] | None:
    conditions: list[dict[str, Any]] = status.get("conditions") or []
    for cond in conditions:
        if cond.get("type") == ctype:
            return cond
    return None


def pod_is_ready(pod: dict[str, Any]) -> bool:
    cond = get_condition(pod.get("status") or {}, "Ready")
    return cond is not None and cond.get("status") == "True"


def pod_ready_since(pod: dict[str, Any]) -> _dt.datetime | None:
    cond = get_condition(pod.get("status") or {}, "Ready")
    if cond is None or cond.get("status") != "True":
        return None
    return parse_time(cond.get("lastTransitionTime"))


def pod_is_active(pod: dict[str, Any]) -> bool:
    """controller.IsPodActive: not finished and not being deleted."""
    phase = (pod.get("status") or {}).get("phase")
    return phase not in ("Succeeded", "Failed") and not pod["metadata"].get("deletionTimestamp")


def pod_available_at(pod: dict[str, Any], min_ready_seconds: int) -> _dt.datetime | None:
    """When the pod counts as available (ready for minReadySeconds); None if it is not ready."""
    since = pod_ready_since(pod)
    if since is None:
        return None
    return since + _dt.timedelta(seconds=min_ready_seconds)
