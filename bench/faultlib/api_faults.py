"""Scenarios where the APIs the bot calls misbehave: kube API 500s, 409s and hung reads; Slack 429/5xx storms.

- `kube_faults`: a bot built by `build_app` in this process, exactly as in production, with the real Kubernetes
  backend against kubesim over HTTP (a subprocess would need the kubeconfig and nothing more, but the in-process
  bot keeps the scenario short on two cores). kubesim answers PATCHes of Deployments with 500 or 409 and holds
  GETs of Deployments back, each with a probability and a seed (`POST /_sim/faults`). Every operation must end
  SUCCEEDED only if its Deployment really runs the target revision's image, rolled out; FAILED with a reason
  otherwise; never stuck in flight.
- `slack_storm`: the three replicas of the process campaign, with the fake Slack answering `chat.*` calls with
  429 (Retry-After 1) and 503 storms. Every operation's outcome must reach Slack (request message and final
  thread line) eventually, or, if a write is truly lost, the record in Redis must still be truthful.

In both, nothing that reaches Slack may be a traceback. `seed` seeds the fault rules and the choice of replicas.
"""

from __future__ import annotations

import os
import random
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

from bench.faultlib.harness import Arena, CampaignError, arena, eventually
from bot.adapters.redis_store import RedisOperationStore
from bot.app import RollbotApp, SystemClock, build_app
from bot.core.catalog import Catalog, WorkloadKind, parse_catalog
from bot.core.operations import Operation, Phase
from bot.settings import Settings
from sandbox.faults import FaultClient
from sandbox.kubesim.cluster import KubeSim
from sandbox.redis_server import RedisServer
from sandbox.slack.driver import SlackDriver
from sandbox.slack.seed import ALICE, BOB, BOT_TOKEN, CAROL, INCIDENT, SIGNING_SECRET
from sandbox.slack.server import FakeSlack
from tests.backends.kube_world import KubeWorld
from tests.fakes.memory_backend import RolloutScript

FINAL_LINE = "rolled back to revision"
TERMINAL = frozenset({Phase.SUCCEEDED, Phase.FAILED, Phase.REJECTED, Phase.EXPIRED})
# What a person must never see in Slack: a Python traceback or the text of an exception.
TRACEBACK_MARKS = ("Traceback (most recent call last)", 'File "/')
# Long enough for the bot's retries and a slow rollout on two shared cores; most operations end in seconds.
OPERATION_DEADLINE = 90.0
DEPLOYMENTS = "/apis/apps/v1/namespaces/*/deployments/*"


def _figures(started: float, **counts: Any) -> dict[str, Any]:
    return counts | {"wall_seconds": round(time.monotonic() - started, 2)}


def _tracebacks(texts: list[str]) -> list[str]:
    return [text[:300] for text in texts if any(mark in text for mark in TRACEBACK_MARKS)]


@contextmanager
def _without_proxies() -> Iterator[None]:
    # slack_sdk honours HTTP(S)_PROXY and ignores NO_PROXY: loopback must not go through a proxy.
    saved = {key: os.environ.pop(key) for key in list(os.environ) if key.lower().endswith("_proxy")}
    try:
        yield
    finally:
        os.environ.update(saved)


# --- kube API faults ---------------------------------------------------------------------------------------------


@dataclass
class KubeArena:
    sim: KubeSim
    world: KubeWorld
    faults: FaultClient
    fake: FakeSlack
    bot: RollbotApp
    driver: SlackDriver
    store: RedisOperationStore
    catalog: Catalog


def _image(name: str, version: int) -> str:
    return f"registry.example/{name}:v{version}"


@contextmanager
def kube_arena(names: list[str]) -> Iterator[KubeArena]:
    """kubesim with one Deployment per name at revision 3 (v1 → v2 → v3), Redis, the fake Slack and a bot."""
    with ExitStack() as stack:
        stack.enter_context(_without_proxies())
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rollbot-kube-faults-")))
        redis_url = stack.enter_context(RedisServer()).url()
        fake = stack.enter_context(FakeSlack())
        sim = stack.enter_context(KubeSim(pod_ready_seconds=0.1))
        kubeconfig = workdir / "kubeconfig"
        sim.write_kubeconfig(kubeconfig)
        world = KubeWorld(sim)
        for name in names:
            world.create(WorkloadKind.DEPLOYMENT, name, _image(name, 1))
        for version in (2, 3):
            for name in names:
                world.wait_until(lambda name=name: world.rolled_out(WorkloadKind.DEPLOYMENT, name), what=name)
                world.set_image(WorkloadKind.DEPLOYMENT, name, _image(name, version))
        for name in names:
            world.wait_until(lambda name=name: world.rolled_out(WorkloadKind.DEPLOYMENT, name), what=name)
        document = {
            "defaults": {"approvals": {"required": 1, "approvers": [ALICE, BOB, CAROL], "expires_after": "15m"}},
            "targets": {
                name: {"backend": "kubernetes", "kind": "Deployment", "name": name, "kube_context": "sandbox"}
                for name in names
            },
        }
        catalog_path = workdir / "catalog.yaml"
        catalog_path.write_text(yaml.safe_dump(document), encoding="utf-8")
        settings = Settings(
            slack_bot_token=BOT_TOKEN,
            slack_signing_secret=SIGNING_SECRET,
            slack_api_url=fake.api_url,
            redis_url=redis_url,
            config_path=catalog_path,
            kubeconfig=str(kubeconfig),
            host="127.0.0.1",
            port=0,
            rollout_timeout=timedelta(seconds=45),
            sweep_interval=timedelta(milliseconds=300),
            lease=timedelta(seconds=5),
        )
        bot = build_app(settings).start()
        stack.callback(bot.stop)
        store = RedisOperationStore.from_url(redis_url, SystemClock())
        stack.callback(store.close)
        driver = stack.enter_context(SlackDriver(bot.events_url, SIGNING_SECRET, fake))
        yield KubeArena(
            sim=sim,
            world=world,
            faults=FaultClient(sim.url),
            fake=fake,
            bot=bot,
            driver=driver,
            store=store,
            catalog=parse_catalog(document),
        )


def scenario_kube_faults(quick: bool, seed: int) -> dict[str, Any]:
    """Roll N Deployments back from v3 to v2 while kubesim fails PATCHes (500, 409) and holds GETs back."""
    started = time.monotonic()
    total, width = (4, 4) if quick else (30, 10)
    names = [f"web-{n:02d}" for n in range(total)]
    results: list[dict[str, Any]] = []
    with kube_arena(names) as place:
        place.faults.add(method="PATCH", path=DEPLOYMENTS, status=500, probability=0.3, seed=seed)
        place.faults.add(method="PATCH", path=DEPLOYMENTS, status=409, probability=0.3, seed=seed + 1)
        place.faults.add(method="GET", path=DEPLOYMENTS, delay=2.0, probability=0.15, seed=seed + 2, watch=False)
        with ThreadPoolExecutor(max_workers=width) as pool:
            results = list(pool.map(lambda name: _kube_rollback(place, name), names))
        rules = place.faults.list()
        texts = [m.all_text() for m in place.fake.messages(INCIDENT)]
        texts += [line for r in results for line in r.pop("thread")]
        texts += [e.all_text() for e in place.fake.ephemerals()]
        texts += [r.text + str((r.body or {}).get("blocks", "")) for r in place.fake.responses()]
    return _figures(
        started,
        operations=len(results),
        faults_fired={f"{rule['method']} {rule.get('status') or 'delay'}": rule["hits"] for rule in rules},
        succeeded=sum(r["phase"] == "succeeded" for r in results),
        failed=sum(r["phase"] == "failed" for r in results),
        never_created=sum(r["phase"] == "not created" for r in results),
        stuck_in_flight=sum(r["phase"] in {"awaiting_approval", "approved", "rolling_back"} for r in results),
        succeeded_but_not_running_target=sum(r["phase"] == "succeeded" and not r["runs_target"] for r in results),
        failed_without_reason=sum(r["phase"] == "failed" and not r["reason"] for r in results),
        failed_but_running_target=sum(r["phase"] == "failed" and r["runs_target"] for r in results),
        threads_with_final_line=sum(r["final_line"] for r in results),
        failure_reasons=sorted({r["reason"] for r in results if r["phase"] == "failed" and r["reason"]}),
        tracebacks_in_slack=_tracebacks(texts),
    )


def _kube_rollback(place: KubeArena, name: str) -> dict[str, Any]:
    target = place.catalog.get(name)
    assert target is not None
    ack = place.driver.slash_command(name, user=ALICE, channel=INCIDENT)
    if not ack.ok:
        raise CampaignError(f"/rollback {name} was not acked: {ack.status}")

    def created() -> Operation | None:
        holder = place.store.lock_holder(target.lock_key)
        operation = place.store.get(holder.operation_id) if holder is not None else None
        return operation if operation is not None and operation.request_message is not None else None

    try:
        operation = eventually(created, timeout=30, what=f"the request message of /rollback {name}")
    except CampaignError:
        return {"phase": "not created", "runs_target": False, "reason": "", "final_line": False, "thread": []}
    assert operation.request_message is not None
    place.driver.reaction_added(BOB, "white_check_mark", INCIDENT, operation.request_message.ts)
    try:
        eventually(
            lambda: (now := place.store.get(operation.id)) is not None and now.phase in TERMINAL,
            timeout=OPERATION_DEADLINE,
            what=f"{operation.id} in a terminal phase",
        )
        eventually(lambda: _final_shown(place.fake, operation), timeout=20, what="the outcome in the thread")
    except CampaignError:
        pass  # reported: stuck in flight, or a thread without its final line
    final = place.store.get(operation.id)
    assert final is not None
    deployment = place.world.get(WorkloadKind.DEPLOYMENT, name)
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    runs_target = image == _image(name, 2) and place.world.rolled_out(WorkloadKind.DEPLOYMENT, name)
    thread = _thread(place.fake, operation)
    return {
        "phase": final.phase.value,
        "runs_target": runs_target,
        "reason": final.outcome or "",
        "final_line": _final_shown(place.fake, operation),
        "thread": thread,
    }


def _thread(fake: FakeSlack, operation: Operation) -> list[str]:
    ref = operation.request_message
    assert ref is not None
    return [m.all_text() for m in fake.messages(ref.channel, thread_ts=ref.ts)]


def _final_shown(fake: FakeSlack, operation: Operation) -> bool:
    """The request message shows a terminal phase, and the thread has a line saying how it ended."""
    ref = operation.request_message
    assert ref is not None
    metadata = fake.message(ref.channel, ref.ts).metadata or {}
    shown = str(metadata.get("event_payload", {}).get("phase"))
    return shown in {phase.value for phase in TERMINAL} and len(_thread(fake, operation)) >= 2


# --- Slack storms ------------------------------------------------------------------------------------------------


def scenario_slack_storm(quick: bool, seed: int) -> dict[str, Any]:
    """429 and 503 storms on `chat.*` while three replicas run N rollbacks; every outcome must reach Slack."""
    started = time.monotonic()
    total, width = (4, 4) if quick else (30, 10)
    names = [f"shop-{n:02d}" for n in range(total)]
    rng = random.Random(seed)
    with arena(dict.fromkeys(names, 1)) as place:
        for name in names:
            place.arrange(name, revisions=2, script=RolloutScript(steps=3))
        replicas = [r.name for r in place.spawn_all([f"replica-{n}" for n in range(3)])]
        place.fake.inject_fault("chat.*", status=429, retry_after=1, probability=0.25, seed=seed)
        place.fake.inject_fault("chat.*", status=503, probability=0.2, seed=seed + 1)
        plans = [(name, rng.choice(replicas), rng.choice(replicas)) for name in names]
        with ThreadPoolExecutor(max_workers=width) as pool:
            results = list(pool.map(lambda plan: _storm_rollback(place, *plan), plans))
        rules = place.fake.fault_rules()
        texts = [m.all_text() for m in place.fake.messages(INCIDENT)]
        texts += [line for r in results for line in r.pop("thread")]
        texts += [e.all_text() for e in place.fake.ephemerals()]
        told_slack_failed = sum("Slack failed" in r.text for r in place.fake.responses("commands", user=ALICE))
    return _figures(
        started,
        replicas=3,
        operations=len(results),
        storm_hits={f"{rule['method']} {rule['status']}": rule["hits"] for rule in rules},
        storm_seen=max((rule["seen"] for rule in rules), default=0),
        never_created=sum(r["phase"] == "not created" for r in results),
        # A refused request must leave nothing behind (no lock, no record) and tell the requester why.
        requests_left_half_made=sum(r["phase"] == "not created" and r["stored_phase"] is not None for r in results),
        requester_told_slack_failed=told_slack_failed,
        succeeded=sum(r["phase"] == "succeeded" for r in results),
        failed=sum(r["phase"] == "failed" for r in results),
        stuck_in_flight=sum(r["phase"] in {"awaiting_approval", "approved", "rolling_back"} for r in results),
        doubled=sum(r["applied"] > 1 for r in results),
        succeeded_but_not_applied=sum(r["phase"] == "succeeded" and r["applied"] < 1 for r in results),
        outcome_shown_in_slack=sum(r["shown"] for r in results),
        final_line_in_thread=sum(r["final_line"] for r in results),
        outcome_lost_in_slack=[
            {key: r[key] for key in ("operation_id", "phase", "phase_shown", "final_line", "applied")}
            for r in results
            if r["phase"] != "not created" and not (r["shown"] and r["final_line"])
        ],
        tracebacks_in_slack=_tracebacks(texts),
    )


def _storm_rollback(place: Arena, name: str, via: str, approver_via: str) -> dict[str, Any]:
    try:
        _, operation = place.request(via, name)
    except CampaignError:
        return _request_not_shown(place, name)
    assert operation.request_message is not None
    place.drivers[approver_via].reaction_added(BOB, "white_check_mark", INCIDENT, operation.request_message.ts)
    try:
        eventually(
            lambda: place.operation(operation.id).phase in TERMINAL,
            timeout=OPERATION_DEADLINE,
            what=f"{operation.id} in a terminal phase",
        )
        final = place.operation(operation.id)
        place.wait_for_phase(operation, final.phase.value, timeout=60)
        place.wait_for_line(operation, FINAL_LINE if final.phase is Phase.SUCCEEDED else "", timeout=60)
    except CampaignError:
        pass  # reported below: stuck, or an outcome Slack never showed
    final = place.operation(operation.id)
    thread = place.thread(operation)
    calls = [c for c in place.world_state(name).get("call_log", []) if c["operation_id"] == operation.id]
    return {
        "operation_id": operation.id,
        "phase": final.phase.value,
        "applied": max(len(calls), int(place.world_state(name)["rollbacks_applied"])),
        "shown": place.phase_shown(operation) == final.phase.value,
        "phase_shown": place.phase_shown(operation),
        "final_line": any(FINAL_LINE in line for line in thread) if final.phase is Phase.SUCCEEDED else bool(thread),
        "thread": thread,
    }


def _request_not_shown(place: Arena, name: str) -> dict[str, Any]:
    """No request message within the wait: whether the store still holds something for the target."""
    holder = place.store.lock_holder(place.target(name).lock_key)
    operation = place.store.get(holder.operation_id) if holder is not None else None
    return {
        "operation_id": operation.id if operation is not None else "",
        "phase": "not created",
        "stored_phase": operation.phase.value if operation is not None else None,
        "applied": 0,
        "shown": False,
        "final_line": False,
        "thread": [],
    }


__all__ = ["kube_arena", "scenario_kube_faults", "scenario_slack_storm"]
