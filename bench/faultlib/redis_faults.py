"""Scenarios that hurt the bot's Redis: a restart while votes arrive, a Sentinel failover while a rollout runs.

- `redis_restart`: the store Redis (append-only file, `appendfsync always`, so nothing it acknowledged is lost)
  is SIGKILLed while requests wait for their second approval, and the second approvals are delivered while it is
  down; Slack gets its 200 for each, so each must be counted once Redis is back (the flow keeps a gesture that
  hit a temporary failure and handles it again at the next sweep). Then Redis restarts on the same socket.
- `sentinel_failover`: the store is a master, a replica and three Sentinels, and the replicas use a
  `redis+sentinel://` URL. The master is SIGKILLed while one operation is ROLLING_BACK (its rollout held open)
  and another waits for its second approval, which is delivered during the failover.

Figures count approvals acknowledged by the bot against approvals the operations show, rollbacks the world
applied per operation, and whether each thread has its final line. Waits poll observed state; `seed` only chooses
which replica hears what.
"""

from __future__ import annotations

import random
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import redis

from bench.faultlib.harness import Arena, CampaignError, arena, eventually
from bot.core.operations import Operation, Phase
from sandbox.redis_server import STARTUP_TIMEOUT_SECONDS, RedisServerUnavailable, SentinelDeployment, _binary
from sandbox.slack.driver import Ack
from sandbox.slack.seed import BOB, CAROL, INCIDENT
from tests.fakes.memory_backend import RolloutScript

FINAL_LINE = "rolled back to revision"
# How long the store Redis stays down while the second votes arrive: several sweeps of the replicas.
OUTAGE_SECONDS = 1.5


def _figures(started: float, **counts: Any) -> dict[str, Any]:
    return counts | {"wall_seconds": round(time.monotonic() - started, 2)}


class DurableRedis:
    """A redis-server on a unix socket that keeps its data on disk, so it can be killed and started again.

    `appendfsync always`: every write the bot was told succeeded is on disk before the reply, as a production
    Redis with AOF would have it; a SIGKILL then loses nothing acknowledged.
    """

    def __init__(self, directory: Path) -> None:
        self._binary = _binary("redis-server")
        self.directory = directory / "store-redis"
        self.directory.mkdir(parents=True, exist_ok=True)
        self.socket_path = self.directory / "redis.sock"
        self._process: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0) -> str:
        return f"unix://{self.socket_path}?db={db}"

    def start(self) -> DurableRedis:
        options = {
            "--port": "0",
            "--unixsocket": str(self.socket_path),
            "--unixsocketperm": "700",
            "--dir": str(self.directory),
            "--save": "",
            "--appendonly": "yes",
            "--appendfsync": "always",
        }
        log = (self.directory / "server.log").open("ab")
        self._process = subprocess.Popen(
            [self._binary, *(part for pair in options.items() for part in pair)], stdout=log, stderr=log
        )
        log.close()
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while not self._answers():
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RedisServerUnavailable(f"redis-server with AOF in {self.directory} did not start")
            time.sleep(0.01)
        return self

    def _answers(self) -> bool:
        try:
            with redis.Redis(unix_socket_path=str(self.socket_path), socket_timeout=0.5) as client:
                # Loading the AOF answers LOADING: not ready until the data is back.
                return bool(client.ping())
        except (redis.RedisError, OSError):
            return False

    def kill(self) -> None:
        """SIGKILL: a crash; the AOF has every acknowledged write."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> DurableRedis:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


# --- Redis restarted mid-approval --------------------------------------------------------------------------------


def scenario_redis_restart(quick: bool, seed: int) -> dict[str, Any]:
    """Kill the store Redis while requests wait for their second approval, deliver those approvals, restart it.

    Each operation needs BOB's and CAROL's approval. BOB's is delivered and counted before the outage; CAROL's
    arrives while Redis is down (the bot still answers 200, so Slack will not send it again). Once Redis is back
    every operation must show both approvals exactly once and finish, its rollback applied once.
    """
    started = time.monotonic()
    restarts, width = (2, 2) if quick else (10, 3)
    names = [f"pay-{n}" for n in range(width)]
    rng = random.Random(seed)
    servers: list[DurableRedis] = []

    def durable(workdir: Path) -> DurableRedis:
        servers.append(DurableRedis(workdir))
        return servers[-1]

    results: list[dict[str, Any]] = []
    with arena(dict.fromkeys(names, 2), store_server=durable) as place:
        for name in names:
            place.arrange(name, revisions=restarts + 1, script=RolloutScript(steps=2))
        replicas = [r.name for r in place.spawn_all([f"replica-{n}" for n in range(3)])]
        server = servers[0]
        for _ in range(restarts):
            waiting = []
            for name in names:
                applied_before = int(place.world_state(name)["rollbacks_applied"])
                _, operation = place.request(rng.choice(replicas), name)
                ack = _vote(place, rng.choice(replicas), BOB, operation)
                eventually(
                    lambda operation=operation: _counted(place, operation) == {BOB},
                    what=f"BOB's approval of {operation.id} counted",
                )
                waiting.append((name, operation, applied_before, [BOB] if ack.ok else []))
            server.kill()
            outage_started = time.monotonic()
            acks = [_vote(place, rng.choice(replicas), CAROL, operation) for _, operation, _, _ in waiting]
            time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - outage_started)))
            server.start()
            for (name, operation, applied_before, acked_by), ack in zip(waiting, acks, strict=True):
                if ack.ok:
                    acked_by.append(CAROL)
                else:  # Slack retries a delivery that was not acknowledged: so do we, now that Redis is back
                    _vote(place, rng.choice(replicas), CAROL, operation)
                results.append(_outcome(place, name, operation, applied_before, acked_by, not_acked=int(not ack.ok)))
    return _figures(
        started,
        replicas=3,
        redis_restarts=restarts,
        operations=len(results),
        approvals_acked=sum(len(r["acked_by"]) for r in results),
        approvals_acked_while_down=sum(CAROL in r["acked_by"] for r in results),
        approvals_counted=sum(r["counted"] for r in results),
        lost_approvals=sum(r["lost"] for r in results),
        counted_twice=sum(r["counted_twice"] for r in results),
        deliveries_not_acked=sum(r["not_acked"] for r in results),
        completed=sum(r["completed"] for r in results),
        doubled=sum(r["applied"] > 1 for r in results),
        not_applied=sum(r["applied"] < 1 for r in results),
        threads_complete=sum(r["thread_complete"] for r in results),
        seconds_to_finish_after_restart_max=max((r["seconds_to_finish"] for r in results), default=0.0),
    )


def _vote(place: Arena, via: str, approver: str, operation: Operation) -> Ack:
    assert operation.request_message is not None
    return place.drivers[via].reaction_added(approver, "white_check_mark", INCIDENT, operation.request_message.ts)


def _counted(place: Arena, operation: Operation) -> set[str]:
    return {a.user for a in place.operation(operation.id).approvals}


def _outcome(
    place: Arena, name: str, operation: Operation, applied_before: int, acked_by: list[str], *, not_acked: int = 0
) -> dict[str, Any]:
    """Wait for the operation to finish (or not), then what it shows against what the bot acknowledged."""
    waited = time.monotonic()
    try:
        place.wait_for_phase(operation, "succeeded", timeout=60)
        place.wait_for_line(operation, FINAL_LINE)
    except CampaignError:
        pass  # reported below as not completed, with the phase it is stuck in
    seconds = time.monotonic() - waited
    final = place.operation(operation.id)
    users = [a.user for a in final.approvals]
    calls = [c for c in place.world_state(name).get("call_log", []) if c["operation_id"] == operation.id]
    completed = final.phase is Phase.SUCCEEDED
    return {
        "operation_id": operation.id,
        "phase": final.phase.value,
        "acked_by": acked_by,
        "counted": len(users),
        # An approval the bot acknowledged counts as lost when the operation does not show it, or never ran.
        "lost": len(acked_by) if not completed else sum(user not in users for user in acked_by),
        "counted_twice": len(users) - len(set(users)),
        "not_acked": not_acked,
        "completed": completed,
        "applied": max(len(calls), int(place.world_state(name)["rollbacks_applied"]) - applied_before),
        "thread_complete": any(FINAL_LINE in line for line in place.thread(operation)),
        "seconds_to_finish": round(seconds, 2),
    }


# --- a Sentinel failover mid-rollout ------------------------------------------------------------------------------


def scenario_sentinel_failover(quick: bool, seed: int) -> dict[str, Any]:
    """Kill the Redis master while one rollout is ROLLING_BACK and another request is being approved.

    Every round is a fresh Sentinel deployment (after a failover the old master is gone, and the store would
    wait for a replica that no longer exists) and three fresh replicas on `redis+sentinel://`.
    """
    started = time.monotonic()
    rounds = 1 if quick else 10
    rng = random.Random(seed)
    results: list[dict[str, Any]] = []
    failover_seconds: list[float] = []
    for _ in range(rounds):
        with arena({"rolling": 1, "voting": 2}, store_server=lambda _: SentinelDeployment()) as place:
            deployment = _sentinels_of(place)
            place.arrange("rolling", revisions=2, script=RolloutScript(steps=3, hold=True))
            place.arrange("voting", revisions=2, script=RolloutScript(steps=2))
            replicas = [r.name for r in place.spawn_all([f"replica-{n}" for n in range(3)])]
            _, rolling = place.request(rng.choice(replicas), "rolling")
            _vote(place, rng.choice(replicas), BOB, rolling)
            eventually(
                lambda rolling=rolling: place.operation(rolling.id).phase is Phase.ROLLING_BACK,
                what=f"{rolling.id} ROLLING_BACK",
            )
            place.wait_for_line(rolling, "pods updated")
            _, voting = place.request(rng.choice(replicas), "voting")
            first = _vote(place, rng.choice(replicas), BOB, voting)
            eventually(lambda voting=voting: _counted(place, voting) == {BOB}, what="BOB's approval counted")
            old_port = deployment.kill_master()
            killed = time.monotonic()
            second = _vote(place, rng.choice(replicas), CAROL, voting)
            deployment.wait_for_new_master(old_port)
            failover_seconds.append(time.monotonic() - killed)
            place.backend.release(place.target("rolling"))
            if not second.ok:  # Slack would deliver it again
                _vote(place, rng.choice(replicas), CAROL, voting)
            acked = [user for user, ack in ((BOB, first), (CAROL, second)) if ack.ok]
            results.append(_outcome(place, "rolling", rolling, 0, [BOB]) | {"role": "rolling"})
            results.append(
                _outcome(place, "voting", voting, 0, acked, not_acked=int(not second.ok)) | {"role": "voting"}
            )
    rolling_results = [r for r in results if r["role"] == "rolling"]
    return _figures(
        started,
        replicas=3,
        failovers=rounds,
        failover_seconds_max=round(max(failover_seconds, default=0.0), 2),
        operations=len(results),
        rollouts_mid_failover=len(rolling_results),
        rollouts_completed=sum(r["completed"] for r in rolling_results),
        completed=sum(r["completed"] for r in results),
        doubled=sum(r["applied"] > 1 for r in results),
        not_applied=sum(r["applied"] < 1 for r in results),
        threads_complete=sum(r["thread_complete"] for r in results),
        approvals_acked=sum(len(r["acked_by"]) for r in results),
        approvals_counted=sum(r["counted"] for r in results),
        lost_approvals=sum(r["lost"] for r in results),
        counted_twice=sum(r["counted_twice"] for r in results),
        deliveries_not_acked=sum(r["not_acked"] for r in results),
        stuck=[r["phase"] for r in results if not r["completed"]],
    )


def _sentinels_of(place: Arena) -> SentinelDeployment:
    """The deployment behind the arena's store URL (the arena keeps what `store_server` returned)."""
    deployment = place.store_server
    if not isinstance(deployment, SentinelDeployment):
        raise CampaignError("the arena was not started on a Sentinel deployment")
    return deployment


__all__ = ["DurableRedis", "scenario_redis_restart", "scenario_sentinel_failover"]
