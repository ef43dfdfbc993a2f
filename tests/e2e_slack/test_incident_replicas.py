"""Three `rollbot serve` replicas share one watched context; two of them are killed with SIGKILL at random
moments while 20 Deployments (five per namespace, each namespace's cards in their own channel) break and are
fixed again. Still exactly one card per incident, every incident
resolved, and the context watched again within 20 s of its holder's death.

Everything is real except Slack: the replicas are `python -m bot` processes with the production wiring (the real
Kubernetes watcher, the default 15 s watch lease), against kubesim over HTTP, one real redis-server and the fake
Slack. A killed replica gives nothing back: its lease must lapse, and the replica that takes the context over
lists it again before it decides anything (meanwhile Deployments kept breaking and getting fixed unwatched).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from sandbox.kubesim.cluster import KubeSim
from sandbox.kubesim.registry import RegistryConfig
from sandbox.slack.seed import ALICE, BOT_TOKEN, BOT_USER_ID, SIGNING_SECRET, Channel
from sandbox.slack.server import FakeSlack
from tests.e2e_slack.conftest import CATALOG, eventually

REPO = Path(__file__).resolve().parents[2]
INCIDENTS = 20
# Five workloads per namespace, each namespace's cards in a channel of its own: more than five incidents in one
# channel within two minutes would be a mass failure with one summary card (ADR 0019), not a card per incident.
PER_CHANNEL = 5
NAMESPACES = [f"load-{k}" for k in range(INCIDENTS // PER_CHANNEL)]
CHANNELS = [f"C0INCIDENT{k}" for k in range(INCIDENTS // PER_CHANNEL)]
GOOD, FIXED, MISSING = "registry.example/svc:1", "registry.example/svc:2", "registry.example/svc:missing"
# The promise, with the default lease (15 s) and renewal (every 5 s).
TAKEOVER_WITHIN = 20.0
# The lease hash the replicas compete for (bot/adapters/redis_incidents.py, default key prefix).
LEASE_KEY = "rollbot:{rollbot}:ctx-lease:kubernetes:sandbox"


def _document() -> dict[str, Any]:
    return {
        **CATALOG,
        "defaults": {
            **CATALOG["defaults"],
            "detect": {"channel": CHANNELS[0], "failing_for": "1s", "healthy_for": "1s"},
            "kubernetes": {"kube_context": "sandbox", "allowed_namespaces": NAMESPACES},
        },
        "watch": [
            {
                "backend": "kubernetes",
                "kube_context": "sandbox",
                "namespaces": [namespace],
                "detect": {"channel": channel},
            }
            for namespace, channel in zip(NAMESPACES, CHANNELS, strict=True)
        ],
    }


class _Replica:
    """`python -m bot` (that is `rollbot serve`), a real process this test can SIGKILL."""

    def __init__(self, replica_id: str, env: dict[str, str]) -> None:
        self.replica_id = replica_id
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bot"],
            cwd=REPO,
            env=env | {"ROLLBOT_REPLICA_ID": replica_id},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._serving = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:  # drained to the end, so the bot never blocks on a full pipe
            self.lines.append(line)
            if '"serving http"' in line:
                self._serving.set()

    def wait_serving(self, timeout: float = 60) -> None:
        if not self._serving.wait(timeout):
            self.kill()
            raise AssertionError(f"{self.replica_id} did not start: {''.join(self.lines[-20:])}")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def troubles(self) -> list[str]:
        """What it logged at warning or above (shown when the test fails)."""
        found = []
        for line in self.lines:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("level") in ("warning", "error", "critical"):
                found.append(f"{self.replica_id}: {record.get('event')} {str(record.get('exception', ''))[-400:]}")
        return found


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[KubeSim, Path]]:
    sim = KubeSim(pod_ready_seconds=0.2, registry=RegistryConfig(missing=["*:missing"])).start()
    kubeconfig = tmp_path / "kubeconfig"
    sim.write_kubeconfig(kubeconfig)
    try:
        yield sim, kubeconfig
    finally:
        sim.stop()


@pytest.fixture
def spawn(
    fake_slack: FakeSlack, redis_url: str, tmp_path: Path, cluster: tuple[KubeSim, Path]
) -> Iterator[Callable[[str], _Replica]]:
    catalog_path = tmp_path / "catalog.yaml"
    catalog_path.write_text(yaml.safe_dump(_document()), encoding="utf-8")
    env = {key: value for key, value in os.environ.items() if not key.lower().endswith("_proxy")}
    env = {key: value for key, value in env.items() if not key.startswith(("ROLLBOT_", "SLACK_", "REDIS_"))}
    env |= {
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": fake_slack.api_url,
        "REDIS_URL": redis_url,
        "ROLLBOT_CONFIG": str(catalog_path),
        "KUBECONFIG": str(cluster[1]),
        "ROLLBOT_HOST": "127.0.0.1",
        "ROLLBOT_PORT": "0",
        "ROLLBOT_SWEEP_INTERVAL": "1",
        "ROLLBOT_SLACK_BUDGET_SCALE": "60",  # the fake enforces no limits here
        "PYTHONPATH": str(REPO),
    }
    replicas: list[_Replica] = []

    def start(replica_id: str) -> _Replica:
        replica = _Replica(replica_id, env)
        replicas.append(replica)
        return replica

    yield start
    for replica in replicas:
        replica.kill()


def _namespace(n: int) -> str:
    return NAMESPACES[n // PER_CHANNEL]


def _apps(kubeconfig: Path) -> k8s.AppsV1Api:
    return k8s.AppsV1Api(k8s_config.new_client_from_config(config_file=str(kubeconfig)))


def _create(kubeconfig: Path) -> None:
    api = k8s_config.new_client_from_config(config_file=str(kubeconfig))
    for namespace in NAMESPACES:
        k8s.CoreV1Api(api).create_namespace({"metadata": {"name": namespace}})
    for n in range(INCIDENTS):
        labels = {"app": f"svc-{n}"}
        body = {
            "metadata": {"name": f"svc-{n}", "namespace": _namespace(n)},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "app", "image": GOOD}]}},
            },
        }
        k8s.AppsV1Api(api).create_namespaced_deployment(_namespace(n), body)


def _set_image(apps: k8s.AppsV1Api, n: int, image: str) -> None:
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": image}]}}}}
    apps.patch_namespaced_deployment(f"svc-{n}", _namespace(n), patch)


def _all_available(apps: k8s.AppsV1Api) -> bool:
    items = [d for namespace in NAMESPACES for d in apps.list_namespaced_deployment(namespace).items]
    return len(items) == INCIDENTS and all(d.status is not None and d.status.available_replicas == 1 for d in items)


def _card_posts(fake: FakeSlack) -> dict[str, list[dict[str, Any]]]:
    """Every chat.postMessage of an incident card, by workload: one per incident is the promise."""
    posts: dict[str, list[dict[str, Any]]] = {}
    for call in fake.calls("chat.postMessage"):
        metadata = call.args.get("metadata") or {}
        if isinstance(metadata, str):
            metadata = json.loads(metadata)
        if metadata.get("event_type") == "rollbot_incident":
            payload = metadata["event_payload"]
            posts.setdefault(payload["name"], []).append(payload)
    return posts


def _card_states(fake: FakeSlack) -> dict[str, str]:
    """Each card's state as it reads now (after its edits in place)."""
    return {
        (m.metadata or {})["event_payload"]["name"]: (m.metadata or {})["event_payload"]["state"]
        for channel in CHANNELS
        for m in fake.messages(channel)
        if (m.metadata or {}).get("event_type") == "rollbot_incident"
    }


def _holder(leases: redis.Redis) -> str | None:
    holder = leases.hget(LEASE_KEY, "holder")
    return str(holder) if holder else None


def test_three_replicas_two_killed_with_sigkill_post_one_card_per_incident_and_resolve_them_all(
    spawn: Callable[[str], _Replica], fake_slack: FakeSlack, redis_url: str, cluster: tuple[KubeSim, Path]
) -> None:
    for channel in CHANNELS:
        fake_slack.add_channel(Channel(id=channel, name=channel.lower(), members=[BOT_USER_ID, ALICE]))
    kubeconfig = cluster[1]
    apps = _apps(kubeconfig)
    _create(kubeconfig)
    eventually(lambda: _all_available(apps), timeout=60, description="20 healthy Deployments")
    leases = redis.Redis.from_url(redis_url, decode_responses=True)
    replicas = {replica_id: spawn(replica_id) for replica_id in ("replica-0", "replica-1", "replica-2")}
    for replica in replicas.values():
        replica.wait_serving()
    eventually(lambda: _holder(leases) in replicas, timeout=TAKEOVER_WITHIN, description="a first holder")

    chaos = random.Random(20261207)
    kill_while_breaking, kill_while_fixing = chaos.randrange(INCIDENTS), chaos.randrange(INCIDENTS)
    takeovers: list[float] = []
    alive = dict(replicas)

    def kill_the_holder() -> None:
        """SIGKILL whichever replica watches the context now, and time how long the context goes unwatched."""
        doomed = _holder(leases)
        assert doomed in alive, f"the lease is held by {doomed!r}, not by a live replica"
        alive.pop(doomed).kill()
        killed_at = time.monotonic()
        eventually(
            lambda: _holder(leases) in alive, timeout=TAKEOVER_WITHIN + 10, description="another replica takes over"
        )
        takeovers.append(time.monotonic() - killed_at)

    try:
        for n in range(INCIDENTS):
            _set_image(apps, n, MISSING)
            time.sleep(chaos.uniform(0, 0.3))
            if n == kill_while_breaking:
                kill_the_holder()
        eventually(lambda: len(_card_posts(fake_slack)) == INCIDENTS, timeout=60, description="a card per incident")
        for n in range(INCIDENTS):
            _set_image(apps, n, FIXED)  # a fixed version rolls out: each incident is superseded
            time.sleep(chaos.uniform(0, 0.3))
            if n == kill_while_fixing:
                kill_the_holder()
        eventually(
            lambda: set(_card_states(fake_slack).values()) == {"resolved"}, timeout=60, description="all resolved"
        )
    except (AssertionError, TimeoutError) as exc:
        troubles = [line for replica in replicas.values() for line in replica.troubles()]
        raise AssertionError(f"{exc}; the replicas said: {troubles[:20]}") from None

    posts = _card_posts(fake_slack)
    assert sorted(posts) == sorted(f"svc-{n}" for n in range(INCIDENTS))
    assert {name: len(cards) for name, cards in posts.items() if len(cards) != 1} == {}, "one card per incident"
    resolutions = {
        (m.metadata or {})["event_payload"]["resolution"]
        for channel in CHANNELS
        for m in fake_slack.messages(channel)
        if (m.metadata or {}).get("event_type") == "rollbot_incident"
    }
    assert resolutions == {"superseded"}
    assert len(takeovers) == 2
    assert max(takeovers) <= TAKEOVER_WITHIN, f"takeovers took {takeovers} s"
