"""`python -m tests.e2e_slack.scripted_bot`: `rollbot serve`, but with the scripted backend whose world is in Redis.

The kill-and-restart tests run this as a real subprocess: the environment configures it exactly as it
configures `rollbot serve` (SLACK_*, REDIS_URL, ROLLBOT_*), plus ROLLBOT_TEST_BACKEND_REDIS, where the
scripted backend keeps its revisions and rollouts so they survive a SIGKILL of the bot. Once listening it prints
`READY <url>` on stdout.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from types import FrameType

import redis

from bot.app import build_app
from bot.core.catalog import BackendKind
from bot.logging import configure_logging
from bot.settings import Settings
from tests.fakes.memory_backend import MemoryBackend, RedisWorld


def main() -> int:
    settings = Settings()
    configure_logging(settings.log_level, stream=sys.stderr)
    world = RedisWorld(redis.Redis.from_url(os.environ["ROLLBOT_TEST_BACKEND_REDIS"]))
    backend = MemoryBackend(world)
    app = build_app(settings, backends=dict.fromkeys(BackendKind, backend))
    stopping = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    app.start()
    print(f"READY {app.url}", flush=True)
    stopping.wait()
    app.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
