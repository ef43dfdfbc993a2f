"""The arena of the fault campaign: real bot replicas, a real Redis, the fake Slack and a scripted world.

Each replica is `python -m tests.e2e_slack.scripted_bot` (that is `rollbot serve` with the scripted backend) in
a process group of its own, so the campaign can SIGKILL, SIGSTOP and SIGCONT it like an orchestrator would,
and always reaps it. A replica talks to Slack with a bot token of its own, so the fake's call log says which
replica made every Web API call; its accepted store writes and its backend calls are logged, tagged with its
id, in the world's Redis (see `scripted_bot`). The operations live in the "store" Redis, which a scenario may
restart; the scripted world lives in a second Redis that never fails, as a real cluster would not with it.

Waits poll the state they wait for (Redis, the fake's records, a replica's log) and return as soon as it holds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import redis
import yaml

from bot.adapters.redis_store import RedisOperationStore
from bot.app import SystemClock
from bot.core.catalog import Catalog, Target, parse_catalog
from bot.core.operations import METADATA_EVENT_TYPE, Operation, OperationId
from sandbox.redis_server import RedisServer
from sandbox.slack.driver import Ack, SlackDriver
from sandbox.slack.ratelimits import RateLimitMode
from sandbox.slack.records import Message
from sandbox.slack.seed import ALICE, BOB, BOT_ID, BOT_SCOPES, BOT_USER_ID, CAROL, INCIDENT, SIGNING_SECRET, Token
from sandbox.slack.server import FakeSlack
from tests.fakes.memory_backend import MemoryBackend, RedisWorld, RolloutScript

REPO = Path(__file__).resolve().parents[2]
WRITE_LOG_KEY = "faultcampaign:writes"
# Generous for two shared cores; every wait returns as soon as its condition holds.
WAIT = 20.0
POLL = 0.01
STARTUP_SECONDS = 30.0

T = TypeVar("T")


class CampaignError(RuntimeError):
    """A wait that did not come true: the message says what was expected and what was seen."""


def eventually(predicate: Callable[[], T | None], timeout: float = WAIT, what: str = "condition") -> T:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise CampaignError(f"{what}: not within {timeout:.0f} s")
        time.sleep(POLL)


def catalog_document(targets: dict[str, int]) -> dict[str, Any]:
    """A catalog of Deployments `name → approvals required`; ALICE requests, BOB and CAROL approve."""
    return {
        "defaults": {
            "approvals": {
                "required": 1,
                "approvers": [ALICE, BOB, CAROL],
                "allow_self_approval": False,
                "expires_after": "15m",
            }
        },
        "targets": {
            name: {
                "backend": "kubernetes",
                "kind": "Deployment",
                "name": name,
                "namespace": "faults",
                "approvals": {"required": required},
            }
            for name, required in targets.items()
        },
    }


@dataclass
class Replica:
    """One `rollbot serve` process; signals go to its own process group."""

    name: str
    token: str
    process: subprocess.Popen[str]
    log_path: Path
    url: str = ""
    stopped: bool = False

    @property
    def events_url(self) -> str:
        return f"{self.url}/slack/events"

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def signal(self, signum: signal.Signals) -> None:
        if self.alive:
            os.killpg(self.process.pid, signum)
        self.stopped = signum is signal.SIGSTOP

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def log_size(self) -> int:
        return self.log_path.stat().st_size if self.log_path.exists() else 0

    def log_since(self, offset: int) -> str:
        with self.log_path.open("rb") as log:
            log.seek(offset)
            return log.read().decode("utf-8", "replace")

    def terminate(self) -> None:
        """Stop for good: SIGCONT first (a stopped process ignores SIGTERM), then SIGTERM, then SIGKILL."""
        if not self.alive:
            return
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()


@dataclass
class Arena:
    """Everything one scenario runs against; build it with `arena(...)`."""

    fake: FakeSlack
    store_url: str
    world_url: str
    catalog: Catalog
    catalog_path: Path
    workdir: Path
    lease: str
    sweep_interval: str
    store: RedisOperationStore
    world_redis: redis.Redis
    backend: MemoryBackend
    store_server: Any = None  # what `store_server(workdir)` returned, for scenarios that hurt it
    # The fake enforces no rate limits by default, and Slack's real budget would only stretch the campaign;
    # the load bench switches the fake's limits on and runs the replicas' budget at the fake's speed.
    slack_budget_scale: float = 60.0
    slack_replicas: int = 1
    replicas: dict[str, Replica] = field(default_factory=dict)
    drivers: dict[str, SlackDriver] = field(default_factory=dict)

    # --- replicas ----------------------------------------------------------------------------------------

    def spawn(self, name: str) -> Replica:
        token = f"xoxb-0001-{name}"
        self.fake.workspace.tokens[token] = Token(token, "bot", BOT_USER_ID, BOT_SCOPES, bot_id=BOT_ID)
        env = {key: value for key, value in os.environ.items() if not key.lower().endswith("_proxy")} | {
            "PYTHONPATH": str(REPO),
            "SLACK_BOT_TOKEN": token,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": self.fake.api_url,
            "REDIS_URL": self.store_url,
            "ROLLBOT_CONFIG": str(self.catalog_path),
            "ROLLBOT_HOST": "127.0.0.1",
            "ROLLBOT_PORT": "0",
            "ROLLBOT_REPLICA_ID": name,
            "ROLLBOT_LEASE": self.lease,
            "ROLLBOT_SWEEP_INTERVAL": self.sweep_interval,
            "ROLLBOT_ROLLOUT_TIMEOUT": "2m",
            "ROLLBOT_TEST_BACKEND_REDIS": self.world_url,
            "ROLLBOT_TEST_WRITE_LOG": WRITE_LOG_KEY,
            "ROLLBOT_SLACK_BUDGET_SCALE": str(self.slack_budget_scale),
            "ROLLBOT_SLACK_REPLICAS": str(self.slack_replicas),
        }
        log_path = self.workdir / f"{name}.log"
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "tests.e2e_slack.scripted_bot"],
                cwd=REPO,
                env=env,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                start_new_session=True,  # its own process group: signals reach it and nothing else
            )
        replica = Replica(name=name, token=token, process=process, log_path=log_path)
        self.replicas[name] = replica
        replica.url = _read_ready(process, log_path)
        self.drivers[name] = SlackDriver(replica.events_url, SIGNING_SECRET, self.fake)
        return replica

    def spawn_all(self, names: list[str]) -> list[Replica]:
        """Start several replicas at once (each start spends seconds importing)."""
        with ThreadPoolExecutor(max_workers=len(names)) as starters:
            return list(starters.map(self.spawn, names))

    def live(self) -> list[Replica]:
        return [r for r in self.replicas.values() if r.alive and not r.stopped]

    def retire(self, name: str) -> None:
        """Forget a replica that was killed (its driver too)."""
        driver = self.drivers.pop(name, None)
        if driver is not None:
            driver.close()
        replica = self.replicas.pop(name)
        replica.terminate()

    # --- targets and the world ----------------------------------------------------------------------------

    def target(self, name: str) -> Target:
        target = self.catalog.get(name)
        assert target is not None, name
        return target

    def arrange(self, name: str, revisions: int, script: RolloutScript) -> None:
        self.backend.arrange(self.target(name), revisions=revisions, script=script)

    def world_state(self, name: str) -> dict[str, Any]:
        raw = self.world_redis.get("fakebackend:" + self.target(name).lock_key)
        return json.loads(raw) if raw is not None else {}

    # --- the operations as the store has them --------------------------------------------------------------

    def operation(self, operation_id: OperationId) -> Operation:
        operation = self.store.get(operation_id)
        assert operation is not None, operation_id
        return operation

    def accepted_writes(self) -> list[dict[str, Any]]:
        return [json.loads(entry) for entry in self.world_redis.lrange(WRITE_LOG_KEY, 0, -1)]

    # --- Slack ---------------------------------------------------------------------------------------------

    def request(self, via: str, target: str, text: str | None = None) -> tuple[Ack, Operation]:
        """ALICE types `/rollback <target>` on replica `via`; returns the ack and the operation it created."""
        lock_key = self.target(target).lock_key
        before = self.store.lock_holder(lock_key)
        ack = self.drivers[via].slash_command(text or target, user=ALICE, channel=INCIDENT)
        if not ack.ok:
            raise CampaignError(
                f"/rollback {target} was not acked: {ack.status} {ack.transport_error or ack.text[:200]}"
            )

        def created() -> Operation | None:
            holder = self.store.lock_holder(lock_key)
            if holder is None or (before is not None and holder.operation_id == before.operation_id):
                return None
            operation = self.store.get(holder.operation_id)
            return operation if operation is not None and operation.request_message is not None else None

        return ack, eventually(created, what=f"the request message of /rollback {target}")

    def request_message(self, operation: Operation) -> Message:
        assert operation.request_message is not None
        return self.fake.message(operation.request_message.channel, operation.request_message.ts)

    def phase_shown(self, operation: Operation) -> str:
        metadata = self.request_message(operation).metadata or {}
        return str(metadata.get("event_payload", {}).get("phase"))

    def thread(self, operation: Operation) -> list[str]:
        assert operation.request_message is not None
        ref = operation.request_message
        return [m.all_text() for m in self.fake.messages(ref.channel, thread_ts=ref.ts)]

    def wait_for_phase(self, operation: Operation, phase: str, timeout: float = WAIT) -> None:
        eventually(
            lambda: self.phase_shown(operation) == phase,
            timeout,
            what=f"{operation.id} shown as {phase} (shown: {self.phase_shown(operation)})",
        )

    def wait_for_line(self, operation: Operation, containing: str, timeout: float = WAIT) -> None:
        eventually(
            lambda: any(containing in line for line in self.thread(operation)),
            timeout,
            what=f"a thread line of {operation.id} containing {containing!r}",
        )

    def replies_to(self, user: str, containing: str) -> list[str]:
        """What `user` was told: response_url posts and ephemerals containing `containing`."""
        texts = [r.text + str((r.body or {}).get("blocks", "")) for r in self.fake.responses("commands", user=user)]
        texts += [e.all_text() for e in self.fake.ephemerals(user=user)]
        return [text for text in texts if containing in text]

    def slack_calls_by(self, replica: Replica, after_seq: int = 0) -> list[str]:
        """The Web API methods `replica` called after the call numbered `after_seq`."""
        return [c.method for c in self.fake.calls() if c.token == replica.token and c.seq > after_seq]

    def last_call_seq(self) -> int:
        calls = self.fake.calls()
        return calls[-1].seq if calls else 0

    def request_messages(self) -> list[Message]:
        return [m for m in self.fake.messages(INCIDENT) if (m.metadata or {}).get("event_type") == METADATA_EVENT_TYPE]


def _read_ready(process: subprocess.Popen[str], log_path: Path) -> str:
    """The URL from the replica's `READY <url>` line; fails with its log when it died or hung."""
    assert process.stdout is not None
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(process.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    reader.join(STARTUP_SECONDS)
    line = lines[0] if lines else ""
    if not line.startswith("READY "):
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        tail = log_path.read_text(encoding="utf-8", errors="replace")[-2000:] if log_path.exists() else ""
        raise CampaignError(f"a replica did not start (first line {line!r}); its log ends:\n{tail}")
    return line.split()[1]


@contextmanager
def arena(
    targets: dict[str, int],
    *,
    lease: str = "1s",
    sweep_interval: str = "PT0.3S",
    store_server: Callable[[Path], Any] | None = None,
    document: dict[str, Any] | None = None,
    slack_rate_limits: RateLimitMode = "off",
    slack_scale: float = 1.0,
    slack_replicas: int = 1,
) -> Iterator[Arena]:
    """Start the servers (the store Redis from `store_server(workdir)` if given), yield the arena, stop it all.

    `document` replaces the catalog made from `targets`; with `slack_rate_limits="strict"` the fake enforces
    Slack's limits `slack_scale` times faster, and the replicas' budget runs at that speed too, split among
    `slack_replicas` (set it to the number of replicas the scenario starts).
    """
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rollbot-faults-")))
        world_server = stack.enter_context(RedisServer())
        started_store = stack.enter_context(RedisServer() if store_server is None else store_server(workdir))
        store_url = started_store.url()
        fake = stack.enter_context(FakeSlack(rate_limits=slack_rate_limits, rate_limit_scale=slack_scale))
        document = document if document is not None else catalog_document(targets)
        catalog_path = workdir / "catalog.yaml"
        catalog_path.write_text(yaml.safe_dump(document), encoding="utf-8")
        store = RedisOperationStore.from_url(store_url, SystemClock())
        stack.callback(store.close)
        world_redis = redis.Redis.from_url(world_server.url())
        stack.callback(world_redis.close)
        place = Arena(
            fake=fake,
            store_url=store_url,
            world_url=world_server.url(),
            catalog=parse_catalog(document),
            catalog_path=catalog_path,
            workdir=workdir,
            lease=lease,
            sweep_interval=sweep_interval,
            store=store,
            world_redis=world_redis,
            backend=MemoryBackend(RedisWorld(world_redis)),
            store_server=started_store,
            slack_budget_scale=slack_scale if slack_rate_limits == "strict" else 60.0,
            slack_replicas=slack_replicas,
        )
        try:
            yield place
        finally:
            for driver in place.drivers.values():
                driver.close()
            for replica in place.replicas.values():
                replica.terminate()
