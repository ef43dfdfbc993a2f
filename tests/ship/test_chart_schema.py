"""values.schema.json: `helm install` refuses bad values with helm's own error naming the offending path.

Every case starts from the valid Socket Mode value set and changes one thing; the install must fail before
anything reaches the cluster (kubesim), with the schema's message.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from sandbox.kubesim.cluster import KubeSim
from tests._policy import require_tool
from tests.ship.conftest import CHART, HELM, Helm

pytestmark = pytest.mark.needs_helm

BASE = CHART / "ci" / "socket-values.yaml"

# (id, values layered over the valid set, what helm must say)
BAD_VALUES: list[tuple[str, dict[str, Any], str]] = [
    ("unknown-mode", {"mode": "grpc"}, "at '/mode': value must be one of 'socket', 'http'"),
    ("zero-replicas", {"replicaCount": 0}, "at '/replicaCount': minimum: got 0, want 1"),
    ("replicas-as-string", {"replicaCount": "two"}, "at '/replicaCount': got string, want integer"),
    ("misspelt-key", {"replicas": 2}, "additional properties 'replicas' not allowed"),
    ("socket-mode-without-app-token", {"slack": {"appToken": ""}}, "at '/slack/appToken': minLength: got 0, want 1"),
    (
        "http-mode-without-signing-secret",
        {"mode": "http"},
        "at '/slack/signingSecret': minLength: got 0, want 1",
    ),
    ("app-token-as-bot-token", {"slack": {"botToken": "xapp-1-oops"}}, "at '/slack/botToken'"),
    ("ingress-in-socket-mode", {"ingress": {"enabled": True, "host": "rollbot.example.com"}}, "value must be 'http'"),
    ("no-redis-at-all", {"redis": {"url": ""}}, "at '/redis': 'anyOf' failed"),
    ("bundled-and-external-redis", {"redis": {"bundled": {"enabled": True}}}, "at '/redis/url': value must be ''"),
    ("redis-url-without-scheme", {"redis": {"url": "redis.example:6379"}}, "at '/redis/url'"),
    (
        "helm-target-without-release",
        {"catalog": {"targets": {"shop": {"backend": "helm", "namespace": "shop"}}}},
        "at '/catalog/targets/shop': missing property 'release'",
    ),
    (
        "unsupported-workload-kind",
        {"catalog": {"targets": {"db": {"backend": "kubernetes", "kind": "Pod", "name": "db"}}}},
        "at '/catalog/targets/db/kind': value must be one of 'Deployment', 'DaemonSet', 'StatefulSet'",
    ),
    (
        "unknown-target-field",
        {"catalog": {"targets": {"db": {"backend": "kubernetes", "kind": "Deployment", "name": "db", "ns": "x"}}}},
        "additional properties 'ns' not allowed",
    ),
    (
        "approver-is-a-name-not-an-id",
        {"catalog": {"defaults": {"approvals": {"approvers": ["@alice"]}}}},
        "at '/catalog/defaults/approvals/approvers/0'",
    ),
    (
        "wildcard-rbac-resource",
        {"rbac": {"helmReleaseResources": [{"apiGroup": "apps", "resources": ["*"]}]}},
        "'*' does not match pattern",
    ),
    (
        "writable-root-filesystem",
        {"securityContext": {"readOnlyRootFilesystem": False}},
        "at '/securityContext/readOnlyRootFilesystem': value must be true",
    ),
    ("running-as-root", {"podSecurityContext": {"runAsNonRoot": False}}, "at '/podSecurityContext/runAsNonRoot'"),
    ("image-digest-not-a-digest", {"image": {"digest": "latest"}}, "at '/image/digest'"),
]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Helm]:
    require_tool("helm", HELM.exists(), f"the real helm at {HELM}")
    work = tmp_path_factory.mktemp("schema")
    with KubeSim() as sim:
        kubeconfig = work / "kubeconfig"
        sim.write_kubeconfig(kubeconfig)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(work),
            "KUBECONFIG": str(kubeconfig),
            "HELM_CACHE_HOME": str(work / "helm-cache"),
            "HELM_CONFIG_HOME": str(work / "helm-config"),
            "HELM_DATA_HOME": str(work / "helm-data"),
            "NO_COLOR": "1",
        }
        yield Helm(env, work)


@pytest.mark.parametrize(("overrides", "message"), [case[1:] for case in BAD_VALUES], ids=[c[0] for c in BAD_VALUES])
def test_install_refuses_bad_values_with_the_schema_error(
    cluster: Helm, overrides: dict[str, Any], message: str
) -> None:
    layer = Path(cluster.workdir) / "bad.yaml"
    layer.write_text(yaml.safe_dump(overrides), encoding="utf-8")
    result = cluster("install", "bad", str(CHART), "-f", str(BASE), "-f", str(layer), check=False)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr, result.stderr
    assert message in result.stderr, result.stderr
    # Refused before anything was created: helm recorded no release at all.
    assert cluster("status", "bad", check=False).returncode != 0
    assert cluster.kubectl("get", "secrets", "-A", "-l", "owner=helm,name=bad", "-o", "name").stdout.strip() == ""


def test_the_valid_base_installs(cluster: Helm) -> None:
    result = cluster("install", "good", str(CHART), "-f", str(BASE), "--set", "rbac.create=false")
    assert "STATUS: deployed" in result.stdout
    cluster("uninstall", "good")
