"""Failure detection at scale (not a test): prints one JSON document on stdout.

1. Starts kubesim in a subprocess (registry: `*:missing` cannot be pulled) and fills it through the HTTP API:
   N one-replica Deployments in M namespaces plus DaemonSets and StatefulSets (`bench/kubesim_scale.py`'s way).
2. Starts the real bot (`python -m bot`, production wiring, real watchers) as a subprocess against that kubesim,
   a private redis-server and the fake Slack, with a catalog whose `watch` scope covers every namespace.
   Cold sync = bot start → the last "workloads judged" log line of the three kinds (every listed object has been
   judged by the incident flow, not merely received).
3. Injects F failures: Deployments switched to a missing image with `progressDeadlineSeconds: 3`
   (`failing_for` is 10m, so only the deadline rule can open them). The moment the rule became true is when
   this script's own all-namespaces watch first sees `Progressing=False/ProgressDeadlineExceeded` (also
   reported: from the condition's `lastTransitionTime`, which has one-second resolution). Detection latency is
   that moment → the card's `chat.postMessage` as recorded by the fake Slack; F > 5 failures in one channel are a
   mass failure (ADR 0019), so most workloads show on its summary card instead: their latency is to the first
   summary write listing them (edits come at most every 10 s), reported apart. In the same run, `kubectl
   rollout status` is started for each failure at injection; its time to exit with the deadline error is
   reported too.
4. Reports the bot's peak RSS (VmHWM) and the cards posted for workloads that were never broken (must be 0).

What bounds the card latency: every card goes to one detect channel, and the bot keeps to Slack's pace for
`chat.postMessage` there (1 a second, a burst of 3; ADR 0012), times `--slack-budget-scale` (default 1: Slack's
real pace). F failures that turn true within seconds of each other therefore cannot all be posted within 2 s:
the k-th card waits about (k - 3) s for its turn whatever the detection does. So the bench also reports the
decision latency (the moment the rule became true → the incident stored in Redis, which is what detection
controls) and the floor Slack's pace sets under the card latency. `--slack-budget-scale 60` (the fake enforces
no limit) shows the card latency when Slack's pace is not the bound. With the mass-failure summary (more than 5
in one channel), only the first five post cards of their own, so Slack's pace binds far less.

Targets: sync <= 60 s, bot RSS <= 250 MB, p99 <= 2 s to an own card (a summary's later members show within the
10 s edit limit), zero cards for healthy workloads.

    .venv/bin/python bench/detect_scale.py [--deployments 10000] [--namespaces 500] [--others 200] [--failures 50]
        [--slack-budget-scale 1]
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import redis as redis_client
import yaml
from redis import Redis

from bench.kubesim_scale import HEADERS, Client, deployment, peak_rss_mb
from bot.adapters.redis_incidents import RedisIncidentStore
from bot.adapters.slack_outbox import POST_BURST, POSTS_PER_SECOND
from bot.core.incidents import IncidentId
from sandbox.redis_server import RedisServer
from sandbox.slack.seed import ALICE, BOB, BOT_TOKEN, INCIDENT, SIGNING_SECRET
from sandbox.slack.server import FakeSlack

REPO = Path(__file__).resolve().parents[1]
KUBECTL = REPO / ".venv" / "bin" / "kubectl"
MISSING_IMAGE = "registry.example/app:missing"
DEADLINE_SECONDS = 3


def start_kubesim(workdir: Path) -> tuple[subprocess.Popen[str], str]:
    registry = workdir / "registry.yaml"
    registry.write_text(yaml.safe_dump({"missing": ["*:missing"]}), encoding="utf-8")
    cmd = [sys.executable, "-m", "sandbox.kubesim", "--port", "0", "--kubeconfig", str(workdir / "kubeconfig")]
    cmd += ["--pod-ready-seconds", "0.5", "--registry", str(registry), "--nodes", "3"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("kubesim serving "):
        proc.kill()
        raise RuntimeError(f"kubesim did not start: {line!r}")
    return proc, line.split()[2]


def workload(kind: str, name: str, namespace: str) -> dict[str, Any]:
    labels = {"app": name}
    spec: dict[str, Any] = {
        "selector": {"matchLabels": labels},
        "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}},
    }
    if kind == "StatefulSet":
        spec |= {"replicas": 1, "serviceName": name}
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name, "namespace": namespace}, "spec": spec}


class DeadlineWatch(threading.Thread):
    """This script's own all-namespaces Deployment watch: when each one first shows ProgressDeadlineExceeded."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.seen: dict[str, tuple[float, str]] = {}  # ns/name -> (wall time seen, lastTransitionTime)
        self.started = threading.Event()

    def run(self) -> None:
        import http.client
        from urllib.parse import urlparse

        parsed = urlparse(self.url)
        conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=3600)
        path = "/apis/apps/v1/deployments?watch=true&timeoutSeconds=3600"
        conn.request("GET", path, headers={k: v for k, v in HEADERS.items() if k != "Content-Type"})
        response = conn.getresponse()
        self.started.set()
        while line := response.readline():
            now = time.time()
            obj = json.loads(line).get("object") or {}
            meta = obj.get("metadata") or {}
            key = f"{meta.get('namespace')}/{meta.get('name')}"
            for cond in (obj.get("status") or {}).get("conditions") or []:
                if cond.get("reason") == "ProgressDeadlineExceeded" and key not in self.seen:
                    self.seen[key] = (now, cond.get("lastTransitionTime", ""))


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * fraction))], 3)


def figures(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"samples": 0}
    return {
        "samples": len(values),
        "p50": round(statistics.median(values), 3),
        "p99": percentile(values, 0.99),
        "max": round(max(values), 3),
    }


def follow(proc: subprocess.Popen[str], sink: queue.SimpleQueue[tuple[float, dict[str, Any]]], copy: Path) -> None:
    """The bot's JSON log lines, parsed for this script, and copied whole to `copy` for a human to read."""
    assert proc.stdout is not None
    with copy.open("w", encoding="utf-8") as log_file:
        for line in proc.stdout:
            log_file.write(line)
            log_file.flush()
            _parsed(line, sink)


def _parsed(line: str, sink: queue.SimpleQueue[tuple[float, dict[str, Any]]]) -> None:
    try:
        record = json.loads(line)
    except ValueError:
        return
    if isinstance(record, dict):
        sink.put((time.time(), record))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deployments", type=int, default=10_000)
    parser.add_argument("--namespaces", type=int, default=500)
    parser.add_argument("--others", type=int, default=200, help="DaemonSets + StatefulSets (half each)")
    parser.add_argument("--failures", type=int, default=50)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--wait", type=float, default=300, help="how long to wait for the cards after injecting")
    parser.add_argument(
        "--slack-budget-scale",
        type=float,
        default=1.0,
        help="ROLLBOT_SLACK_BUDGET_SCALE for the bot: 1 keeps to Slack's real pace of posts per channel",
    )
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="detect-bench-"))
    result: dict[str, Any] = {
        "deployments": args.deployments,
        "namespaces": args.namespaces,
        "daemonsets_statefulsets": args.others,
        "failures": args.failures,
        "cpus": os.cpu_count(),
    }
    sim, url = start_kubesim(workdir)
    redis = RedisServer().start()
    fake = FakeSlack().start()
    bot: subprocess.Popen[str] | None = None
    try:
        setup = Client(url)
        for i in range(args.namespaces):
            setup.request("POST", "/api/v1/namespaces", {"metadata": {"name": f"bench-{i}"}})
        work: queue.SimpleQueue[tuple[str, dict[str, Any]] | None] = queue.SimpleQueue()
        for i in range(args.deployments):
            ns = f"bench-{i % args.namespaces}"
            work.put((f"/apis/apps/v1/namespaces/{ns}/deployments", deployment(f"app-{i}", ns)))
        for i in range(args.others):
            kind, plural = ("DaemonSet", "daemonsets") if i % 2 == 0 else ("StatefulSet", "statefulsets")
            ns = f"bench-{i % args.namespaces}"
            work.put((f"/apis/apps/v1/namespaces/{ns}/{plural}", workload(kind, f"other-{i}", ns)))

        def creator() -> None:
            client = Client(url)
            while (item := work.get()) is not None:
                client.request("POST", *item)

        started = time.perf_counter()
        creators = [threading.Thread(target=creator, daemon=True) for _ in range(args.threads)]
        for thread in creators:
            work.put(None)
            thread.start()
        for thread in creators:
            thread.join()
        result["create_seconds"] = round(time.perf_counter() - started, 1)
        print(f"created in {result['create_seconds']} s", file=sys.stderr)
        time.sleep(5)  # let the first pods settle before the bot lists

        catalog = {
            "defaults": {
                "approvals": {"required": 1, "approvers": [ALICE, BOB]},
                "kubernetes": {"kube_context": "sandbox"},
                "detect": {"channel": INCIDENT, "failing_for": "10m", "healthy_for": "2m", "stall_after": "10m"},
            },
            "targets": {},
            "watch": [{"backend": "kubernetes", "kube_context": "sandbox", "namespaces": ["*"]}],
        }
        catalog_path = workdir / "catalog.yaml"
        catalog_path.write_text(yaml.safe_dump(catalog), encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "ROLLBOT_", "REDIS_", "HTTP"))}
        env |= {
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": fake.api_url,
            "REDIS_URL": redis.url(0),
            "ROLLBOT_CONFIG": str(catalog_path),
            "ROLLBOT_PORT": "0",
            "KUBECONFIG": str(workdir / "kubeconfig"),
            "ROLLBOT_LOG_LEVEL": "INFO",
            "ROLLBOT_SLACK_BUDGET_SCALE": str(args.slack_budget_scale),
            "PYTHONPATH": str(REPO),
        }
        logs: queue.SimpleQueue[tuple[float, dict[str, Any]]] = queue.SimpleQueue()
        bot_started = time.time()
        bot = subprocess.Popen(
            [sys.executable, "-m", "bot"],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=follow, args=(bot, logs, workdir / "bot.log"), daemon=True).start()
        listed: dict[str, float] = {}
        judged: dict[str, float] = {}
        kept: list[tuple[float, dict[str, Any]]] = []  # for the warnings reported at the end
        deadline = time.time() + args.timeout
        while len(judged) < 3 and time.time() < deadline:
            try:
                at, record = logs.get(timeout=5)
            except queue.Empty:
                continue
            kept.append((at, record))
            if record.get("namespace") not in (None, "*"):
                continue
            if record.get("event") == "workloads listed":
                listed.setdefault(str(record.get("kind")), at)
            elif record.get("event") == "workloads judged":
                judged.setdefault(str(record.get("kind")), at)
        print(f"listed: {listed}, judged: {judged}", file=sys.stderr)
        for item in kept:
            logs.put(item)
        result["listed_seconds"] = round(max(listed.values()) - bot_started, 2) if len(listed) == 3 else None
        result["cold_sync_seconds"] = round(max(judged.values()) - bot_started, 2) if len(judged) == 3 else None
        result["bot_rss_after_sync_mb"] = round(peak_rss_mb(bot.pid), 1)

        watch = DeadlineWatch(url)
        watch.start()
        watch.started.wait(30)
        broken = [f"bench-{(i * 7) % args.namespaces}/app-{(i * 7) % args.deployments}" for i in range(args.failures)]
        broken = list(dict.fromkeys(broken))
        injected: dict[str, float] = {}
        kubectl_seconds: dict[str, float] = {}
        kubectl_env = {"PATH": os.environ.get("PATH", ""), "KUBECONFIG": str(workdir / "kubeconfig")}
        kubectl_env["HOME"] = str(workdir)

        def rollout_status(key: str) -> None:
            ns, name = key.split("/")
            cmd = [str(KUBECTL), "rollout", "status", f"deployment/{name}", "-n", ns, "--timeout=120s"]
            proc = subprocess.run(cmd, env=kubectl_env, capture_output=True, text=True, check=False)
            if "exceeded its progress deadline" in proc.stderr + proc.stdout:
                kubectl_seconds[key] = time.time() - injected[key]

        pool = ThreadPoolExecutor(max_workers=min(16, len(broken)))
        for key in broken:
            ns, name = key.split("/")
            patch = {
                "spec": {
                    "progressDeadlineSeconds": DEADLINE_SECONDS,
                    "template": {"spec": {"containers": [{"name": "app", "image": MISSING_IMAGE}]}},
                }
            }
            injected[key] = time.time()
            setup.request(
                "PATCH",
                f"/apis/apps/v1/namespaces/{ns}/deployments/{name}",
                patch,
                content_type="application/strategic-merge-patch+json",
            )
            pool.submit(rollout_status, key)

        incidents = RedisIncidentStore(redis_client.Redis.from_url(redis.url(0)))
        workload_of: dict[str, str] = {}

        def summary_times() -> dict[str, float]:
            """When each workload first showed on a mass failure's summary card (its post, or an edit)."""
            found: dict[str, float] = {}
            writes = sorted(fake.calls("chat.postMessage") + fake.calls("chat.update"), key=lambda call: call.t)
            for call in writes:
                metadata = call.args.get("metadata") or {}
                if isinstance(metadata, str):
                    metadata = json.loads(metadata)
                if metadata.get("event_type") != "rollbot_incident_group":
                    continue
                for incident_id in metadata["event_payload"]["incident_ids"]:
                    if incident_id not in workload_of:
                        incident = incidents.get(IncidentId(incident_id))
                        if incident is None:
                            continue
                        workload_of[incident_id] = f"{incident.workload.namespace}/{incident.workload.name}"
                    found.setdefault(workload_of[incident_id], call.t)
            return found

        def card_times() -> dict[str, float]:
            found: dict[str, float] = {}
            for call in fake.calls("chat.postMessage"):
                metadata = call.args.get("metadata") or {}
                if metadata.get("event_type") == "rollbot_incident":
                    payload = metadata["event_payload"]
                    found.setdefault(f"{payload['namespace']}/{payload['name']}", call.t)
            return found

        def shown() -> set[str]:
            return set(card_times()) | set(summary_times())

        wait_until = time.time() + args.wait
        while time.time() < wait_until and not set(broken) <= shown():
            time.sleep(0.5)
        time.sleep(5)  # any stray card for a healthy workload would show up by now
        pool.shutdown(wait=True)
        own_cards = card_times()
        on_summary = {key: t for key, t in summary_times().items() if key not in own_cards}
        # A mass failure (ADR 0019) shows most workloads on one summary card: shown = own card or summary.
        cards = {**on_summary, **own_cards}
        result["own_cards"] = len(set(broken) & set(own_cards))
        result["on_summary_only"] = len(set(broken) & set(on_summary))
        result["summary_cards"] = len(
            [
                c
                for c in fake.calls("chat.postMessage")
                if (c.args.get("metadata") or {}).get("event_type") == "rollbot_incident_group"
            ]
        )
        result["own_card_latency_s"] = figures(
            [own_cards[k] - watch.seen[k][0] for k in broken if k in own_cards and k in watch.seen]
        )
        result["summary_latency_s"] = figures(
            [on_summary[k] - watch.seen[k][0] for k in broken if k in on_summary and k in watch.seen]
        )
        from_watch = [cards[k] - watch.seen[k][0] for k in broken if k in cards and k in watch.seen]
        from_condition = [
            cards[k] - datetime.fromisoformat(watch.seen[k][1].replace("Z", "+00:00")).timestamp()
            for k in broken
            if k in cards and k in watch.seen and watch.seen[k][1]
        ]
        result["deadlines_seen_by_own_watch"] = len(set(broken) & set(watch.seen))
        result["cards_for_failures"] = len(set(broken) & set(cards))
        result["injected_failures"] = len(broken)
        result["cards_for_healthy_workloads"] = len(set(cards) - set(broken))
        opened = {
            f"{incident.workload.namespace}/{incident.workload.name}": incident.opened_at.timestamp()
            for incident in RedisIncidentStore(Redis.from_url(redis.url(0))).live()
        }
        decided = [opened[k] - watch.seen[k][0] for k in broken if k in opened and k in watch.seen]
        rate = POSTS_PER_SECOND * args.slack_budget_scale
        # Only own cards are posted one per failure; the summary's members arrive with its edits.
        posted_in_order = sorted(own_cards[k] for k in broken if k in own_cards)
        result["slack_budget"] = {
            "posts_per_second_per_channel": rate,
            "burst": POST_BURST,
            "channels": 1,
            # The k-th card of a burst of failures cannot be posted before (k - burst) / rate s after the first.
            "floor_for_the_last_card_s": round(max(0.0, (len(posted_in_order) - POST_BURST) / rate), 1),
            "posting_took_s": round(posted_in_order[-1] - posted_in_order[0], 1) if posted_in_order else None,
        }
        result["decision_latency_s"] = figures(decided)
        result["detection_latency_s"] = figures(from_watch)
        result["detection_latency_from_last_transition_time_s"] = figures(from_condition)
        result["kubectl_rollout_status_s"] = figures(list(kubectl_seconds.values()))
        result["bot_peak_rss_mb"] = round(peak_rss_mb(bot.pid), 1)
        # What the bot itself said went wrong (the figures above mean little if it was busy failing).
        troubles: list[str] = []
        while not logs.empty():
            _, record = logs.get()
            if record.get("level") in ("warning", "error", "critical"):
                troubles.append(f"{record.get('level')}: {record.get('event')} {record.get('exception', '')[-300:]}")
        result["bot_warnings_and_errors"] = {"count": len(troubles), "first": troubles[:5]}
        result["kubesim_peak_rss_mb"] = round(peak_rss_mb(sim.pid), 1)
        print(f"the bot's log: {workdir / 'bot.log'}", file=sys.stderr)
        result["targets"] = {
            "cold_sync_s": 60,
            "bot_rss_mb": 250,
            "own_card_p99_s": 2,
            "cards_for_healthy_workloads": 0,
        }
    finally:
        if bot is not None:
            bot.terminate()
            try:
                bot.wait(20)
            except subprocess.TimeoutExpired:
                bot.kill()
        fake.stop()
        redis.stop()
        sim.terminate()
        sim.wait(20)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
