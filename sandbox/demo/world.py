"""The demo's world: kubesim, fake Slack, a private Redis and a real rollbot, wired like production.

The bot is built with `bot.app.build_app` from the same settings an operator sets (`SLACK_API_URL`,
`REDIS_URL`, `ROLLBOT_CONFIG`, `KUBECONFIG`, `ROLLBOT_HELM`); only the URLs point at the simulated world.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sandbox.demo.room import DemoFailed, IncidentRoom
from sandbox.kubesim.cluster import KubeSim
from sandbox.kubesim.registry import RegistryConfig
from sandbox.slack.seed import ALICE, BOB, CAROL, INCIDENT, SRE_GROUP

REPO = Path(__file__).resolve().parents[2]
TOOLS = REPO / ".tools" / "bin"
# The seeds' missing images: bootcamp's v10 (seed 004) and anything called non-existing (seed 000).
MISSING_IMAGES = ["*:v10", "*non-existing*"]

CATALOG: dict[str, Any] = {
    "defaults": {
        "approvals": {
            "required": 1,
            "approvers": [ALICE, BOB, CAROL],
            "approver_groups": [SRE_GROUP],
            "allow_self_approval": False,
            "expires_after": "15m",
        },
        "allowed_channels": [INCIDENT],
        "kubernetes": {"allowed_namespaces": ["default"]},
    },
    "targets": {
        "bootcamp": {
            "backend": "kubernetes",
            "kind": "Deployment",
            "name": "kubernetes-bootcamp",
            "namespace": "default",
            "kube_context": "sandbox",
        },
        "workshop": {"backend": "helm", "release": "workshop", "namespace": "default", "kube_context": "sandbox"},
        # The "noticed" scene: only this target has a detect channel, so the other scenes post no incident card.
        "frontend": {
            "backend": "kubernetes",
            "kind": "Deployment",
            "name": "frontend",
            "namespace": "default",
            "kube_context": "sandbox",
            "detect": {"channel": INCIDENT, "failing_for": "3s", "healthy_for": "3s"},
        },
    },
}


class DemoWorld(IncidentRoom):
    """kubesim with the seeds' missing images, and the real kubectl and helm pointed at it."""

    def __init__(self, *, pod_ready_seconds: float = 0.5) -> None:
        super().__init__(prefix="rollbot-demo-")
        self.kubesim = KubeSim(pod_ready_seconds=pod_ready_seconds, registry=RegistryConfig(missing=MISSING_IMAGES))
        self.kubeconfig = self.workdir / "kubeconfig"
        self.env: dict[str, str] = {}

    def open_world(self) -> None:
        self.kubesim.start()
        self.kubesim.write_kubeconfig(self.kubeconfig)
        self.env = {
            "PATH": f"{TOOLS}{os.pathsep}{os.environ.get('PATH', '')}",
            "HOME": str(self.workdir / "home"),
            "KUBECONFIG": str(self.kubeconfig),
            "HELM_CACHE_HOME": str(self.workdir / "helm-cache"),
            "HELM_CONFIG_HOME": str(self.workdir / "helm-config"),
            "HELM_DATA_HOME": str(self.workdir / "helm-data"),
        }
        # The bot's helm subprocess must see the demo's HOME and caches, not the user's.
        os.environ.update({key: value for key, value in self.env.items() if key != "PATH"})

    def close_world(self) -> None:
        self.kubesim.stop()

    def catalog(self) -> dict[str, Any]:
        return CATALOG

    def settings(self) -> dict[str, Any]:
        return {"kubeconfig": str(self.kubeconfig), "helm_path": self.binary("helm")}

    # -- the terminal ----------------------------------------------------------------------------------------

    def binary(self, name: str) -> str:
        found = TOOLS / name
        if found.exists():
            return str(found)
        on_path = shutil.which(name)
        if on_path is None:
            raise DemoFailed(f"`{name}` not found: run `make setup` (scripts/setup-tools.sh fetches it)")
        return on_path

    def sh(self, tool: str, *args: str, check: bool = True, show: bool = True) -> subprocess.CompletedProcess[str]:
        """Run the real kubectl or helm against kubesim and show it like a terminal would."""
        if show:
            print(f"$ {tool} {' '.join(args)}", flush=True)
        result = subprocess.run(
            [self.binary(tool), *args],
            env=self.env,
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if show:
            output = (result.stdout + result.stderr).rstrip()
            if output:
                print(output, flush=True)
        if check and result.returncode != 0:
            raise DemoFailed(f"{tool} {' '.join(args)} exited {result.returncode}")
        return result

    def wait_until_rolled_out(self, resource: str, seconds: int = 60) -> None:
        self.sh("kubectl", "rollout", "status", resource, f"--timeout={seconds}s")


__all__ = ["DemoFailed", "DemoWorld", "timed"]


def timed(label: str) -> Callable[[Callable[[DemoWorld], None]], Callable[[DemoWorld], None]]:
    def wrap(scenario: Callable[[DemoWorld], None]) -> Callable[[DemoWorld], None]:
        def run(world: DemoWorld) -> None:
            started = time.monotonic()
            scenario(world)
            world.say(f"{label}: done in {time.monotonic() - started:.1f}s")

        return run

    return wrap
