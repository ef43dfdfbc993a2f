"""A private `redis-server` on a unix socket: real TTLs, Lua and SET NX, no port to collide on.

Started with `--port 0` (no TCP) and no persistence; readiness is read from the server's own log line, not
polled. Stopped through its Popen handle. Tests and the demo reach it with `server.url(db)`.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from types import TracebackType
from typing import IO

# How long a fresh redis-server may take to say it is ready (it usually needs a few milliseconds).
STARTUP_TIMEOUT_SECONDS = 10.0
# Redis' default; the redis_url fixture rotates through them so consecutive tests never share a database.
DATABASES = 16


class RedisServerUnavailable(RuntimeError):
    pass


class RedisServer:
    def __init__(self, binary: str | None = None) -> None:
        found = binary or shutil.which("redis-server")
        if found is None:
            raise RedisServerUnavailable("redis-server is not on PATH (apt-get install redis-server)")
        self._binary = found
        self._tmp = tempfile.TemporaryDirectory(prefix="rollbot-redis-")
        self.socket_path = Path(self._tmp.name) / "redis.sock"
        self._process: subprocess.Popen[str] | None = None
        self._ready = threading.Event()
        self._log: list[str] = []

    def start(self) -> RedisServer:
        options = {
            "--port": "0",  # no TCP listener at all: nothing to collide with
            "--unixsocket": str(self.socket_path),
            "--unixsocketperm": "700",
            "--save": "",
            "--appendonly": "no",
            "--dir": self._tmp.name,
            "--databases": str(DATABASES),
        }
        command = [self._binary, *(part for pair in options.items() for part in pair)]
        self._process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert self._process.stdout is not None
        threading.Thread(
            target=self._read_log, args=(self._process.stdout,), name="redis-server-log", daemon=True
        ).start()
        if not self._ready.wait(STARTUP_TIMEOUT_SECONDS) or self._process.poll() is not None:
            self.stop()
            raise RedisServerUnavailable("redis-server did not start:\n" + "".join(self._log[-20:]))
        return self

    def url(self, db: int = 0) -> str:
        return f"unix://{self.socket_path}?db={db}"

    @property
    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._tmp.cleanup()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _read_log(self, stdout: IO[str]) -> None:
        for line in stdout:
            self._log.append(line)
            # Redis 7 logs this once the unix socket is listening.
            if "ready to accept connections" in line.lower() and str(self.socket_path) in line:
                self._ready.set()
        self._ready.set()  # the process ended: wake start() up, which then sees poll() is not None
