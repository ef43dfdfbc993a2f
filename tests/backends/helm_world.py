"""A real helm binary against kubesim, with an isolated HOME and caches, and a chart from `helm create`."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from sandbox.kubesim.cluster import KubeSim
from tests._policy import require_tool

REPO = Path(__file__).resolve().parents[2]
HELM = REPO / ".tools" / "bin" / "helm"
# helm v3 (3.17), fetched next to v4 by scripts/setup-tools.sh, for the backend's v3 flags.
HELM3 = REPO / ".tools" / "bin" / "helm3"


class HelmWorld:
    def __init__(self, sim: KubeSim, workdir: Path, kubeconfig: Path, binary: Path = HELM) -> None:
        require_tool(binary.name, binary.exists(), f"the real {binary.name} at {binary}")
        self.binary = binary
        self.sim = sim
        self.workdir = workdir
        self.kubeconfig = kubeconfig
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(workdir / "home"),
            "KUBECONFIG": str(kubeconfig),
            "HELM_CACHE_HOME": str(workdir / "helm-cache"),
            "HELM_CONFIG_HOME": str(workdir / "helm-config"),
            "HELM_DATA_HOME": str(workdir / "helm-data"),
        }
        self.chart = workdir / "workshop"
        if not self.chart.exists():
            self.run("create", "workshop")

    def run(self, *args: str, check: bool = True, timeout: float = 90) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(self.binary), *args],
            env=self.env,
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            pytest.fail(f"helm {' '.join(args)} exited {result.returncode}: {result.stderr}")
        return result

    def install(self, release: str = "workshop", tag: str = "1.16.0", *, wait: bool = True) -> None:
        waiting = ("--wait", "--timeout", "60s") if wait else ()
        self.run("install", release, str(self.chart), "--set", f"image.tag={tag}", *waiting)

    def upgrade(self, release: str = "workshop", tag: str = "non-existing") -> None:
        self.run("upgrade", release, str(self.chart), "--set", f"image.tag={tag}")

    def interrupted_upgrade(self, release: str = "workshop", tag: str = "non-existing-too") -> None:
        """An upgrade killed while it waits: helm leaves the release in pending-upgrade, as after a crash."""
        self._killed_while_waiting(
            ["upgrade", release, str(self.chart), "--set", f"image.tag={tag}"], release, "pending-upgrade"
        )

    def interrupted_rollback(self, revision: int, *, once: Callable[[], bool], release: str = "workshop") -> None:
        """A rollback killed as when the bot replica running it dies: helm leaves its revision in pending-rollback
        whatever the cluster does next. helm stores that revision before it applies the manifest, then waits for
        the pods; it is killed once it has stored it and `once` holds (e.g. its Deployment asks for the image)."""
        self._killed_while_waiting(["rollback", release, str(revision)], release, "pending-rollback", once)

    def deployment_image(self, name: str = "workshop", namespace: str = "default") -> str:
        """The image the Deployment's pod template asks for now (read from kubesim's store)."""
        deployment = self.sim.store.get(("apps", "v1", "deployments"), namespace, name)
        return str(deployment["spec"]["template"]["spec"]["containers"][0]["image"])

    def _killed_while_waiting(
        self, args: list[str], release: str, pending: str, applied: Callable[[], bool] = lambda: True
    ) -> None:
        process = subprocess.Popen(
            [str(self.binary), *args, "--wait", "--timeout", "60s"],
            env=self.env,
            cwd=self.workdir,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            self.wait_for_status(release, pending)
            deadline = time.monotonic() + 30
            while not applied():
                if time.monotonic() > deadline:
                    pytest.fail(f"helm {args[0]} never applied its manifest")
                time.sleep(0.02)
        finally:
            process.send_signal(signal.SIGKILL)
            process.communicate(timeout=10)

    def statuses(self, release: str = "workshop") -> list[tuple[int, str, str]]:
        import json

        rows = json.loads(self.run("history", release, "-o", "json").stdout)
        return [(row["revision"], row["status"], row["description"]) for row in rows]

    def wait_for_status(self, release: str, status: str, timeout: float = 30) -> None:
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = self.run("history", release, "-o", "json", check=False)
            if result.returncode == 0 and f'"status":"{status}"' in result.stdout.replace(" ", ""):
                return
            time.sleep(0.2)
        pytest.fail(f"release {release} never reached {status}")
