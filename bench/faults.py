"""The fault campaign: named scenarios that each attack the bot one way and report figures as one JSON document.

    fuzz   100,000 generated command texts and interaction payloads (hypothesis, sandbox/slack/fuzz_requests.py)
           POSTed to a real bot's HTTP endpoint (build_app on 127.0.0.1:0, waitress, a private redis-server, the
           fake Slack, the in-memory backend), from a few threads over keep-alive connections. About a third carry
           a forged signature. Target: 0 crashes (every signed request 200, every forged one 401, no hung request,
           no ERROR log line or logged exception), 0 tracebacks in anything the bot sent to Slack.

    triple_delivery, sigkill, sigstop, redis_restart, sentinel_failover, kube_faults, slack_storm
           the process-level scenarios of `bench/fault_scenarios.py` (three real replicas, real Redis, Sentinel,
           kubesim faults, fake-Slack storms); each passes when nothing was doubled, lost, written stale or left
           untruthful.

Usage: `python bench/faults.py [--scenario NAME]… [--quick] [--seed N] [--requests N] [--threads N]`; no `--scenario`
runs all. `--quick` is the trimmed run the suite runs too (2,000 fuzz requests, a few rounds of the others). Exit
status 1 when a scenario misses its target.

Adding a scenario: write `def name(options) -> dict` returning its figures with `"passed": bool`, and add one line
to `SCENARIOS`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import yaml
from hypothesis import HealthCheck, Phase, given, settings

from bot.logging import configure_logging
from sandbox.slack import FakeSlack, SlackDriver, seed
from sandbox.slack.fuzz_requests import FuzzRequest, FuzzSender, FuzzWorld, fuzz_requests
from sandbox.slack.fuzz_verdict import MALFORMED_EVENT, FuzzTally, LogLines, slack_activity, slack_tracebacks

Options = argparse.Namespace
Scenario = Callable[[Options], dict[str, Any]]

FULL_FUZZ_REQUESTS = 100_000
QUICK_FUZZ_REQUESTS = 2_000
# A genuine Slack request must be acked within 3 s; waiting longer than this means the bot hung on it.
REQUEST_TIMEOUT_SECONDS = 10.0
# Two CPUs run the generator, the senders and the bot: more threads only add contention.
DEFAULT_THREADS = 4

CATALOG: dict[str, Any] = {
    "defaults": {"approvals": {"required": 1, "approvers": [seed.ALICE, seed.BOB, seed.CAROL]}},
    "targets": {
        "workshop": {"backend": "helm", "release": "workshop", "namespace": "default"},
        "bootcamp": {"backend": "kubernetes", "kind": "Deployment", "name": "kubernetes-bootcamp"},
        "fluentd": {"backend": "kubernetes", "kind": "DaemonSet", "name": "fluentd", "namespace": "kube-system"},
        "payload-api": {"backend": "ecs", "cluster": "default", "service": "payload-api", "region": "ap-northeast-1"},
        "shop-1": {"backend": "kubernetes", "kind": "Deployment", "name": "shop-1", "namespace": "shop"},
    },
}


@contextmanager
def fuzz_target(log: LogLines) -> Iterator[tuple[Any, FakeSlack]]:
    """A started bot wired to a private redis-server and a fake Slack (rate limits off: the fake's default)."""
    from bot.app import build_app
    from bot.core.catalog import BackendKind, parse_catalog
    from bot.settings import Settings
    from sandbox.redis_server import RedisServer
    from tests.fakes.memory_backend import MemoryBackend

    catalog = parse_catalog(CATALOG)
    backend = MemoryBackend()
    for name in catalog.names:
        target = catalog.get(name)
        assert target is not None
        backend.arrange(target, revisions=2)
    configure_logging("WARNING", stream=log)
    redis = RedisServer().start()
    try:
        with FakeSlack() as fake, tempfile.TemporaryDirectory(prefix="rollbot-faults-") as tmp:
            catalog_path = Path(tmp) / "catalog.yaml"
            catalog_path.write_text(yaml.safe_dump(CATALOG), encoding="utf-8")
            bot_settings = Settings(
                slack_bot_token=seed.BOT_TOKEN,
                slack_signing_secret=seed.SIGNING_SECRET,
                slack_app_token=None,
                slack_api_url=fake.api_url,
                redis_url=redis.url(0),
                config_path=catalog_path,
                host="127.0.0.1",
                port=0,
            )
            bot = build_app(bot_settings, backends={kind: backend for kind in BackendKind}, catalog=catalog)
            with bot:
                yield bot, fake
    finally:
        redis.stop()


def fuzz_world(bot: Any, fake: FakeSlack) -> FuzzWorld:
    """Two real request messages to vote on and cancel, and response_urls the fake will accept."""
    with SlackDriver(bot.events_url, seed.SIGNING_SECRET, fake, reflect_acks=False) as driver:
        for text in ("shop-1 1", "bootcamp"):
            driver.slash_command(text, user=seed.ALICE, channel=seed.INCIDENT)
    requests = fake.wait_for(
        lambda: (found := [m for m in fake.messages(seed.INCIDENT) if m.metadata]) and len(found) >= 2 and found,
        timeout=10,
        description="two request messages",
    )
    operation_ids = tuple(str(m.metadata["event_payload"]["operation_id"]) for m in requests if m.metadata)
    response_urls = tuple(
        fake.issue_response_url("commands", channel, user)
        for channel in (seed.INCIDENT, seed.OPS)
        for user in (seed.ALICE, seed.DAVE)
        for _ in range(5)
    )
    return FuzzWorld(
        messages=tuple((m.channel, m.ts) for m in requests), operation_ids=operation_ids, response_urls=response_urls
    )


def run_fuzz(
    sender: FuzzSender, world: FuzzWorld, tally: FuzzTally, *, examples: int, threads: int, derandomize: bool
) -> None:
    """Hypothesis draws on this thread; `threads` senders post what it drew, in parallel."""
    pending: queue.Queue[FuzzRequest | None] = queue.Queue(maxsize=threads * 8)

    def send_forever() -> None:
        while (request := pending.get()) is not None:
            tally.record(request, sender.send(request))

    workers = [threading.Thread(target=send_forever, name=f"fuzz-sender-{n}") for n in range(threads)]
    for worker in workers:
        worker.start()

    @settings(
        max_examples=examples,
        derandomize=derandomize,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(fuzz_requests(world))
    def draw(request: FuzzRequest) -> None:
        pending.put(request)

    try:
        draw()
    finally:
        for _ in workers:
            pending.put(None)
        for worker in workers:
            worker.join()


def fuzz(options: Options) -> dict[str, Any]:
    examples = options.requests or (QUICK_FUZZ_REQUESTS if options.quick else FULL_FUZZ_REQUESTS)
    log = LogLines()
    tally = FuzzTally()
    with fuzz_target(log) as (bot, fake):
        world = fuzz_world(bot, fake)
        sender = FuzzSender(bot.events_url, seed.SIGNING_SECRET, timeout=REQUEST_TIMEOUT_SECONDS)
        started = time.perf_counter()
        try:
            run_fuzz(sender, world, tally, examples=examples, threads=options.threads, derandomize=options.quick)
        finally:
            sender.close()
        seconds = time.perf_counter() - started
        # Answers to commands and votes run on the bot's executor after the ack: let them finish before judging.
        bot.request_executor.shutdown(wait=True)
        leaks = slack_tracebacks(fake)
        activity = slack_activity(fake)
    crashes = log.crashes()
    figures = tally.summary()
    figures |= {
        "seconds": round(seconds, 1),
        "requests_per_second": round(tally.requests / seconds, 1) if seconds else None,
        "threads": options.threads,
        "crashes": tally.wrong_answers + tally.hung + len(crashes),
        "error_log_lines": len(crashes),
        "error_log_samples": [_short(record) for record in crashes[:5]],
        "error_log_events": dict(Counter(str(record.get("event")) for record in crashes)),
        "malformed_requests_ignored": log.count(MALFORMED_EVENT),
        "slack_refusals_logged": len(log.refusals()),
        "log_levels": log.levels(),
        "tracebacks_in_slack": len(leaks) + tally.tracebacks_in_answers,
        "traceback_samples": leaks[:5],
        "slack_calls": activity,
        "slack_messages_posted": activity.get("chat.postMessage", 0),
    }
    figures["passed"] = figures["crashes"] == 0 and figures["tracebacks_in_slack"] == 0
    return figures


def _short(record: dict[str, Any]) -> dict[str, Any]:
    # The last lines of a traceback say what failed; the first ones only where it started.
    return {key: (value[-1500:] if isinstance(value, str) else value) for key, value in record.items()}


# Figures that must be zero (or empty) in every process-level scenario for it to pass.
MUST_BE_NONE = (
    "doubled",
    "lost_approvals",
    "counted_twice",
    "stale_store_writes",
    "stale_slack_writes",
    "stale_backend_calls",
    "second_requests_accepted",
    "stuck_in_flight",
    "succeeded_but_not_applied",
    "failed_but_applied",
    "tracebacks_in_slack",
    "outcome_lost_in_slack",
)


def _process_scenario(name: str) -> Scenario:
    """A scenario of `bench.fault_scenarios` (real replicas, Redis, Sentinel, kubesim, fake-Slack storms)."""

    def run(options: Options) -> dict[str, Any]:
        from bench.fault_scenarios import SCENARIOS as PROCESS_SCENARIOS

        try:
            figures = PROCESS_SCENARIOS[name](options.quick, options.seed)
        except Exception as exc:  # one scenario failing must not hide the figures of the others
            return {"error": f"{type(exc).__name__}: {exc}", "passed": False}
        figures["passed"] = not any(figures.get(key) for key in MUST_BE_NONE)
        return figures

    return run


SCENARIOS: dict[str, Scenario] = {
    "fuzz": fuzz,
    **{
        name: _process_scenario(name)
        for name in (
            "triple_delivery",
            "sigkill",
            "sigstop",
            "redis_restart",
            "sentinel_failover",
            "kube_faults",
            "slack_storm",
        )
    },
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--scenario", action="append", choices=sorted(SCENARIOS), help="repeatable; default: all")
    parser.add_argument("--quick", action="store_true", help="the trimmed, deterministic run")
    parser.add_argument("--requests", type=int, default=None, help="fuzz: how many requests (overrides --quick)")
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS, help="fuzz: concurrent senders")
    parser.add_argument("--seed", type=int, default=7, help="process scenarios: the seed of their random choices")
    options = parser.parse_args(argv)
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "SLACK_APP_TOKEN"):
        os.environ.pop(name, None)
    started = time.perf_counter()
    results = {name: SCENARIOS[name](options) for name in (options.scenario or SCENARIOS)}
    report = {
        "benchmark": "fault campaign",
        "quick": options.quick,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "scenarios": results,
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(report, indent=2, ensure_ascii=False))
    return 0 if all(result.get("passed") for result in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
