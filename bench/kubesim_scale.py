"""kubesim scale benchmark (not a test): prints one JSON document.

1. Starts `python -m sandbox.kubesim` in a subprocess (so client and server do not share a GIL).
2. Creates N one-replica Deployments across M namespaces through the HTTP API with a few client threads
   and measures the time until every Deployment is complete (observedGeneration current, 1 updated and
   available replica), as seen through an all-namespaces watch.
3. With all objects present, PATCHes a Deployment annotation and times PATCH -> matching MODIFIED watch
   event, repeatedly, for p50/p99.
4. Reports the server's peak RSS (VmHWM).

Targets: all-ready <= 120 s for 10,000 Deployments / 500 namespaces on 2 cores, p99 <= 100 ms, <= 1.5 GB.

    .venv/bin/python bench/kubesim_scale.py [--deployments 10000] [--namespaces 500]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import queue
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from sandbox.kubesim.cluster import TOKEN

REPO = Path(__file__).resolve().parents[1]
HEADERS = {"Authorization": f"Bearer {TOKEN}", "Accept": "application/json", "Content-Type": "application/json"}


def start_server(pod_ready_seconds: float, workdir: Path) -> tuple[subprocess.Popen[str], str]:
    cmd = [
        sys.executable,
        "-m",
        "sandbox.kubesim",
        "--port",
        "0",
        "--kubeconfig",
        str(workdir / "kubeconfig"),
        "--pod-ready-seconds",
        str(pod_ready_seconds),
    ]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("kubesim serving "):
        proc.kill()
        raise RuntimeError(f"kubesim did not start: {line!r}")
    return proc, line.split()[2]


class Client:
    """One keep-alive HTTP connection."""

    def __init__(self, url: str) -> None:
        parsed = urlparse(url)
        self.host, self.port = parsed.hostname or "127.0.0.1", parsed.port or 80
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=120)

    def request(self, method: str, path: str, body: Any = None, content_type: str = "application/json") -> Any:
        headers = dict(HEADERS)
        headers["Content-Type"] = content_type
        data = json.dumps(body).encode() if body is not None else None
        for attempt in range(3):
            try:
                self.conn.request(method, path, body=data, headers=headers)
                resp = self.conn.getresponse()
                payload = resp.read()
                if resp.status >= 400 and resp.status != 409:
                    raise RuntimeError(f"{method} {path} -> {resp.status}: {payload[:300]!r}")
                return json.loads(payload) if payload else None
            except (ConnectionError, http.client.HTTPException):
                if attempt == 2:
                    raise
                self.conn.close()
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=120)
        return None


class Watcher(threading.Thread):
    """Streams an all-namespaces Deployment watch; tracks completed rollouts and annotation echoes."""

    def __init__(self, url: str, expected: int) -> None:
        super().__init__(daemon=True)
        parsed = urlparse(url)
        self.conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=600)
        self.expected = expected
        self.ready: set[str] = set()
        self.all_ready = threading.Event()
        self.echoes: queue.SimpleQueue[tuple[str, str, float]] = queue.SimpleQueue()
        self.started = threading.Event()

    def run(self) -> None:
        path = "/apis/apps/v1/deployments?watch=true&timeoutSeconds=3600"
        self.conn.request("GET", path, headers={k: v for k, v in HEADERS.items() if k != "Content-Type"})
        resp = self.conn.getresponse()
        self.started.set()
        while True:
            line = resp.readline()
            if not line:
                return
            now = time.perf_counter()
            event = json.loads(line)
            obj = event.get("object") or {}
            meta = obj.get("metadata") or {}
            key = f"{meta.get('namespace')}/{meta.get('name')}"
            mark = (meta.get("annotations") or {}).get("bench/mark")
            if mark:
                self.echoes.put((key, mark, now))
            status = obj.get("status") or {}
            if (
                status.get("observedGeneration", 0) >= meta.get("generation", 1)
                and status.get("updatedReplicas", 0) >= 1
                and status.get("availableReplicas", 0) >= 1
                and key not in self.ready
            ):
                self.ready.add(key)
                if len(self.ready) >= self.expected:
                    self.all_ready.set()


def deployment(name: str, namespace: str) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]},
            },
        },
    }


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deployments", type=int, default=10_000)
    parser.add_argument("--namespaces", type=int, default=500)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--pod-ready-seconds", type=float, default=1.0)
    parser.add_argument("--latency-samples", type=int, default=300)
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="kubesim-bench-"))
    proc, url = start_server(args.pod_ready_seconds, workdir)
    result: dict[str, Any] = {
        "deployments": args.deployments,
        "namespaces": args.namespaces,
        "client_threads": args.threads,
        "pod_ready_seconds": args.pod_ready_seconds,
        "cpus": os.cpu_count(),
    }
    try:
        setup = Client(url)
        for i in range(args.namespaces):
            setup.request("POST", "/api/v1/namespaces", {"metadata": {"name": f"bench-{i}"}})

        watcher = Watcher(url, args.deployments)
        watcher.start()
        watcher.started.wait(30)

        work: queue.SimpleQueue[tuple[str, str] | None] = queue.SimpleQueue()
        for i in range(args.deployments):
            work.put((f"bench-{i % args.namespaces}", f"app-{i}"))

        def creator() -> None:
            client = Client(url)
            while True:
                item = work.get()
                if item is None:
                    return
                ns, name = item
                client.request("POST", f"/apis/apps/v1/namespaces/{ns}/deployments", deployment(name, ns))

        start = time.perf_counter()
        threads = [threading.Thread(target=creator, daemon=True) for _ in range(args.threads)]
        for _ in threads:
            work.put(None)
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        created = time.perf_counter() - start
        finished = watcher.all_ready.wait(args.timeout)
        all_ready = time.perf_counter() - start
        result.update(
            {
                "create_seconds": round(created, 2),
                "all_ready_seconds": round(all_ready, 2) if finished else None,
                "ready_deployments": len(watcher.ready),
            }
        )

        # Watch latency with everything present: PATCH an annotation, wait for our watch to echo it.
        latencies: list[float] = []
        rng = random.Random(7)
        for sample in range(args.latency_samples):
            i = rng.randrange(args.deployments)
            ns, name = f"bench-{i % args.namespaces}", f"app-{i}"
            mark = f"m{sample}"
            sent = time.perf_counter()
            setup.request(
                "PATCH",
                f"/apis/apps/v1/namespaces/{ns}/deployments/{name}",
                {"metadata": {"annotations": {"bench/mark": mark}}},
                content_type="application/merge-patch+json",
            )
            while True:
                key, seen_mark, at = watcher.echoes.get(timeout=30)
                if key == f"{ns}/{name}" and seen_mark == mark:
                    latencies.append((at - sent) * 1000)
                    break
        latencies.sort()
        result["watch_latency_ms"] = {
            "samples": len(latencies),
            "p50": round(statistics.median(latencies), 2),
            "p99": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 2),
            "max": round(latencies[-1], 2),
        }
        # Counted after the latency samples: listing 10,000 pods allocates heavily and the garbage
        # collection it triggers would otherwise land in the measurement.
        pods = setup.request("GET", "/api/v1/pods")
        replicasets = setup.request("GET", "/apis/apps/v1/replicasets")
        result["objects_present"] = {
            "deployments": args.deployments,
            "replicasets": len(replicasets["items"]),
            "pods": len(pods["items"]),
            "resource_version": int(pods["metadata"]["resourceVersion"]),
        }
        result["server_peak_rss_mb"] = round(peak_rss_mb(proc.pid), 1)
        result["targets_met"] = {
            "all_ready_le_120s": bool(finished and all_ready <= 120),
            "p99_le_100ms": result["watch_latency_ms"]["p99"] <= 100,
            "rss_le_1536mb": result["server_peak_rss_mb"] <= 1536,
        }
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
