"""The protobuf request decoder (on hand-encoded bodies) and the Table printers."""

from __future__ import annotations

import datetime as dt

import pytest

from sandbox.kubesim import protobuf
from sandbox.kubesim.resources import BY_KEY
from sandbox.kubesim.tables import human_duration, to_table


def _varint(value: int) -> bytes:
    out = bytearray()
    value &= (1 << 64) - 1
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes | int) -> bytes:
    if isinstance(payload, int):
        return _varint(number << 3) + _varint(payload)
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _entry(key: str, value: bytes) -> bytes:
    return _field(1, key.encode()) + _field(2, value)


def _envelope(api_version: str, kind: str, raw: bytes) -> bytes:
    type_meta = _field(1, api_version.encode()) + _field(2, kind.encode())
    return protobuf.MAGIC + _field(1, type_meta) + _field(2, raw) + _field(3, b"") + _field(4, b"")


def test_secret_with_binary_data_and_zero_time() -> None:
    meta = (
        _field(1, b"sh.helm.release.v1.x.v1")
        + _field(3, b"")  # gogo writes empty strings explicitly
        + _field(8, b"")  # and a zero creationTimestamp
        + _field(11, _entry("owner", b"helm"))
        + _field(11, _entry("status", b"deployed"))
    )
    raw = _field(1, meta) + _field(2, _entry("release", b"\x1f\x8b\x08")) + _field(3, b"helm.sh/release.v1")
    obj = protobuf.decode(_envelope("v1", "Secret", raw))
    assert obj == {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "sh.helm.release.v1.x.v1", "labels": {"owner": "helm", "status": "deployed"}},
        "data": {"release": "H4sI"},
        "type": "helm.sh/release.v1",
    }


def test_deployment_with_int_or_string_and_explicit_zero_replicas() -> None:
    container = _field(1, b"web") + _field(2, b"nginx:1.25") + _field(8, b"")
    port = _field(3, 80)
    container += _field(6, port)
    pod_spec = _field(2, container) + _field(4, 30)
    template = _field(1, _field(11, _entry("app", b"web"))) + _field(2, pod_spec)
    rolling = _field(1, _field(1, 1) + _field(3, b"25%"))  # maxUnavailable: "25%"
    strategy = _field(1, b"RollingUpdate") + _field(2, rolling)
    spec = _field(1, 0) + _field(2, _field(1, _entry("app", b"web"))) + _field(3, template) + _field(4, strategy)
    obj = protobuf.decode(_envelope("apps/v1", "Deployment", _field(1, _field(1, b"web")) + _field(2, spec)))
    assert obj["spec"]["replicas"] == 0
    assert obj["spec"]["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%"}}
    containers = obj["spec"]["template"]["spec"]["containers"]
    assert containers == [{"name": "web", "image": "nginx:1.25", "resources": {}, "ports": [{"containerPort": 80}]}]
    assert obj["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 30


def test_delete_options_with_empty_raw() -> None:
    assert protobuf.decode(_envelope("v1", "DeleteOptions", b"")) == {"apiVersion": "v1", "kind": "DeleteOptions"}


def test_unknown_kind_is_unsupported() -> None:
    with pytest.raises(protobuf.UnsupportedKindError):
        protobuf.decode(_envelope("coordination.k8s.io/v1", "Lease", b""))


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (5, "5s"),
        (119, "119s"),
        (125, "2m5s"),
        (600, "10m"),
        (3 * 3600 + 60, "3h1m"),
        (30 * 3600, "30h"),
        (50 * 3600, "2d2h"),
        (400 * 86400, "400d"),
    ],
)
def test_human_duration_matches_apimachinery(seconds: int, text: str) -> None:
    assert human_duration(seconds) == text


def test_deployment_table_row_and_partial_object() -> None:
    created = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    obj = {
        "metadata": {"name": "web", "namespace": "default", "creationTimestamp": created},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.25"}]}},
        },
        "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2},
    }
    table = to_table(BY_KEY[("apps", "v1", "deployments")], [obj], "42")
    assert [c["name"] for c in table["columnDefinitions"]][:5] == ["Name", "Ready", "Up-to-date", "Available", "Age"]
    row = table["rows"][0]
    assert row["cells"][:5] == ["web", "2/3", 3, 2, "3m"]
    assert row["object"]["kind"] == "PartialObjectMetadata"
