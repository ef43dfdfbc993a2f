"""Kubernetes, Helm and ECS side by side, each the real thing a bot talks to: kubesim with the real kubectl and
helm, moto with the ECS rollout driver. One bad build broke all three; the tests ask the bot to roll them back.

`BrokenStorefront` arranges the three workloads the way people would (kubectl, helm, boto3) and reads them back
with the same tools, so a test checks each backend's own view, not the bot's.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sandbox.aws import AwsWorld
from sandbox.aws.scenarios import seed_myservice
from sandbox.aws.testing import sandbox_env
from sandbox.demo.world import CATALOG as DEMO_CATALOG
from sandbox.kubesim.cluster import KubeSim
from sandbox.kubesim.registry import RegistryConfig
from tests._policy import require_tool
from tests.backends.helm_world import HelmWorld
from tests.conformance.conftest import KUBECTL, CliRunner

# The bad builds: bootcamp's v10 and helm's non-existing tag are missing from kubesim's registry.
MISSING_IMAGES = ["*:v10", "*non-existing*"]
# Pulled fine, but the container exits 1 right after starting (CrashLoopBackOff).
CRASHING_IMAGES = ["*/crasher:*"]
POD_READY_SECONDS = 0.1
# The ECS rollout driver moves the services this often (in real time, in the background).
ECS_TICK_SECONDS = 0.1
# Generous for a loaded machine; every wait returns as soon as its condition holds.
ROLLOUT_WAIT = 45.0
REPO = Path(__file__).resolve().parents[2]

MEMBERS = ["bootcamp", "workshop", "myservice"]

# The demo's defaults and its bootcamp and workshop targets, plus the ECS seed's service, grouped for a batch.
CATALOG: dict[str, Any] = {
    "defaults": DEMO_CATALOG["defaults"],
    "targets": {
        "bootcamp": DEMO_CATALOG["targets"]["bootcamp"],
        "workshop": DEMO_CATALOG["targets"]["workshop"],
        "myservice": {"backend": "ecs", "cluster": "default", "service": "myservice", "region": "us-east-1"},
    },
    "groups": {"storefront": MEMBERS},
}

BOOTCAMP = "deployment/kubernetes-bootcamp"


def bootcamp_manifest(image: str, replicas: int = 2) -> str:
    labels = {"app": "kubernetes-bootcamp"}
    return json.dumps(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "kubernetes-bootcamp", "namespace": "default"},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "kubernetes-bootcamp", "image": image}]},
                },
            },
        }
    )


@dataclass(frozen=True)
class DeploymentView:
    revision: int
    image: str
    generation: int


class BrokenStorefront:
    """A fresh kubesim (with helm and kubectl pointed at it) and a freshly seeded moto, for one test."""

    def __init__(
        self,
        workdir: Path,
        aws: AwsWorld,
        monkeypatch: pytest.MonkeyPatch,
        pod_ready_seconds: float = POD_READY_SECONDS,
    ) -> None:
        require_tool("kubectl", KUBECTL.exists(), f"the real kubectl at {KUBECTL}")
        self.sim = KubeSim(
            pod_ready_seconds=pod_ready_seconds,
            registry=RegistryConfig(missing=MISSING_IMAGES, crashloop=CRASHING_IMAGES),
        )
        self.sim.start()
        self.kubeconfig = workdir / "kubeconfig"
        self.sim.write_kubeconfig(self.kubeconfig)
        self.helm = HelmWorld(self.sim, workdir, self.kubeconfig)
        self.kubectl = CliRunner(KUBECTL, self.helm.env | {"KUBECACHEDIR": str(workdir / "kube-cache")}, workdir)
        # The bot runs helm and boto3 with the process environment: the test's HOME, caches and AWS endpoint.
        for key, value in self.helm.env.items():
            if key != "PATH":
                monkeypatch.setenv(key, value)
        for key, value in sandbox_env(aws.url).items():
            monkeypatch.setenv(key, value)
        self.aws = aws
        aws.reset()

    def close(self) -> None:
        self.aws.driver.stop_background()
        self.sim.stop()

    def bot_settings(self) -> dict[str, Any]:
        return {"kubeconfig": str(self.kubeconfig), "helm_path": str(self.helm.binary)}

    # --- arranging: the bad build reached every workload ------------------------------------------------------

    def break_everything(self, bootcamp_replicas: int = 2) -> None:
        self.break_bootcamp(bootcamp_replicas)
        self.break_workshop()
        self.break_myservice()

    def break_bootcamp(self, replicas: int = 2) -> None:
        """Revision 1 runs v1; revision 2 asks for v10, which does not exist (seed 004)."""
        image = "gcr.io/google-samples/kubernetes-bootcamp"
        self.kubectl("apply", "-f", "-", stdin=bootcamp_manifest(f"{image}:v1", replicas))
        self.kubectl("rollout", "status", BOOTCAMP, "--timeout=60s")
        self.kubectl("set", "image", BOOTCAMP, f"kubernetes-bootcamp={image}:v10")

    def break_workshop(self) -> None:
        """Revision 1 is a good install; revision 2 an upgrade to an image that does not exist (seed 000)."""
        self.helm.install(tag="1.16.0")
        self.helm.upgrade(tag="non-existing")

    def break_myservice(self) -> None:
        """Seed 002: myservice runs revision 4, the bad build; revision 3 is the one before."""
        seed_myservice(self.aws.client("ecs"), self.aws.client("application-autoscaling"))
        self.aws.driver.run_in_background(ECS_TICK_SECONDS)

    # --- observing, with each backend's own tools -------------------------------------------------------------

    def bootcamp(self) -> DeploymentView:
        found = self.kubectl("get", BOOTCAMP, "-o", "json").json()
        return DeploymentView(
            revision=int(found["metadata"]["annotations"]["deployment.kubernetes.io/revision"]),
            image=found["spec"]["template"]["spec"]["containers"][0]["image"].rsplit(":", 1)[-1],
            generation=int(found["metadata"]["generation"]),
        )

    def bootcamp_rolled_out(self) -> bool:
        return self.kubectl("rollout", "status", BOOTCAMP, "--timeout=30s", check=False).returncode == 0

    def workshop(self) -> list[tuple[int, str, str]]:
        return self.helm.statuses()

    def myservice(self) -> dict[str, Any]:
        found = self.aws.client("ecs").describe_services(cluster="default", services=["myservice"])["services"][0]
        return dict(found)

    def myservice_primary(self) -> str:
        deployments = self.myservice()["deployments"]
        primary = next(d for d in deployments if d["status"] == "PRIMARY")
        return f"{primary['taskDefinition'].rsplit('/', 1)[-1]} {primary['rolloutState']}"

    def snapshot(self) -> tuple[Any, ...]:
        """Everything a rollback could change, to compare before and after something that must change nothing."""
        service = self.myservice()
        deployments = sorted((d["id"], d["taskDefinition"]) for d in service["deployments"])
        return (self.bootcamp(), self.workshop(), service["taskDefinition"], deployments)


class ServedReplica:
    """`rollbot serve` as a real process, with the real backends, in a session of its own so that `kill()` takes
    its helm and kubectl children with it, as a container's death would."""

    def __init__(self, env: dict[str, str]) -> None:
        with socket.socket() as probe:  # a free port: `rollbot serve` does not print the one it was given
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bot"],
            cwd=REPO,
            env=env | {"ROLLBOT_HOST": "127.0.0.1", "ROLLBOT_PORT": str(port)},
            start_new_session=True,
        )
        deadline = time.monotonic() + ROLLOUT_WAIT
        while not self._ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"rollbot serve did not start (exit code {self.process.returncode})")
            time.sleep(0.05)

    @property
    def events_url(self) -> str:
        return f"{self.url}/slack/events"

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/readyz", timeout=1) as answer:  # noqa: S310 - http to loopback
                return bool(answer.status == 200)
        except OSError:
            return False

    def kill(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
