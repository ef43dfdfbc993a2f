"""Fixtures for the shipping artefacts: the real helm against `helm-chart/`, kubesim, and value sets.

`helm` runs `.tools/bin/helm` (scripts/setup-tools.sh) with its own HOME and caches; `render(values)` is
`helm template` of the chart with those values, parsed into objects; `cluster` is a kubesim with a kubeconfig
that the same helm (and the real kubectl) use for `helm install`.
"""

from __future__ import annotations

import json
import os
import queue
import socket
import subprocess
import threading
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from sandbox.kubesim.cluster import KubeSim
from tests._policy import require_tool

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm-chart"
HELM = REPO / ".tools" / "bin" / "helm"
KUBECTL = REPO / ".venv" / "bin" / "kubectl"
VENV_BIN = REPO / ".venv" / "bin"
# How long a started `rollbot serve` may take to log that it serves.
START_TIMEOUT = 20.0

BOT_TOKEN = "xoxb-0001-chart-test"
APP_TOKEN = "xapp-1-A0ROLLBOT-0001-chart-test"
SIGNING_SECRET = "chart-test-signing-secret"

APPROVERS: dict[str, Any] = {"approvals": {"required": 1, "approvers": ["U0ALICE", "U0BOB"]}}

# A catalog naming every backend, an ad-hoc namespace and a target in another cluster.
CATALOG: dict[str, Any] = {
    "defaults": {**APPROVERS, "kubernetes": {"allowed_namespaces": ["sandbox"]}},
    "targets": {
        "workshop": {"backend": "helm", "release": "workshop", "namespace": "shop"},
        "bootcamp": {"backend": "kubernetes", "kind": "Deployment", "name": "kubernetes-bootcamp"},
        "fluentd": {"backend": "kubernetes", "kind": "DaemonSet", "name": "fluentd", "namespace": "kube-system"},
        "payments": {"backend": "ecs", "cluster": "prod", "service": "payments", "region": "eu-west-1"},
        "ledger": {
            "backend": "kubernetes",
            "kind": "StatefulSet",
            "name": "ledger",
            "namespace": "finance",
            "kube_context": "prod-eu",
        },
    },
}


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


class Helm:
    """The real helm binary with an isolated HOME/caches and, once a cluster exists, its kubeconfig."""

    def __init__(self, env: dict[str, str], workdir: Path) -> None:
        self.env = env
        self.workdir = workdir

    def __call__(self, *args: str, check: bool = True, binary: Path = HELM) -> Result:
        proc = subprocess.run(
            [str(binary), *args],
            env=self.env,
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if check and proc.returncode != 0:
            pytest.fail(f"{binary.name} {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def values_file(self, values: dict[str, Any], name: str = "values.yaml") -> Path:
        path = self.workdir / name
        path.write_text(yaml.safe_dump(values), encoding="utf-8")
        return path

    def template(self, values: dict[str, Any], *extra: str, release: str = "rb", namespace: str = "rollbot") -> str:
        file = self.values_file(values, f"{release}-values.yaml")
        return self("template", release, str(CHART), "--namespace", namespace, "-f", str(file), *extra).stdout

    def kubectl(self, *args: str, check: bool = True) -> Result:
        return self(*args, check=check, binary=KUBECTL)

    def get_json(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)


@pytest.fixture
def helm(tmp_path: Path) -> Helm:
    require_tool("helm", HELM.exists(), f"the real helm at {HELM}")
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "HELM_CACHE_HOME": str(tmp_path / "helm-cache"),
        "HELM_CONFIG_HOME": str(tmp_path / "helm-config"),
        "HELM_DATA_HOME": str(tmp_path / "helm-data"),
        "KUBECACHEDIR": str(tmp_path / "kube-cache"),
        "NO_COLOR": "1",
    }
    return Helm(env, tmp_path)


@pytest.fixture
def render(helm: Helm) -> Callable[..., list[dict[str, Any]]]:
    """`helm template` with these values → the rendered objects."""

    def _render(values: dict[str, Any], *extra: str) -> list[dict[str, Any]]:
        return [doc for doc in yaml.safe_load_all(helm.template(values, *extra)) if doc]

    return _render


@pytest.fixture
def cluster(helm: Helm, tmp_path: Path) -> Iterator[Helm]:
    """A kubesim the same helm (and the real kubectl) are pointed at."""
    require_tool("kubectl", KUBECTL.exists(), f"the real kubectl at {KUBECTL}")
    with KubeSim(pod_ready_seconds=0.1) as sim:
        kubeconfig = tmp_path / "kubeconfig"
        sim.write_kubeconfig(kubeconfig)
        helm.env["KUBECONFIG"] = str(kubeconfig)
        yield helm


def socket_values(**overrides: Any) -> dict[str, Any]:
    """The default shape: Socket Mode, tokens inline, an external Redis URL, the full catalog."""
    values: dict[str, Any] = {
        "slack": {"botToken": BOT_TOKEN, "appToken": APP_TOKEN},
        "redis": {"url": "rediss://:s3cret@redis.example.internal:6380/0"},
        "catalog": CATALOG,
    }
    return values | overrides


def find(objects: list[dict[str, Any]], kind: str, name: str | None = None, namespace: str | None = None) -> Any:
    """The one object of this kind (and name/namespace, when given); fails when there is not exactly one."""
    found = [
        obj
        for obj in objects
        if obj["kind"] == kind
        and (name is None or obj["metadata"]["name"] == name)
        and (namespace is None or obj["metadata"].get("namespace") == namespace)
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''} in {namespace or 'any namespace'}, found {len(found)}"
    return found[0]


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [obj for obj in objects if obj["kind"] == kind]


# The one cluster-scoped role rendered without being asked for (ADR 0020): reading who reconciles a target.
GITOPS_READER_SUFFIX = "-gitops"
GITOPS_READS = [
    ("argoproj.io", "applications"),
    ("kustomize.toolkit.fluxcd.io", "kustomizations"),
    ("helm.toolkit.fluxcd.io", "helmreleases"),
]


def cluster_wide_but_gitops_reader(objects: list[dict[str, Any]], kind: str = "ClusterRole") -> list[dict[str, Any]]:
    """The ClusterRoles (or their bindings) other than the GitOps reader."""
    return [obj for obj in of_kind(objects, kind) if not obj["metadata"]["name"].endswith(GITOPS_READER_SUFFIX)]


Grant = tuple[str, str, str, str, str]  # namespace ("*" cluster-wide), apiGroup, resource, verb, name ("*" any)


def granted(objects: list[dict[str, Any]]) -> set[Grant]:
    grants: set[Grant] = set()
    for role in of_kind(objects, "Role") + of_kind(objects, "ClusterRole"):
        namespace = role["metadata"].get("namespace", "*")
        for rule in role["rules"]:
            assert set(rule) <= {"apiGroups", "resources", "verbs", "resourceNames"}, rule
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    for verb in rule["verbs"]:
                        for name in rule.get("resourceNames") or ["*"]:
                            grants.add((namespace, group, resource, verb, name))
    return grants


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    """name → value (a string) or valueFrom (a dict)."""
    return {item["name"]: item.get("value", item.get("valueFrom")) for item in container.get("env", [])}


# -- running the bot as a process ----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def follow(process: subprocess.Popen[str]) -> queue.Queue[str | None]:
    """The process's output, line by line, as it comes (None at EOF)."""
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def wait_for_line(lines: queue.Queue[str | None], event: str) -> dict[str, object]:
    seen: list[str] = []
    while True:
        try:
            line = lines.get(timeout=START_TIMEOUT)
        except queue.Empty:
            pytest.fail(f"no {event!r} log line within {START_TIMEOUT}s; output so far:\n{''.join(seen)}")
        if line is None:
            pytest.fail(f"the process exited before {event!r}; output:\n{''.join(seen)}")
        seen.append(line)
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("event") == event:
            return record


def get(port: int, path: str) -> tuple[int, object]:
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback, never via a proxy
    with direct.open(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
        return response.status, json.loads(response.read())
