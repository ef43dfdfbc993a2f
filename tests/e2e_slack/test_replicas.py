"""Several bot replicas on one Redis: an approved rollback runs exactly once, and survives a replica dying."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
import redis

from bot.core.operations import Approval, Phase
from sandbox.slack.driver import SlackDriver
from sandbox.slack.seed import BOB, BOT_TOKEN, CAROL, INCIDENT, SIGNING_SECRET
from tests.e2e_slack.conftest import (
    arrange_all,
    eventually,
    request_rollback,
    thread_texts,
    wait_for_phase,
    wait_for_thread_line,
)
from tests.fakes.memory_backend import MemoryBackend, RedisWorld, RolloutScript

REPO = Path(__file__).resolve().parents[2]


def test_two_replicas_racing_on_one_approval_execute_it_once(fake_slack, make_bot, backend, catalog) -> None:
    first, second = make_bot(replica_id="replica-a"), make_bot(replica_id="replica-b")
    arrange_all(backend, catalog, RolloutScript(steps=3, step_delay=0.05))
    with (
        SlackDriver(first.events_url, SIGNING_SECRET, fake_slack) as to_first,
        SlackDriver(second.events_url, SIGNING_SECRET, fake_slack) as to_second,
    ):
        request = request_rollback(to_first, fake_slack, first, "fluentd")  # needs 2 approvals
        # The two approvals land on different replicas at the same moment; both then try to execute.
        with ThreadPoolExecutor(max_workers=2) as pool:
            pool.submit(to_first.reaction_added, BOB, "white_check_mark", INCIDENT, request.ts)
            pool.submit(to_second.reaction_added, CAROL, "white_check_mark", INCIDENT, request.ts)
        eventually(lambda: first.store.get(request.operation.id).phase is not Phase.AWAITING_APPROVAL)
        for app in (first, second, first, second):
            app.rollout_executor.submit(app.flow.execute, request.operation.id)
        wait_for_phase(fake_slack, request, "succeeded")
        wait_for_thread_line(fake_slack, request, "rolled back to revision 1")
    target = catalog.get("fluentd")
    assert backend.roll_back_calls(target) == 1
    assert backend.rollbacks_applied(target) == 1
    assert sum("rolling back" in line for line in thread_texts(fake_slack, request)) == 1


class _BotProcess:
    """`rollbot serve` with the Redis-backed scripted backend, as a real process we can SIGKILL."""

    def __init__(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.e2e_slack.scripted_bot"],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=None,  # inherited: pytest captures it and shows it when a test fails
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()  # blocks until READY (or EOF if it died)
        if not line.startswith("READY "):
            self.process.kill()
            raise RuntimeError(f"the bot did not start: {line!r}")
        self.url = line.split()[1]

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()


@pytest.fixture
def spawn(fake_slack, redis_url, catalog_path) -> Iterator:
    processes: list[_BotProcess] = []

    def start(replica_id: str) -> _BotProcess:
        env = {key: value for key, value in os.environ.items() if not key.lower().endswith("_proxy")} | {
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": fake_slack.api_url,
            "REDIS_URL": redis_url,
            "ROLLBOT_CONFIG": str(catalog_path),
            "ROLLBOT_HOST": "127.0.0.1",
            "ROLLBOT_PORT": "0",
            "ROLLBOT_REPLICA_ID": replica_id,
            "ROLLBOT_LEASE": "1s",
            "ROLLBOT_SWEEP_INTERVAL": "1",
            "ROLLBOT_TEST_BACKEND_REDIS": redis_url,
            "ROLLBOT_SLACK_BUDGET_SCALE": "60",  # the fake enforces no limits here, as in the in-process bots
        }
        process = _BotProcess(env)
        processes.append(process)
        return process

    yield start
    for process in processes:
        process.stop()


class _StoreView:
    """Just enough of a RollbotApp for `request_rollback`: reading operations from the shared Redis."""

    def __init__(self, redis_url: str) -> None:
        from bot.adapters.redis_store import RedisOperationStore
        from bot.app import SystemClock

        self.store = RedisOperationStore.from_url(redis_url, SystemClock())


def test_a_replica_killed_mid_rollout_is_taken_over_and_the_thread_finishes(
    fake_slack, redis_url, catalog, spawn
) -> None:
    backend = MemoryBackend(RedisWorld(redis.Redis.from_url(redis_url)))
    arrange_all(backend, catalog, RolloutScript(steps=3, hold=True))
    target = catalog.get("workshop")
    view = _StoreView(redis_url)

    doomed = spawn("replica-doomed")
    with SlackDriver(f"{doomed.url}/slack/events", SIGNING_SECRET, fake_slack) as slack:
        request = request_rollback(slack, fake_slack, view, "workshop 1")
        slack.reaction_added(BOB, "white_check_mark", INCIDENT, request.ts)
        wait_for_thread_line(fake_slack, request, "1/3 pods updated")
    doomed.kill()
    assert view.store.get(request.operation.id).phase is Phase.ROLLING_BACK

    spawn("replica-heir")
    backend.release(target)
    wait_for_thread_line(fake_slack, request, "took over", timeout=20)
    wait_for_phase(fake_slack, request, "succeeded", timeout=20)
    wait_for_thread_line(fake_slack, request, "rolled back to revision 1")
    operation = view.store.get(request.operation.id)
    assert operation.executor == "replica-heir"
    assert backend.rollbacks_applied(target) == 1
    assert backend.current_revision(target) == 1
    for message in fake_slack.thread(INCIDENT, request.ts):
        assert message.metadata is not None
        assert message.metadata["event_payload"]["operation_id"] == request.operation.id


def test_a_replica_killed_between_approval_and_claim_is_resumed_at_start_up(
    fake_slack, redis_url, catalog, spawn
) -> None:
    # No replica at all is running when the approval is stored: the next one to start executes it.
    backend = MemoryBackend(RedisWorld(redis.Redis.from_url(redis_url)))
    arrange_all(backend, catalog, RolloutScript(steps=2))
    view = _StoreView(redis_url)
    first = spawn("replica-1")
    with SlackDriver(f"{first.url}/slack/events", SIGNING_SECRET, fake_slack) as slack:
        request = request_rollback(slack, fake_slack, view, "bootcamp")
        eventually(lambda: view.store.get(request.operation.id).request_message is not None)
    first.kill()
    operation = view.store.get(request.operation.id)
    approved = operation.model_copy(
        update={
            "phase": Phase.APPROVED,
            "approvals": (Approval(user=BOB, at=operation.created_at),),
            "version": operation.version + 1,
        }
    )
    view.store.replace(approved, expected_version=operation.version)
    spawn("replica-2")
    wait_for_phase(fake_slack, request, "succeeded", timeout=20)
    assert backend.rollbacks_applied(catalog.get("bootcamp")) == 1


def test_a_replica_shutting_down_hands_its_rollout_over_at_once(fake_slack, make_bot, backend, catalog) -> None:
    leaving = make_bot(replica_id="replica-leaving", lease=timedelta(minutes=5))
    arrange_all(backend, catalog, RolloutScript(steps=3, hold=True))
    with SlackDriver(leaving.events_url, SIGNING_SECRET, fake_slack) as slack:
        request = request_rollback(slack, fake_slack, leaving, "workshop")
        slack.reaction_added(BOB, "white_check_mark", INCIDENT, request.ts)
        wait_for_thread_line(fake_slack, request, "1/3 pods updated")
    leaving.stop()  # SIGTERM: the lease (5 minutes) is given back instead of running out
    wait_for_thread_line(fake_slack, request, "restarting")
    staying = make_bot(replica_id="replica-staying")
    wait_for_thread_line(fake_slack, request, "took over")
    backend.release(catalog.get("workshop"))
    wait_for_phase(fake_slack, request, "succeeded")
    assert staying.store.get(request.operation.id).executor == "replica-staying"
    assert backend.rollbacks_applied(catalog.get("workshop")) == 1
