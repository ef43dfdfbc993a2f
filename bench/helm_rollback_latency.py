"""How long does `/rollback workshop 1` take from the approval to the final thread message, next to plain helm?

Seed 000 on a fresh kubesim each time: `helm create workshop`, `helm install --wait`, then
`helm upgrade --set image.tag=non-existing` (the new pod never pulls). Then, alternately in the same run:

- rollbot: the real bot (`build_app`, real Helm backend, the same helm binary) behind its signed HTTP endpoint,
  the fake Slack and a real redis-server; `/rollback workshop 1` by alice, then the clock starts when bob's ✅
  is sent and stops when the fake Slack records the final thread message (`✅ rolled back to revision 1 …`).
  Bob reacts `--approve-after` seconds (2) after the request message appears, as a person reading it does:
  the bot paces its posts at Slack's 1 per second per channel (burst 3), and an approval sent within
  milliseconds of the request message would time that pacing (the request, "approved", "rolling back" and
  the final line back to back), not the rollback.
  Milestones on the way: the "rolling back" thread line, and the request message reaching phase `succeeded`.
- helm: `helm rollback workshop 1 --wait=watcher --timeout 60s --history-max 10` (the bot's flags), timed
  around the process.

In seed 000 revision 1's pod never stopped (the broken upgrade's pod just never became ready), so helm has
little to wait for. A second comparison adds a good upgrade (image 1.17.0) before the broken one, so rolling
back to revision 1 must start a new pod and helm waits about `--pod-ready` seconds for it.

    .venv/bin/python bench/helm_rollback_latency.py [--runs 5] [--pod-ready 1.0] [--warmup 1] [--new-pod-runs 3]
                                                    [--approve-after 2.0]

Prints one JSON document on stdout (logs go to stderr).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import structlog
from redis import StrictRedis

from bot.app import build_app
from bot.core.operations import METADATA_EVENT_TYPE
from bot.settings import Settings
from sandbox.redis_server import DATABASES, RedisServer
from sandbox.slack.driver import SlackDriver
from sandbox.slack.records import Change, Message
from sandbox.slack.seed import ALICE, BOB, BOT_TOKEN, INCIDENT, SIGNING_SECRET
from sandbox.slack.server import FakeSlack

REPO = Path(__file__).resolve().parent.parent
HELM = REPO / ".tools" / "bin" / "helm"
HELM_TIMEOUT = "60s"
CATALOG = (
    "defaults:\n"
    f"  approvals: {{required: 1, approvers: [{ALICE}, {BOB}], expires_after: 15m}}\n"
    "targets:\n"
    "  workshop: {backend: helm, release: workshop, namespace: default, kube_context: sandbox}\n"
)


class Scenario:
    """A fresh kubesim with seed 000 arranged by the real helm in its own HOME and caches.

    kubesim runs in a process of its own, as an API server does: in this process it would share the
    interpreter with the bot and the fake Slack, and the bot's Slack traffic would slow helm's API calls.
    """

    def __init__(self, pod_ready: float, *, new_pod: bool = False) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="helm-bench-")
        self.workdir = Path(self._tmp.name)
        self.kubeconfig = self.workdir / "kubeconfig"
        self.sim = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sandbox.kubesim",
                "--kubeconfig",
                str(self.kubeconfig),
                "--pod-ready-seconds",
                str(pod_ready),
            ],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.sim.stdout is not None
        if "kubesim serving" not in self.sim.stdout.readline():
            self.sim.kill()
            raise RuntimeError("kubesim did not start")
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.workdir / "home"),
            "KUBECONFIG": str(self.kubeconfig),
            "HELM_CACHE_HOME": str(self.workdir / "helm-cache"),
            "HELM_CONFIG_HOME": str(self.workdir / "helm-config"),
            "HELM_DATA_HOME": str(self.workdir / "helm-data"),
        }
        self.helm("create", "workshop")
        self.helm("install", "workshop", "./workshop", "--set", "image.tag=1.16.0", "--wait", "--timeout", HELM_TIMEOUT)
        if new_pod:
            # A good upgrade first: revision 1's pods are gone, so rolling back to it must start a new pod.
            self.helm(
                "upgrade", "workshop", "./workshop", "--set", "image.tag=1.17.0", "--wait", "--timeout", HELM_TIMEOUT
            )
        self.helm("upgrade", "workshop", "./workshop", "--set", "image.tag=non-existing")

    def helm(self, *args: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(HELM), *args], env=self.env, cwd=self.workdir, capture_output=True, text=True, timeout=120, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(f"helm {' '.join(args)} exited {result.returncode}: {result.stderr}")
        return result

    def statuses(self) -> list[str]:
        rows = json.loads(self.helm("history", "workshop", "-o", "json").stdout)
        return [f"{row['revision']} {row['status']} {row['description']}" for row in rows]

    def close(self) -> None:
        self.sim.terminate()
        self.sim.wait(timeout=30)
        self._tmp.cleanup()


def plain_helm_run(pod_ready: float, new_pod: bool) -> dict[str, Any]:
    scenario = Scenario(pod_ready, new_pod=new_pod)
    try:
        started = time.monotonic()
        scenario.helm("rollback", "workshop", "1", "--wait=watcher", "--timeout", HELM_TIMEOUT, "--history-max", "10")
        elapsed = time.monotonic() - started
        return {"wall_s": round(elapsed, 3), "history_after": scenario.statuses()}
    finally:
        scenario.close()


def awaiting_approval(fake: FakeSlack) -> Message | None:
    for message in fake.messages(INCIDENT):
        if (message.metadata or {}).get("event_payload", {}).get("phase") == "awaiting_approval":
            return message
    return None


def rollbot_run(pod_ready: float, new_pod: bool, redis: RedisServer, db: int, approve_after: float) -> dict[str, Any]:
    scenario = Scenario(pod_ready, new_pod=new_pod)
    with StrictRedis.from_url(redis.url(db)) as client:
        client.flushdb()
    # The bot's helm subprocess inherits the process environment (HOME and helm's caches).
    os.environ.update({key: value for key, value in scenario.env.items() if key != "PATH"})
    catalog = scenario.workdir / "catalog.yaml"
    catalog.write_text(CATALOG, encoding="utf-8")
    with FakeSlack() as fake:
        settings = Settings(
            slack_bot_token=BOT_TOKEN,
            slack_signing_secret=SIGNING_SECRET,
            slack_api_url=fake.api_url,
            redis_url=redis.url(db),
            config_path=catalog,
            kubeconfig=str(scenario.kubeconfig),
            helm_path=str(HELM),
            host="127.0.0.1",
            port=0,
            rollout_timeout=timedelta(seconds=60),
        )
        bot = build_app(settings).start()
        stamps: dict[str, float] = {}
        done = threading.Event()

        def on_change(change: Change) -> None:
            now = time.monotonic()
            text = change.message.text if change.message is not None else change.text
            if change.kind == "message_posted" and change.thread_ts:
                if "rolling back: revision" in text:
                    stamps.setdefault("rolling_back_line", now)
                if text.startswith("✅ rolled back to revision"):
                    stamps.setdefault("final_thread_message", now)
                    done.set()
            metadata = (change.message.metadata if change.message is not None else None) or {}
            if metadata.get("event_type") == METADATA_EVENT_TYPE and metadata["event_payload"]["phase"] == "succeeded":
                stamps.setdefault("phase_succeeded", now)

        unsubscribe = fake.subscribe(on_change)
        try:
            with SlackDriver(bot.events_url, SIGNING_SECRET, fake) as slack:
                slack.slash_command("workshop 1", user=ALICE, channel=INCIDENT)
                request = fake.wait_for(lambda: awaiting_approval(fake), 30, description="the request")
                assert request is not None
                time.sleep(approve_after)
                started = time.monotonic()
                slack.reaction_added(BOB, "white_check_mark", INCIDENT, request.ts)
                if not done.wait(90):
                    raise RuntimeError("no final thread message within 90 s")
                final = fake.messages(INCIDENT, thread_ts=request.ts)[-1].text
        finally:
            unsubscribe()
            bot.stop()
    try:
        return {
            "wall_s": round(stamps["final_thread_message"] - started, 3),
            "approval_to_rolling_back_line_s": round(stamps["rolling_back_line"] - started, 3),
            "approval_to_phase_succeeded_s": round(stamps["phase_succeeded"] - started, 3)
            if "phase_succeeded" in stamps
            else None,
            "final_message": final,
            "history_after": scenario.statuses(),
        }
    finally:
        scenario.close()


def compare(
    pod_ready: float, new_pod: bool, runs: int, warmups: int, redis: RedisServer, approve_after: float
) -> dict[str, Any]:
    rollbot: list[dict[str, Any]] = []
    helm: list[dict[str, Any]] = []
    warmup: list[dict[str, Any]] = []
    for index in range(warmups):
        warmup.append(
            {
                "rollbot_wall_s": rollbot_run(pod_ready, new_pod, redis, index % DATABASES, approve_after)["wall_s"],
                "plain_helm_wall_s": plain_helm_run(pod_ready, new_pod)["wall_s"],
            }
        )
    for index in range(warmups, warmups + runs):
        # Alternate which goes first so that neither always runs on a machine warmed by the other.
        if index % 2 == 0:
            rollbot.append(rollbot_run(pod_ready, new_pod, redis, index % DATABASES, approve_after))
            helm.append(plain_helm_run(pod_ready, new_pod))
        else:
            helm.append(plain_helm_run(pod_ready, new_pod))
            rollbot.append(rollbot_run(pod_ready, new_pod, redis, index % DATABASES, approve_after))
    rollbot_median = statistics.median(run["wall_s"] for run in rollbot)
    helm_median = statistics.median(run["wall_s"] for run in helm)
    return {
        "rollbot_to_helm_ratio": round(rollbot_median / helm_median, 2),
        "runs": runs,
        "rollbot_median_s": rollbot_median,
        "plain_helm_median_s": helm_median,
        "rollbot_overhead_median_s": round(rollbot_median - helm_median, 3),
        **({"warmup_not_counted": warmup} if warmups else {}),
        "rollbot": rollbot,
        "plain_helm": helm,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--pod-ready", type=float, default=1.0, help="kubesim's seconds for a pod to become Ready")
    parser.add_argument("--new-pod-runs", type=int, default=3, help="runs of the variant that waits for a new pod")
    parser.add_argument(
        "--approve-after", type=float, default=2.0, help="seconds bob takes to react once the request is posted"
    )
    parser.add_argument(
        "--warmup", type=int, default=1, help="pairs run first and reported apart (a cold process pays imports)"
    )
    args = parser.parse_args()
    if not HELM.exists():
        print(f"needs the real helm at {HELM} (run scripts/setup-tools.sh)", file=sys.stderr)
        return 2
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    version = subprocess.run([str(HELM), "version", "--short"], capture_output=True, text=True, check=True).stdout
    redis = RedisServer().start()
    try:
        seed_000 = compare(args.pod_ready, False, args.runs, args.warmup, redis, args.approve_after)
        new_pod = compare(args.pod_ready, True, args.new_pod_runs, 0, redis, args.approve_after)
    finally:
        redis.stop()
    print(
        json.dumps(
            {
                "what": "seed 000: `/rollback workshop 1` from bob's approval to the final thread message, "
                "next to a plain `helm rollback workshop 1 --wait=watcher` on the same scenario",
                "helm_version": version.strip(),
                "pod_ready_seconds": args.pod_ready,
                "approve_after_s": args.approve_after,
                **seed_000,
                "rollback_that_waits_for_a_new_pod": {
                    "what": "the same after a good upgrade in between: helm must wait for a new pod of revision 1",
                    **new_pod,
                },
            },
            indent=2,
            ensure_ascii=False,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
