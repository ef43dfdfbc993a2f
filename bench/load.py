"""When a hundred services break at once: rollbot against Slack's own limits, three replicas, real Redis.

What runs: the fault campaign's arena (bench/faultlib/harness.py): three real `rollbot serve` replicas as
subprocesses (`tests.e2e_slack.scripted_bot`: rollbot with the Redis-backed scripted backend), a real
redis-server for the operations, a second one for the scripted world, and the fake Slack with its tier and
per-channel limits ON (`RateLimiter(mode="strict", scale=--scale)`; scale 1 is Slack's own speed). Each
replica's outbound budget (ROLLBOT_SLACK_BUDGET_SCALE) runs at the fake's speed and is split three ways
(ROLLBOT_SLACK_REPLICAS=3), as in production. The backend is the scripted one, not kubesim or moto: this bench
measures the bot and Slack's limits, not a cluster.

Scenarios (`--scenarios separate,batch`):

    separate  N targets broken at once; N on-call engineers each type `/rollback tNNN` in one channel, spread
              evenly over `--spread` seconds (10), round-robin over the replicas; an approver reacts ✅ to each
              request message as soon as it appears. Figures: time until every request message is posted and
              until every final line is posted, against the floors below; approval → first backend write
              (`roll_back` call, timestamped by the scripted world) p50/p99 (goal p99 ≤ 100 ms); Slack calls
              total, by method and per operation; 429s Slack answered; requests bounced (not acked, never
              posted, or answered "try again") and writes lost (a request message, approval line, final line
              or final phase that is not in the fake at the end); Redis commands per operation (INFO
              commandstats delta of the operations' Redis); bot CPU seconds per operation (utime + stime of
              the replicas from /proc, from after start-up to the end); peak RSS per replica (VmHWM).
    batch     the same N as one request (`/rollback <group>`, a catalog group of all N): one approval, then
              time to the last final line, Slack calls.

Theoretical floors (what Slack's limits allow at best; every time is from the first `/rollback`). Slack, and
the fake, allow R = 1 `chat.postMessage` per second per channel after a burst of B = 3 (thread replies count
against their channel), and C = 50 `chat.update` per minute for the workspace (Tier 3), all times `scale`:

    requests posted   T_req   ≥ max(a_N, (N − B) / R)           a_N = when the last request arrives (spread)
    final lines       T_final ≥ max((P − B) / R, (N − C) / (C / 60 s))
                      P = the posts into the channel: ≥ 2N (a request message and a final line each); the
                      figure `final_floor_s` uses the P this run made (request messages, approval, lifecycle
                      and final lines), `final_floor_two_posts_s` the bare 2N; the Tier 3 term is the one
                      `chat.update` each request message needs to show its final phase.
    batch             T_final ≥ (P − B) / R with P ≥ N + 1 (one request message, a final line per target).

Usage: `python bench/load.py [--targets 100] [--scale 1] [--spread 10] [--scenarios separate,batch]`.
Prints one JSON object. `make bench-load` runs it at real speed (30 targets) and scaled (100) and writes bench/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis

from bench.faultlib.harness import Arena, CampaignError, arena, catalog_document, eventually
from bot.core.operations import METADATA_EVENT_TYPE
from sandbox.slack.ratelimits import POST_MESSAGE_BURST, POST_MESSAGE_PER_SECOND, TIER_PER_MINUTE
from sandbox.slack.records import Message
from sandbox.slack.seed import ALICE, BOB, INCIDENT
from tests.fakes.memory_backend import RolloutScript

REPLICAS = ["r1", "r2", "r3"]
GROUP = "everything"
APPROVER = BOB
# A real rollout takes a while; three steps 0.2 s apart keep the backend cheap and the progress path busy.
ROLLOUT = RolloutScript(steps=3, step_delay=0.2)
WRITES = {"chat.postMessage", "chat.update", "reactions.add", "chat.postEphemeral", "chat.delete"}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# What the flow posts for every operation, and what the requester must never read.
APPROVED = "approved by"
FINAL = "rolled back to revision 1"
BOUNCED = "try again"


def target_names(count: int) -> list[str]:
    return [f"t{n:03d}" for n in range(1, count + 1)]


def catalog(names: list[str]) -> dict[str, Any]:
    document = catalog_document(dict.fromkeys(names, 1))
    document["groups"] = {GROUP: names}
    return document


# --- the replicas as the OS sees them ---------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (fields 14 and 15 of /proc/<pid>/stat, after the parenthesised name)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def peak_rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    return round(int(match.group(1)) / 1024, 1) if match else 0.0


def redis_commands(url: str) -> Counter[str]:
    client = redis.Redis.from_url(url)
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    return Counter({name.removeprefix("cmdstat_"): int(row["calls"]) for name, row in stats.items()})


class Meter:
    """CPU and Redis commands from now until `read()`: the work of the scenario, without start-up."""

    def __init__(self, place: Arena) -> None:
        self._place = place
        self._cpu = {name: cpu_seconds(r.process.pid) for name, r in place.replicas.items()}
        self._redis = redis_commands(place.store_url)

    def read(self, operations: int) -> dict[str, Any]:
        cpu = {name: cpu_seconds(r.process.pid) - self._cpu[name] for name, r in self._place.replicas.items()}
        commands = redis_commands(self._place.store_url)
        commands.subtract(self._redis)
        commands = +commands
        total = sum(commands.values())
        return {
            "bot_cpu_seconds": round(sum(cpu.values()), 2),
            "bot_cpu_seconds_per_operation": round(sum(cpu.values()) / operations, 3),
            "bot_cpu_seconds_by_replica": {name: round(value, 2) for name, value in cpu.items()},
            "peak_rss_mib_by_replica": {n: peak_rss_mib(r.process.pid) for n, r in self._place.replicas.items()},
            "redis_commands": total,
            "redis_commands_per_operation": round(total / operations, 1),
            "redis_commands_by_name": dict(commands.most_common(12)),
        }


# --- Slack, as the fake recorded it -----------------------------------------------------------------------


def request_messages(place: Arena) -> list[Message]:
    return [m for m in place.fake.messages(INCIDENT) if (m.metadata or {}).get("event_type") == METADATA_EVENT_TYPE]


def payload(message: Message) -> dict[str, Any]:
    return dict((message.metadata or {}).get("event_payload", {}))


def thread(place: Arena, message: Message) -> list[Message]:
    return place.fake.messages(INCIDENT, thread_ts=message.ts)


def posted_at(place: Arena) -> dict[str, float]:
    """ts of every message Slack accepted from `chat.postMessage` → when the call reached Slack (epoch s)."""
    return {str(c.response["ts"]): c.t for c in place.fake.calls("chat.postMessage") if c.ok and "ts" in c.response}


def slack_figures(place: Arena, operations: int) -> dict[str, Any]:
    calls = place.fake.calls()
    by_method = Counter(c.method for c in calls)
    throttled = Counter(c.method for c in calls if c.status == 429)
    writes = sum(n for method, n in by_method.items() if method in WRITES)
    return {
        "slack_calls": len(calls),
        "slack_calls_per_operation": round(len(calls) / operations, 2),
        "slack_writes": writes,
        "slack_writes_per_operation": round(writes / operations, 2),
        "slack_calls_by_method": dict(by_method.most_common()),
        "slack_429s": sum(throttled.values()),
        "slack_429s_by_method": dict(throttled),
        "channel_posts": len(place.fake.messages(INCIDENT))
        + sum(len(thread(place, m)) for m in place.fake.messages(INCIDENT)),
    }


def tracebacks(place: Arena) -> dict[str, Any]:
    """How many tracebacks the replicas logged, and what the first few were about (event and last line)."""
    lines = [
        line
        for replica in place.replicas.values()
        for line in replica.log_path.read_text(errors="replace").splitlines()
        if "Traceback" in line
    ]
    samples = []
    for line in lines[:3]:
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            samples.append(line[-300:])
            continue
        trace = str(entry.get("exception", "")).strip().splitlines()
        samples.append(f"{entry.get('event')}: {trace[-1] if trace else ''}"[:300])
    return {"replica_tracebacks": len(lines), "replica_traceback_samples": samples}


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


# --- floors -----------------------------------------------------------------------------------------------


def post_floor(posts: int, scale: float) -> float:
    return max(0.0, (posts - POST_MESSAGE_BURST) / (POST_MESSAGE_PER_SECOND * scale))


def update_floor(updates: int, scale: float) -> float:
    per_minute = TIER_PER_MINUTE["tier3"]
    return max(0.0, (updates - per_minute) / (per_minute / 60.0 * scale))


# --- scenarios --------------------------------------------------------------------------------------------


def start(names: list[str], scale: float) -> Any:
    return arena(
        {},
        document=catalog(names),
        slack_rate_limits="strict",
        slack_scale=scale,
        slack_replicas=len(REPLICAS),
        # Production's lease and sweep: the campaign's 1 s lease would measure takeovers, not load.
        lease="30s",
        sweep_interval="PT5S",
    )


def arrange(place: Arena, names: list[str]) -> None:
    for name in names:
        place.arrange(name, revisions=2, script=ROLLOUT)
    place.spawn_all(REPLICAS)


def wait(what: str, timeout: float, predicate: Callable[[], Any]) -> Any:
    return eventually(predicate, timeout, what=what)


def separate(count: int, scale: float, spread: float) -> dict[str, Any]:
    names = target_names(count)
    requesters = [f"U0ONCALL{n:03d}" for n in range(1, count + 1)]
    request_floor = max(spread * (count - 1) / count, post_floor(count, scale))
    patience = 120 + 6 * post_floor(3 * count, scale)
    with start(names, scale) as place:
        arrange(place, names)
        drivers = [place.drivers[name] for name in REPLICAS]
        meter = Meter(place)
        acks: dict[str, Any] = {}
        approved_at: dict[str, float] = {}
        finished = threading.Event()

        def type_command(index: int) -> None:
            acks[names[index]] = drivers[index % len(drivers)].slash_command(
                names[index], user=requesters[index], channel=INCIDENT
            )

        def approve_as_they_appear() -> None:
            with ThreadPoolExecutor(8) as reacting:
                while not finished.is_set() and len(approved_at) < count:
                    for message in request_messages(place):
                        target = str(payload(message).get("target"))
                        if target in approved_at:
                            continue
                        approved_at[target] = time.time()
                        driver = drivers[len(approved_at) % len(drivers)]
                        reacting.submit(driver.reaction_added, APPROVER, "white_check_mark", INCIDENT, message.ts)
                    time.sleep(0.02)

        timed_out = ""
        approver = threading.Thread(target=approve_as_they_appear, daemon=True)
        started = time.time()
        approver.start()
        with ThreadPoolExecutor(16) as typing:
            for index in range(count):
                time.sleep(max(0.0, started + spread * index / count - time.time()))
                typing.submit(type_command, index)
        try:
            requests = wait(
                f"all {count} request messages",
                patience,
                lambda: len(found := request_messages(place)) >= count and found,
            )
            requests_posted = time.time()

            def final_lines() -> bool:
                return all(any(FINAL in line.all_text() for line in thread(place, m)) for m in requests)

            finals_posted: float | None = None
            try:
                wait(f"{count} final lines", patience, final_lines)
                finals_posted = time.time()
            except CampaignError as error:  # the figures still say what arrived and what was lost
                timed_out = str(error)
        finally:
            finished.set()
            approver.join()
        figures = meter.read(count)

        when = posted_at(place)
        request_times = sorted(when[m.ts] - started for m in requests if m.ts in when)
        final_times: list[float] = []
        lost: list[str] = []
        for message in requests:
            lines = thread(place, message)
            final = next((line for line in lines if FINAL in line.all_text()), None)
            if final is not None and final.ts in when:
                final_times.append(when[final.ts] - started)
            fresh = place.fake.message(INCIDENT, message.ts)
            target = payload(message).get("target")
            if not any(APPROVED in line.all_text() for line in lines):
                lost.append(f"{target}: approval line")
            if final is None:
                lost.append(f"{target}: final line")
            if payload(fresh).get("phase") != "succeeded":
                lost.append(f"{target}: request message shows {payload(fresh).get('phase')}, not succeeded")
        latencies = []
        for name in names:
            calls = place.world_state(name).get("call_log", [])
            if calls and name in approved_at:
                latencies.append((float(calls[0]["at"]) - approved_at[name]) * 1000)
        answers = [r.text + json.dumps(r.body or {}) for r in place.fake.responses("commands")]
        answers += [e.all_text() for e in place.fake.ephemerals()]
        bounced = [a for a in answers if BOUNCED in a.lower()]
        slack = slack_figures(place, count)
        updates_needed = count
        final_floor = max(post_floor(slack["channel_posts"], scale), update_floor(updates_needed, scale))
        return {
            "scenario": "separate",
            "targets": count,
            "requests_not_acked": sum(not ack.ok for ack in acks.values()),
            "requests_bounced": len(bounced) + (count - len(requests)),
            "writes_lost": len(lost),
            "writes_lost_detail": lost[:20],
            "requests_posted_s": round(requests_posted - started, 2),
            "requests_floor_s": round(request_floor, 2),
            "final_lines_posted_s": round(finals_posted - started, 2) if finals_posted else None,
            "timed_out": timed_out,
            "final_floor_s": round(final_floor, 2),
            "final_floor_two_posts_s": round(max(post_floor(2 * count, scale), update_floor(updates_needed, scale)), 2),
            "request_post_times_s": [round(t, 3) for t in request_times],
            "final_line_times_s": [round(t, 3) for t in sorted(final_times)],
            "approval_to_first_write_ms": {
                "p50": round(statistics.median(latencies), 1) if latencies else None,
                "p99": round(percentile(latencies, 0.99), 1) if latencies else None,
                "max": round(max(latencies), 1) if latencies else None,
                "samples": [round(v, 1) for v in latencies],
            },
            **slack,
            **figures,
            **tracebacks(place),
        }


def batch(count: int, scale: float) -> dict[str, Any]:
    names = target_names(count)
    patience = 120 + 6 * post_floor(2 * count, scale)
    with start(names, scale) as place:
        arrange(place, names)
        meter = Meter(place)
        started = time.time()
        ack = place.drivers[REPLICAS[0]].slash_command(GROUP, user=ALICE, channel=INCIDENT)
        if not ack.ok:
            raise CampaignError(f"/rollback {GROUP} was not acked: {ack.status} {ack.text[:300]}")
        request = wait("the batch's request message", patience, lambda: (found := request_messages(place)) and found)[0]
        request_posted = time.time()
        place.drivers[REPLICAS[1]].reaction_added(APPROVER, "white_check_mark", INCIDENT, request.ts)

        def done_lines() -> list[Message]:
            return [line for line in thread(place, request) if re.match(r"✅ t\d{3}: " + FINAL, line.all_text())]

        last_final: float | None = None
        timed_out = ""
        try:
            wait(f"{count} final lines of the batch", patience, lambda: len(done_lines()) >= count)
            last_final = time.time()
        except CampaignError as error:  # the figures still say what arrived
            timed_out = str(error)
        figures = meter.read(count)
        when = posted_at(place)
        final_times = sorted(when[line.ts] - started for line in done_lines() if line.ts in when)
        members = payload(place.fake.message(INCIDENT, request.ts)).get("members", [])
        slack = slack_figures(place, count)
        return {
            "scenario": "batch",
            "targets": count,
            "request_posted_s": round(request_posted - started, 2),
            "final_lines_posted_s": round(last_final - started, 2) if last_final else None,
            "timed_out": timed_out,
            "final_floor_s": round(post_floor(slack["channel_posts"], scale), 2),
            "final_floor_bare_s": round(post_floor(count + 1, scale), 2),
            "final_line_times_s": [round(t, 3) for t in final_times],
            "members_succeeded": sum(m.get("phase") == "succeeded" for m in members),
            "batch_phase": payload(place.fake.message(INCIDENT, request.ts)).get("phase"),
            **slack,
            **figures,
            **tracebacks(place),
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=100, help="services broken at once (≤ 100: a batch's cap)")
    parser.add_argument("--scale", type=float, default=1.0, help="Slack's minute runs this many times faster")
    parser.add_argument("--spread", type=float, default=10.0, help="seconds over which the requests are typed")
    parser.add_argument("--scenarios", default="separate,batch", help="comma-separated: separate, batch")
    args = parser.parse_args()
    if not 2 <= args.targets <= 100:
        parser.error("--targets must be between 2 and 100 (a batch takes at most 100 targets)")
    if args.scale <= 0:
        parser.error("--scale must be positive (1 = Slack's own speed)")
    chosen = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = set(chosen) - {"separate", "batch"}
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(sorted(unknown))}: choose from separate, batch")
    report = run(args.targets, args.scale, args.spread, chosen)
    json.dump(report, sys.stdout, indent=2)
    print()
    return 0 if all("error" not in report[s] for s in chosen) else 1


def run(targets: int, scale: float, spread: float, scenarios: list[str]) -> dict[str, Any]:
    """Every scenario asked for, in one JSON-ready report; a scenario that did not finish says why."""
    report: dict[str, Any] = {
        "bench": "load",
        "targets": targets,
        "slack_scale": scale,
        "spread_s": spread,
        "replicas": len(REPLICAS),
        "backend": "scripted (Redis-backed MemoryBackend), 3 steps 0.2 s apart",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_before": os.getloadavg()},
    }
    for scenario in scenarios:
        try:
            report[scenario] = separate(targets, scale, spread) if scenario == "separate" else batch(targets, scale)
        except CampaignError as error:
            report[scenario] = {"scenario": scenario, "error": str(error)}
    report["machine"]["load_after"] = os.getloadavg()
    return report


if __name__ == "__main__":
    sys.exit(main())
