"""Private `redis-server` processes: one on a unix socket, a 3-master Cluster, or a master watched by Sentinels.

- `RedisServer`: `--port 0` (no TCP) on a unix socket, no persistence: real TTLs, Lua and SET NX, no port to
  collide on. Tests and the demo reach it with `server.url(db)`.
- `RedisClusterNodes`: three `--cluster-enabled yes` servers on free localhost ports, joined by
  `redis-cli --cluster create` (16384 slots over three masters, no replicas). `url` names one node.
- `SentinelDeployment`: one master, one replica (`--replicaof`) and three `redis-server --sentinel` processes
  (quorum 2, `down-after-milliseconds` 1000), so a test can kill the master and watch a replica take over.
  `url` is the `redis+sentinel://` form the bot reads.

Readiness is read from each server's own log line, not polled; every process is stopped through its Popen
handle. A missing binary or a server that does not come up raises RedisServerUnavailable.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

import redis

# How long a fresh redis-server may take to say it is ready (it usually needs a few milliseconds).
STARTUP_TIMEOUT_SECONDS = 10.0
# How long a cluster or a set of Sentinels may take to agree on who is who.
CONVERGENCE_TIMEOUT_SECONDS = 15.0
# Redis' default; the redis_url fixture rotates through them so consecutive tests never share a database.
DATABASES = 16
SENTINEL_SERVICE = "mymaster"


class RedisServerUnavailable(RuntimeError):
    pass


def _binary(name: str, given: str | None = None) -> str:
    found = given or shutil.which(name)
    if found is None:
        raise RedisServerUnavailable(f"{name} is not on PATH (apt-get install redis-server)")
    return found


def free_port() -> int:
    """A localhost TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class _RedisProcess:
    """One redis-server process: started with `command`, ready once a log line contains `ready_marker`."""

    def __init__(self, command: Sequence[str], ready_marker: str, name: str) -> None:
        self._command = list(command)
        self._ready_marker = ready_marker.lower()
        self._name = name
        self._process: subprocess.Popen[str] | None = None
        self._ready = threading.Event()
        self._log: list[str] = []

    def start(self) -> None:
        self._process = subprocess.Popen(self._command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert self._process.stdout is not None
        threading.Thread(target=self._read_log, args=(self._process.stdout,), name=self._name, daemon=True).start()
        if not self._ready.wait(STARTUP_TIMEOUT_SECONDS) or self._process.poll() is not None:
            self.stop()
            raise RedisServerUnavailable(f"{self._name} did not start:\n" + "".join(self._log[-20:]))

    @property
    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def kill(self) -> None:
        """SIGKILL: the process vanishes as in a crash or a lost node."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    def log_text(self) -> str:
        return "".join(self._log)

    def _read_log(self, stdout: IO[str]) -> None:
        for line in stdout:
            self._log.append(line)
            if self._ready_marker in line.lower():
                self._ready.set()
        self._ready.set()  # the process ended: wake start() up, which then sees poll() is not None


class RedisServer:
    def __init__(self, binary: str | None = None) -> None:
        self._binary = _binary("redis-server", binary)
        self._tmp = tempfile.TemporaryDirectory(prefix="rollbot-redis-")
        self.socket_path = Path(self._tmp.name) / "redis.sock"
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
        # Redis 7 logs this once the unix socket is listening.
        self._process = _RedisProcess(command, f"ready to accept connections at {self.socket_path}", "redis-server")

    def start(self) -> RedisServer:
        self._process.start()
        return self

    def url(self, db: int = 0) -> str:
        return f"unix://{self.socket_path}?db={db}"

    @property
    def is_running(self) -> bool:
        return self._process.is_running

    def stop(self) -> None:
        self._process.stop()
        self._tmp.cleanup()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _tcp_server(binary: str, directory: Path, port: int, *extra: str) -> _RedisProcess:
    command = [
        binary,
        *("--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"),
        *("--dir", str(directory)),
        *extra,
    ]
    return _RedisProcess(command, "ready to accept connections", f"redis-server:{port}")


def _wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + CONVERGENCE_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except (redis.RedisError, OSError):
            pass  # not up yet
        time.sleep(0.05)
    raise RedisServerUnavailable(f"timed out waiting for {what}")


class _Topology:
    """Processes started together and stopped together, with a temporary directory for their files."""

    def __init__(self, prefix: str) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix=prefix)
        self.directory = Path(self._tmp.name)
        self._processes: list[_RedisProcess] = []

    def _launch(self, process: _RedisProcess) -> _RedisProcess:
        self._processes.append(process)
        process.start()
        return process

    def stop(self) -> None:
        for process in self._processes:
            process.stop()
        self._tmp.cleanup()

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> Self:
        raise NotImplementedError


class RedisClusterNodes(_Topology):
    """A real 3-master Redis Cluster on localhost; `url` points at its first node."""

    def __init__(self, masters: int = 3) -> None:
        super().__init__("rollbot-redis-cluster-")
        self._server = _binary("redis-server")
        self._cli = _binary("redis-cli")
        self.ports = [free_port() for _ in range(masters)]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}"

    def start(self) -> Self:
        for port in self.ports:
            node_dir = self.directory / str(port)
            node_dir.mkdir()
            self._launch(
                _tcp_server(
                    self._server,
                    node_dir,
                    port,
                    *("--cluster-enabled", "yes", "--cluster-port", str(free_port())),
                    *("--cluster-config-file", str(node_dir / "nodes.conf"), "--cluster-node-timeout", "2000"),
                )
            )
        created = subprocess.run(
            [
                self._cli,
                "--cluster",
                "create",
                *(f"127.0.0.1:{port}" for port in self.ports),
                *("--cluster-replicas", "0", "--cluster-yes"),
            ],
            capture_output=True,
            text=True,
            timeout=CONVERGENCE_TIMEOUT_SECONDS,
            check=False,
        )
        if created.returncode != 0:
            raise RedisServerUnavailable(f"redis-cli --cluster create failed:\n{created.stdout}{created.stderr}")
        for port in self.ports:
            _wait_until(lambda port=port: _cluster_ok(port), f"cluster node {port} to see every slot served")
        return self

    def flush(self) -> None:
        """Empty every master (what FLUSHDB is to one server)."""
        for port in self.ports:
            with redis.Redis(host="127.0.0.1", port=port) as node:
                node.flushall()


def _cluster_ok(port: int) -> bool:
    with redis.Redis(host="127.0.0.1", port=port, socket_timeout=1) as node:
        info: dict[str, Any] = node.cluster("INFO")
    return str(info.get("cluster_state")) == "ok"


class SentinelDeployment(_Topology):
    """One master, one replica and three Sentinels on localhost, ready for a failover."""

    def __init__(self, sentinels: int = 3) -> None:
        super().__init__("rollbot-redis-sentinel-")
        self._server = _binary("redis-server")
        self.master_port = free_port()
        self.replica_port = free_port()
        self.sentinel_ports = [free_port() for _ in range(sentinels)]
        self._by_port: dict[int, _RedisProcess] = {}

    def url(self, db: int = 0) -> str:
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{SENTINEL_SERVICE}/{db}"

    def start(self) -> Self:
        for port, extra in [
            (self.master_port, ()),
            (self.replica_port, ("--replicaof", "127.0.0.1", str(self.master_port))),
        ]:
            node_dir = self.directory / str(port)
            node_dir.mkdir()
            self._by_port[port] = self._launch(_tcp_server(self._server, node_dir, port, *extra))
        _wait_until(self._replica_in_sync, "the replica to sync with the master")
        for port in self.sentinel_ports:
            config = self.directory / f"sentinel-{port}.conf"
            config.write_text(
                "\n".join(
                    [
                        f"port {port}",
                        "bind 127.0.0.1",
                        f"dir {self.directory}",
                        f"sentinel monitor {SENTINEL_SERVICE} 127.0.0.1 {self.master_port} 2",
                        f"sentinel down-after-milliseconds {SENTINEL_SERVICE} 1000",
                        f"sentinel failover-timeout {SENTINEL_SERVICE} 3000",
                        f"sentinel parallel-syncs {SENTINEL_SERVICE} 1",
                        "",
                    ]
                )
            )
            command = [self._server, str(config), "--sentinel"]
            self._launch(_RedisProcess(command, "+monitor master", f"redis-sentinel:{port}"))
        _wait_until(self._sentinels_agree, "every Sentinel to know the replica and the other Sentinels")
        return self

    def master_address(self) -> tuple[str, int]:
        """Where the Sentinels say the master is now."""
        with redis.Redis(
            host="127.0.0.1", port=self.sentinel_ports[0], socket_timeout=1, decode_responses=True
        ) as sentinel:
            host, port = sentinel.sentinel_get_master_addr_by_name(SENTINEL_SERVICE)
        return str(host), int(port)

    def kill_master(self) -> int:
        """SIGKILL the current master (a crashed node); returns its port."""
        _, port = self.master_address()
        self._by_port[port].kill()
        return port

    def wait_for_new_master(self, old_port: int) -> int:
        """Block until the Sentinels have promoted another server; returns its port."""
        _wait_until(lambda: self.master_address()[1] != old_port, "the Sentinels to promote the replica")
        return self.master_address()[1]

    def _replica_in_sync(self) -> bool:
        with redis.Redis(host="127.0.0.1", port=self.replica_port, socket_timeout=1) as replica:
            info: dict[str, Any] = replica.info("replication")
        return info.get("master_link_status") == "up"

    def _sentinels_agree(self) -> bool:
        for port in self.sentinel_ports:
            with redis.Redis(host="127.0.0.1", port=port, socket_timeout=1, decode_responses=True) as sentinel:
                state: dict[str, Any] = sentinel.sentinel_master(SENTINEL_SERVICE)
            if int(state["num-slaves"]) < 1 or int(state["num-other-sentinels"]) < len(self.sentinel_ports) - 1:
                return False
        return True
