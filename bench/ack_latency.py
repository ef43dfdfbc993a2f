"""Slash-command ack latency with 50 concurrent signed requests: a bare Bolt app vs. the real rollbot, one run.

Both are served by the same server (bot/adapters/http_server.py, waitress) on 127.0.0.1:0 and receive the same
load from the fake Slack's driver: rounds of 50 `/rollback …` requests released together by a barrier, each
on its own connection (Slack does not reuse connections to an app). Latency is what Slack would wait for:
from sending the request to reading the whole response.

    (a) bare Bolt  a Bolt `App` with Bolt's defaults and one listener that only calls `ack()`
    (b) rollbot    `bot.app.build_app` wired to the fake Slack and a private redis-server, with the in-memory
                   backend; `/rollback svc-N 1` for 50 distinct targets, so each command really opens an
                   operation (plan, Redis lock, request message) while the others are being acked

Prints one JSON object. Usage: `python bench/ack_latency.py [--rounds 5] [--concurrency 50]`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import yaml
from slack_bolt import Ack, App
from slack_sdk import WebClient

from bot.adapters.http_server import DEFAULT_THREADS, serve
from bot.logging import configure_logging
from sandbox.slack import FakeSlack, SlackDriver, seed

SLACK_DEADLINE_SECONDS = 3.0


def percentile(samples: list[float], fraction: float) -> float:
    """Nearest-rank percentile (p99 of 250 samples is the 248th smallest)."""
    ordered = sorted(samples)
    rank = max(1, min(len(ordered), round(fraction * len(ordered) + 0.5)))
    return ordered[rank - 1]


def summarize(latencies: list[float], statuses: list[int]) -> dict[str, Any]:
    return {
        "requests": len(latencies),
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 1),
        "p90_ms": round(percentile(latencies, 0.90) * 1000, 1),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 1),
        "max_ms": round(max(latencies) * 1000, 1),
        "mean_ms": round(statistics.fmean(latencies) * 1000, 1),
        "non_200": sum(1 for status in statuses if status != 200),
        "over_3s": sum(1 for latency in latencies if latency > SLACK_DEADLINE_SECONDS),
    }


def hammer(
    events_url: str, fake: FakeSlack, texts: Callable[[int], str], *, concurrency: int, rounds: int
) -> dict[str, Any]:
    """`rounds` × `concurrency` simultaneous slash commands; returns the latency summary."""
    latencies: list[float] = []
    statuses: list[int] = []
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for round_number in range(rounds):
            barrier = threading.Barrier(concurrency)

            def one(index: int, round_number: int = round_number, barrier: threading.Barrier = barrier) -> Any:
                with SlackDriver(events_url, seed.SIGNING_SECRET, fake, reflect_acks=False) as driver:
                    barrier.wait()
                    return driver.slash_command(
                        texts(round_number * concurrency + index), user=seed.ALICE, channel=seed.OPS
                    )

            for ack in pool.map(one, range(concurrency)):
                latencies.append(ack.latency)
                statuses.append(ack.status)
    return summarize(latencies, statuses)


def warm_up(events_url: str, fake: FakeSlack, text: str) -> None:
    with SlackDriver(events_url, seed.SIGNING_SECRET, fake, reflect_acks=False) as driver:
        for _ in range(5):
            driver.slash_command(text, user=seed.ALICE, channel=seed.OPS)


def bare_bolt(fake: FakeSlack, *, concurrency: int, rounds: int) -> dict[str, Any]:
    app = App(client=WebClient(token=seed.BOT_TOKEN, base_url=fake.api_url), signing_secret=seed.SIGNING_SECRET)

    @app.command("/rollback")
    def on_rollback(ack: Ack) -> None:
        ack()

    with serve(app, host="127.0.0.1", port=0) as server:
        url = server.url + "/slack/events"
        warm_up(url, fake, "workshop 1")
        return hammer(url, fake, lambda n: "workshop 1", concurrency=concurrency, rounds=rounds)


@contextmanager
def private_redis() -> Iterator[str]:
    from sandbox.redis_server import RedisServer

    server = RedisServer().start()
    try:
        yield server.url(0)
    finally:
        server.stop()


def rollbot(fake: FakeSlack, *, concurrency: int, rounds: int) -> dict[str, Any]:
    from bot.app import build_app
    from bot.core.catalog import BackendKind, parse_catalog
    from bot.settings import Settings
    from tests.fakes.memory_backend import MemoryBackend

    targets = concurrency * rounds + 5
    catalog_data: dict[str, Any] = {
        "defaults": {"approvals": {"required": 1, "approvers": [seed.BOB, seed.CAROL]}},
        "targets": {
            f"svc-{n}": {"backend": "kubernetes", "kind": "Deployment", "name": f"svc-{n}", "namespace": "bench"}
            for n in range(targets)
        },
    }
    catalog = parse_catalog(catalog_data)
    backend = MemoryBackend()
    for name in catalog.names:
        target = catalog.get(name)
        assert target is not None
        backend.arrange(target, revisions=2)
    with private_redis() as redis_url, tempfile.TemporaryDirectory(prefix="rollbot-bench-") as tmp:
        catalog_path = Path(tmp) / "catalog.yaml"
        catalog_path.write_text(yaml.safe_dump(catalog_data), encoding="utf-8")
        settings = Settings(
            slack_bot_token=seed.BOT_TOKEN,
            slack_signing_secret=seed.SIGNING_SECRET,
            slack_app_token=None,
            slack_api_url=fake.api_url,
            redis_url=redis_url,
            config_path=catalog_path,
            host="127.0.0.1",
            port=0,
        )
        bot = build_app(settings, backends={kind: backend for kind in BackendKind}, catalog=catalog)
        with bot:
            warm_up(bot.events_url, fake, "help")
            # Distinct targets: every command opens its own operation instead of hitting a target lock.
            offset = 5
            result = hammer(
                bot.events_url, fake, lambda n: f"svc-{n + offset} 1", concurrency=concurrency, rounds=rounds
            )
            posted = fake.wait_for(
                lambda: len(fake.calls("chat.postMessage")) >= concurrency * rounds or None,
                timeout=60,
                description="every request message posted",
            )
            result["request_messages_posted"] = len(fake.calls("chat.postMessage")) if posted else 0
            # Let the request work finish (linking messages in Redis) before the store closes.
            bot.request_executor.shutdown(wait=True)
            return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "SLACK_APP_TOKEN"):
        os.environ.pop(name, None)
    # stdout carries only the JSON report.
    configure_logging("WARNING", stream=sys.stderr)
    started = time.perf_counter()
    with FakeSlack() as fake:
        bare = bare_bolt(fake, concurrency=args.concurrency, rounds=args.rounds)
        fake.reset()
        real = rollbot(fake, concurrency=args.concurrency, rounds=args.rounds)
    report = {
        "benchmark": "slash-command ack latency",
        "concurrency": args.concurrency,
        "rounds": args.rounds,
        "server": f"waitress via bot.adapters.http_server.serve ({DEFAULT_THREADS} threads)",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "bare_bolt": bare,
        "rollbot": real,
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(report, indent=2))
    return 0 if bare["non_200"] == 0 and real["non_200"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
