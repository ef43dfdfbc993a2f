"""DaemonSet and StatefulSet rollouts with the REAL kubectl: ControllerRevision history, undo with the
roll-forward rule (seed 001) and `rollout status`."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from tests.conformance.conftest import CliRunner, needs_controllers

pytestmark = [needs_controllers, pytest.mark.needs_kubectl]

DAEMONSET = """\
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: agent
  annotations:
    kubernetes.io/change-cause: initial agent
spec:
  selector:
    matchLabels: {app: agent}
  template:
    metadata:
      labels: {app: agent}
    spec:
      containers:
      - name: agent
        image: busybox:1.36
        command: ["sleep", "3600"]
"""

STATEFULSET = """\
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
spec:
  serviceName: web
  replicas: 3
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: nginx
        image: nginx:1.25
"""


def revisions_table(kubectl: CliRunner, selector: str) -> dict[str, str]:
    """`kubectl get controllerrevision -l ...` as NAME -> REVISION."""
    lines = kubectl("get", "controllerrevision", "-l", selector).stdout.splitlines()
    assert lines[0].split() == ["NAME", "CONTROLLER", "REVISION", "AGE"]
    return {row.split()[0]: row.split()[2] for row in lines[1:]}


def test_daemonset_undo_rolls_revision_one_forward(kubectl: CliRunner, wait_for: Callable[..., Any]) -> None:
    """Seed 001: undoing 2 -> 1 turns revision 1 into revision 3."""
    assert kubectl("apply", "-f", "-", stdin=DAEMONSET).stdout == "daemonset.apps/agent created\n"
    status = kubectl("rollout", "status", "ds/agent", "--timeout=30s")
    assert status.stdout.splitlines()[-1] == 'daemon set "agent" successfully rolled out'
    (v1_name,) = revisions_table(kubectl, "app=agent")

    kubectl("set", "image", "ds/agent", "agent=busybox:1.37")
    status = kubectl("rollout", "status", "ds/agent", "--timeout=30s")
    # Intermediate messages depend on timing; each must be one of kubectl's DaemonSet progress lines.
    progress = re.compile(
        r'Waiting for daemon set "agent" rollout to finish: '
        r"(\d out of 3 new pods have been updated|\d of 3 updated pods are available)\.\.\."
    )
    assert all(progress.fullmatch(line) for line in status.stdout.splitlines()[:-1])
    assert status.stdout.splitlines()[-1] == 'daemon set "agent" successfully rolled out'
    history = kubectl("rollout", "history", "daemonset", "agent")
    # The CR annotations are a copy of the DaemonSet's, so the change-cause sticks to both revisions.
    assert history.stdout == (
        "daemonset.apps/agent \nREVISION  CHANGE-CAUSE\n1         initial agent\n2         initial agent\n\n"
    )
    rev1 = kubectl("rollout", "history", "daemonset", "agent", "--revision=1").stdout
    assert rev1.startswith("daemonset.apps/agent with revision #1\nPod Template:\n  Labels:\tapp=agent\n")
    assert "    Image:\tbusybox:1.36\n" in rev1

    undo = kubectl("rollout", "undo", "daemonset", "agent", "--to-revision=1")
    assert undo.stdout == "daemonset.apps/agent rolled back\n"
    status = kubectl("rollout", "status", "ds/agent", "--timeout=30s")
    assert status.stdout.splitlines()[-1] == 'daemon set "agent" successfully rolled out'
    history = kubectl("rollout", "history", "daemonset", "agent")
    assert [line.split()[0] for line in history.stdout.splitlines()[2:] if line] == ["2", "3"]

    table = revisions_table(kubectl, "app=agent")
    assert len(table) == 2
    assert table[v1_name] == "3"
    controller = kubectl("get", "controllerrevision", v1_name).stdout.splitlines()[1].split()[1]
    assert controller == "daemonset.apps/agent"
    images = kubectl("get", "pods", "-l", "app=agent", "-o", "jsonpath={.items[*].spec.containers[0].image}")
    assert images.stdout.split() == ["busybox:1.36"] * 3
    nodes = kubectl("get", "pods", "-l", "app=agent", "-o", "jsonpath={.items[*].spec.nodeName}").stdout.split()
    assert sorted(nodes) == ["node-1", "node-2", "node-3"]

    # kubectl compares its own encoding of the DaemonSet with the CR bytes: they must match exactly.
    skipped = kubectl("rollout", "undo", "daemonset", "agent", "--to-revision=3")
    assert skipped.stdout == "daemonset.apps/agent skipped rollback (current template already matches revision 3)\n"
    ds = kubectl("get", "ds", "agent").stdout.splitlines()[1].split()
    assert ds[:6] == ["agent", "3", "3", "3", "3", "3"]


def test_statefulset_set_image_undo_and_status(kubectl: CliRunner, wait_for: Callable[..., Any]) -> None:
    assert kubectl("apply", "-f", "-", stdin=STATEFULSET).stdout == "statefulset.apps/web created\n"
    status = kubectl("rollout", "status", "sts/web", "--timeout=30s")
    assert status.stdout.splitlines()[-1] == "partitioned roll out complete: 3 new pods have been updated..."
    pods = kubectl("get", "pods", "-l", "app=web", "-o", "jsonpath={.items[*].metadata.name}").stdout.split()
    assert pods == ["web-0", "web-1", "web-2"]

    kubectl("set", "image", "sts/web", "nginx=nginx:1.26")
    status = kubectl("rollout", "status", "sts/web", "--timeout=30s")
    assert status.stdout.splitlines()[-1] == "partitioned roll out complete: 3 new pods have been updated..."
    images = kubectl("get", "pods", "-l", "app=web", "-o", "jsonpath={.items[*].spec.containers[0].image}")
    assert images.stdout.split() == ["nginx:1.26"] * 3
    history = kubectl("rollout", "history", "sts/web").stdout
    assert history == "statefulset.apps/web \nREVISION  CHANGE-CAUSE\n1         <none>\n2         <none>\n\n"

    undo = kubectl("rollout", "undo", "sts/web")
    assert undo.stdout == "statefulset.apps/web rolled back\n"
    status = kubectl("rollout", "status", "sts/web", "--timeout=30s")
    assert status.returncode == 0
    assert status.stdout.splitlines()[-1] == "partitioned roll out complete: 3 new pods have been updated..."

    def images_back() -> bool:
        out = kubectl("get", "pods", "-l", "app=web", "-o", "jsonpath={.items[*].spec.containers[0].image}")
        return out.stdout.split() == ["nginx:1.25"] * 3

    wait_for(images_back, message="pods back on nginx:1.25")
    history = kubectl("rollout", "history", "sts/web").stdout
    assert [line.split()[0] for line in history.splitlines()[2:] if line] == ["2", "3"]
    sts = kubectl("get", "sts", "web", "-o", "jsonpath={.status.currentRevision} {.status.updateRevision}").stdout
    current, update = sts.split()
    assert current == update
    assert revisions_table(kubectl, "app=web")[current] == "3"
    ready = kubectl("get", "sts", "web").stdout.splitlines()[1].split()
    assert ready[:2] == ["web", "3/3"]
