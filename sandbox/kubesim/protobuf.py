"""Decoding of Kubernetes protobuf request bodies into the equivalent JSON objects.

Typed client-go clients (kubectl create <kind>, helm's release storage) send
`application/vnd.kubernetes.protobuf`: the magic `k8s\\0` followed by a runtime.Unknown envelope whose
`raw` field holds the object message. Responses are always JSON, which those clients accept.
"""

from __future__ import annotations

import base64
import datetime as _dt
import struct
from typing import Any

from sandbox.kubesim.pb_schema import SCHEMA

MAGIC = b"k8s\x00"

# kind -> (apiVersion, message name)
KINDS: dict[str, tuple[str, str]] = {
    "Secret": ("v1", "core.Secret"),
    "ConfigMap": ("v1", "core.ConfigMap"),
    "Service": ("v1", "core.Service"),
    "Deployment": ("apps/v1", "apps.Deployment"),
    "DaemonSet": ("apps/v1", "apps.DaemonSet"),
    "StatefulSet": ("apps/v1", "apps.StatefulSet"),
    "Job": ("batch/v1", "batch.Job"),
    "DeleteOptions": ("v1", "meta.DeleteOptions"),
    "Namespace": ("v1", "core.Namespace"),
    "ServiceAccount": ("v1", "core.ServiceAccount"),
    "Pod": ("v1", "core.Pod"),
    "Role": ("rbac.authorization.k8s.io/v1", "rbac.Role"),
    "RoleBinding": ("rbac.authorization.k8s.io/v1", "rbac.RoleBinding"),
    "ClusterRole": ("rbac.authorization.k8s.io/v1", "rbac.ClusterRole"),
    "ClusterRoleBinding": ("rbac.authorization.k8s.io/v1", "rbac.ClusterRoleBinding"),
    "Ingress": ("networking.k8s.io/v1", "networking.Ingress"),
    "NetworkPolicy": ("networking.k8s.io/v1", "networking.NetworkPolicy"),
    "PodDisruptionBudget": ("policy/v1", "policy.PodDisruptionBudget"),
    "CronJob": ("batch/v1", "batch.CronJob"),
    "HorizontalPodAutoscaler": ("autoscaling/v2", "autoscaling.HorizontalPodAutoscaler"),
}

# gogo-protobuf writes non-pointer scalars even when zero, so zero values are dropped as "unset" —
# except for fields that are pointers in Go, where an explicit 0/false is meaningful.
_MEANINGFUL_ZERO = {
    "replicas",
    "revisionHistoryLimit",
    "terminationGracePeriodSeconds",
    "gracePeriodSeconds",
    "backoffLimit",
    "parallelism",
    "completions",
    "partition",
    "progressDeadlineSeconds",
    "ttlSecondsAfterFinished",
    "activeDeadlineSeconds",
    "runAsUser",
    "runAsGroup",
    "fsGroup",
    "defaultMode",
    "mode",
}
_MEANINGFUL_FALSE = {
    "automountServiceAccountToken",
    "enableServiceLinks",
    "runAsNonRoot",
    "allowPrivilegeEscalation",
    "readOnlyRootFilesystem",
    "privileged",
    "suspend",
    "optional",
    "immutable",
    "hostUsers",
    "allocateLoadBalancerNodePorts",
    "setHostnameAsFQDN",
    "orphanDependents",
    "publishNotReadyAddresses",
}
# Embedded Go structs serialized `json:",inline"`: their fields belong to the parent JSON object.
INLINE_FIELDS = {"localObjectReference", "ephemeralContainerCommon", "handler", "volumeSource", "ingressRuleValue"}


class ProtobufError(ValueError):
    pass


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= len(buf):
            raise ProtobufError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes) -> list[tuple[int, int, Any]]:
    """(field number, wire type, raw value) triples of one message."""
    out: list[tuple[int, int, Any]] = []
    pos = 0
    while pos < len(buf):
        tag, pos = _varint(buf, pos)
        number, wire = tag >> 3, tag & 7
        value: int | bytes
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value = buf[pos : pos + 8]
            pos += 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value = buf[pos : pos + length]
            pos += length
        elif wire == 5:
            value = buf[pos : pos + 4]
            pos += 4
        else:
            raise ProtobufError(f"unsupported wire type {wire}")
        out.append((number, wire, value))
    return out


def _signed64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _scalar(type_name: str, wire: int, raw: Any) -> Any:
    if type_name == "string":
        return bytes(raw).decode("utf-8")
    if type_name == "bytes":
        return base64.b64encode(bytes(raw)).decode("ascii")
    if type_name == "bool":
        return bool(raw)
    if type_name in ("int32", "int64"):
        return _signed64(raw)
    if type_name == "double":
        return struct.unpack("<d", raw)[0]
    if type_name == "float":
        return struct.unpack("<f", raw)[0]
    return raw


def _time(buf: bytes) -> str | None:
    seconds = nanos = 0
    for number, _wire, value in _fields(buf):
        if number == 1:
            seconds = _signed64(value)
        elif number == 2:
            nanos = value
    if seconds == 0 and nanos == 0:
        return None
    return _dt.datetime.fromtimestamp(seconds, _dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _int_or_string(buf: bytes) -> int | str:
    kind = 0
    int_val = 0
    str_val = ""
    for number, _wire, value in _fields(buf):
        if number == 1:
            kind = value
        elif number == 2:
            int_val = _signed64(value)
        elif number == 3:
            str_val = bytes(value).decode("utf-8")
    return str_val if kind == 1 else int_val


def _quantity(buf: bytes) -> str:
    for number, _wire, value in _fields(buf):
        if number == 1:
            return bytes(value).decode("utf-8")
    return "0"


def _value(type_name: str, wire: int, raw: Any) -> Any:
    if type_name == "meta.Time" or type_name == "meta.MicroTime":
        return _time(raw)
    if type_name == "intstr.IntOrString":
        return _int_or_string(raw)
    if type_name == "resource.Quantity":
        return _quantity(raw)
    if type_name == "meta.Duration":
        for number, _wire, value in _fields(raw):
            if number == 1:
                return f"{_signed64(value) / 1e9:g}s"
        return "0s"
    if type_name in SCHEMA:
        return decode_message(type_name, raw)
    return _scalar(type_name, wire, raw)


def _packed(type_name: str, raw: bytes) -> list[Any]:
    values = []
    pos = 0
    while pos < len(raw):
        value, pos = _varint(raw, pos)
        values.append(_scalar(type_name, 0, value))
    return values


def _is_unset(name: str, value: Any) -> bool:
    if value is None or value == "":
        return True
    if value is False:
        return name not in _MEANINGFUL_FALSE
    if value == 0 and type(value) is int:
        return name not in _MEANINGFUL_ZERO
    return False


def decode_message(message: str, buf: bytes) -> dict[str, Any]:
    schema = SCHEMA[message]
    out: dict[str, Any] = {}
    for number, wire, raw in _fields(buf):
        spec = schema.get(number)
        if spec is None:
            continue
        name, label, type_name = spec
        if label == "map":
            key = value = None
            for entry_number, entry_wire, entry_raw in _fields(raw):
                if entry_number == 1:
                    key = bytes(entry_raw).decode("utf-8")
                elif entry_number == 2:
                    value = _value(type_name, entry_wire, entry_raw)
            if value is None:
                value = "" if type_name in ("string", "bytes") else {}
            out.setdefault(name, {})[key or ""] = value
        elif label == "rep":
            items = out.setdefault(name, [])
            if wire == 2 and type_name in ("int32", "int64", "bool"):
                items.extend(_packed(type_name, raw))
            else:
                items.append(_value(type_name, wire, raw))
        else:
            value = _value(type_name, wire, raw)
            if name in INLINE_FIELDS and isinstance(value, dict):
                out.update(value)
            elif not _is_unset(name, value):
                out[name] = value
    return out


def decode(body: bytes) -> dict[str, Any]:
    """Decode a `k8s\\0`-prefixed protobuf request body into a JSON-shaped object."""
    if not body.startswith(MAGIC):
        raise ProtobufError("missing the k8s protobuf magic prefix")
    api_version = kind = ""
    raw = b""
    for number, _wire, value in _fields(body[len(MAGIC) :]):
        if number == 1:
            for type_number, _type_wire, type_value in _fields(value):
                if type_number == 1:
                    api_version = bytes(type_value).decode()
                elif type_number == 2:
                    kind = bytes(type_value).decode()
        elif number == 2:
            raw = bytes(value)
    if kind not in KINDS:
        raise UnsupportedKindError(kind or "<unknown>")
    default_version, message = KINDS[kind]
    obj = decode_message(message, raw)
    obj["apiVersion"] = api_version or default_version
    obj["kind"] = kind
    return obj


class UnsupportedKindError(ProtobufError):
    def __init__(self, kind: str) -> None:
        super().__init__(f"protobuf decoding of {kind} is not supported")
        self.kind = kind
