"""`python -m tests.e2e_slack.scripted_bot`: `rollbot serve`, but with the scripted backend whose world is in Redis.

The kill-and-restart tests run this as a real subprocess: the environment configures it exactly as it
configures `rollbot serve` (SLACK_*, REDIS_URL, ROLLBOT_*), plus ROLLBOT_TEST_BACKEND_REDIS, where the
scripted backend keeps its revisions and rollouts so they survive a SIGKILL of the bot. Once listening it prints
`READY <url>` on stdout.

The fault campaign also sets ROLLBOT_TEST_WRITE_LOG, the name of a Redis list (in the backend's Redis): every
operation write the store accepted from this replica is appended to it, with the replica id, so a test can tell
which replica wrote what after a pause or a takeover. The backend then also tags its `roll_back` calls with the
replica id.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
from types import FrameType
from typing import Any

import redis

from bot.adapters.redis_store import RedisOperationStore
from bot.app import SystemClock, build_app
from bot.core.catalog import BackendKind
from bot.core.operations import Operation
from bot.logging import configure_logging
from bot.ports import OperationStore
from bot.settings import Settings
from tests.fakes.memory_backend import MemoryBackend, RedisWorld

log = logging.getLogger("rollbot.scripted_bot")


class WriteRecordingStore(RedisOperationStore):
    """The real Redis store; each accepted `replace` is also appended to a Redis list, tagged with the replica."""

    write_log: redis.Redis
    write_log_key: str
    replica_id: str

    def replace(self, operation: Operation, expected_version: int, *args: Any, **kwargs: Any) -> None:
        super().replace(operation, expected_version, *args, **kwargs)
        entry = {
            "replica": self.replica_id,
            "operation_id": operation.id,
            "version": operation.version,
            "fence": operation.fence,
            "executor": operation.executor,
            "phase": operation.phase.value,
        }
        try:
            self.write_log.rpush(self.write_log_key, json.dumps(entry))
        except redis.RedisError:  # the write itself succeeded: a lost log line must not turn it into a failure
            log.warning("could not log an accepted write", extra={"operation_id": operation.id})


def _store(settings: Settings, backend_redis: redis.Redis) -> OperationStore | None:
    key = os.environ.get("ROLLBOT_TEST_WRITE_LOG")
    if not key:
        return None
    store = WriteRecordingStore.from_url(settings.redis_url, SystemClock(), key_prefix=settings.redis_key_prefix)
    assert isinstance(store, WriteRecordingStore)
    store.write_log, store.write_log_key, store.replica_id = backend_redis, key, settings.replica_id
    return store


def main() -> int:
    settings = Settings()
    configure_logging(settings.log_level, stream=sys.stderr)
    backend_redis = redis.Redis.from_url(os.environ["ROLLBOT_TEST_BACKEND_REDIS"])
    caller = settings.replica_id if os.environ.get("ROLLBOT_TEST_WRITE_LOG") else None
    backend = MemoryBackend(RedisWorld(backend_redis), caller=caller)
    store = _store(settings, backend_redis)
    app = build_app(settings, backends=dict.fromkeys(BackendKind, backend), store=store)
    stopping = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    app.start()
    print(f"READY {app.url}", flush=True)
    stopping.wait()
    app.stop()
    if isinstance(store, RedisOperationStore):
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
