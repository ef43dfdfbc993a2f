"""Socket Mode: Slack's requests over an outbound WebSocket (when SLACK_APP_TOKEN is set), health on the port.

Nothing listens for Slack here: Bolt's `SocketModeHandler` calls `apps.connections.open` with the app-level
token and acks envelopes on the socket (no signatures; the trust is the TLS connection). The HTTP port still
serves `/healthz`, `/readyz`, `/metrics` and the webhooks (bot/adapters/http_server.py, without `/slack/events`).

Readiness is "the socket is connected" plus the bot's own check (Redis). Slack asks clients to reconnect every
few hours; a short gap must not flap readiness, so a connection lost less than `reconnect_grace` ago still
counts as connected (slack.md §8).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

import structlog
from prometheus_client import CollectorRegistry
from slack_bolt import App
from slack_bolt.adapter.socket_mode import SocketModeHandler

from bot.adapters.http_server import ReadinessAnswer, Server, WsgiHandler, always_ready, serve
from bot.ports import Clock

log = structlog.get_logger(__name__)

# Slack's reconnects (refresh_requested) take about a second; a minute without a socket is an outage.
DEFAULT_RECONNECT_GRACE = timedelta(seconds=30)


class SocketObserver(Protocol):
    """Where the connection state is exported (implemented by PrometheusMetrics)."""

    def watch_socket_connection(self, is_connected: Callable[[], bool]) -> None: ...


class _SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class ConnectionReadiness:
    """Ready while the socket is connected (or was, less than `grace` ago) and `base` says ready."""

    def __init__(
        self,
        is_connected: Callable[[], bool],
        base: Callable[[], ReadinessAnswer] = always_ready,
        *,
        grace: timedelta = DEFAULT_RECONNECT_GRACE,
        clock: Clock | None = None,
    ) -> None:
        self._is_connected = is_connected
        self._base = base
        self._grace = grace
        self._clock = clock if clock is not None else _SystemClock()
        self._last_connected: datetime | None = None
        self._lock = threading.Lock()

    def connected(self) -> bool:
        """The connection as a probe sees it, with the grace window applied."""
        now = self._clock.now()
        is_connected = self._is_connected()
        with self._lock:
            if is_connected:
                self._last_connected = now
                return True
            return self._last_connected is not None and now - self._last_connected < self._grace

    def __call__(self) -> ReadinessAnswer:
        if not self.connected():
            return False, "socket mode not connected to Slack"
        return self._base()


class SocketModeRunner:
    """A Bolt app on Socket Mode plus the health/metrics server; `start()` / `stop()` like `http_server.Server`."""

    def __init__(
        self,
        bolt_app: App,
        app_token: str,
        *,
        host: str = "0.0.0.0",  # noqa: S104 (a pod serves its probes on every interface)
        port: int = 3000,
        readiness: Callable[[], ReadinessAnswer] = always_ready,
        metrics_registry: CollectorRegistry | None = None,
        observer: SocketObserver | None = None,
        reconnect_grace: timedelta = DEFAULT_RECONNECT_GRACE,
        clock: Clock | None = None,
        webhooks: WsgiHandler | None = None,
    ) -> None:
        if not app_token.startswith("xapp-"):
            raise ValueError("SLACK_APP_TOKEN must be an app-level token (xapp-…) with connections:write")
        # The SocketModeClient reuses the app's WebClient: same base URL (SLACK_API_URL) and retry handlers.
        self.handler = SocketModeHandler(bolt_app, app_token)
        self.readiness = ConnectionReadiness(self.is_connected, readiness, grace=reconnect_grace, clock=clock)
        self.server: Server = serve(
            None,
            host=host,
            port=port,
            readiness=self.readiness,
            metrics_registry=metrics_registry,
            webhooks=webhooks,
        )
        if observer is not None:
            observer.watch_socket_connection(self.is_connected)

    @property
    def url(self) -> str:
        """Base URL of the health/metrics server."""
        return self.server.url

    def is_connected(self) -> bool:
        return bool(self.handler.client.is_connected())

    def start(self) -> SocketModeRunner:
        """Serve probes, then connect (apps.connections.open + WebSocket); returns once connecting has begun."""
        self.server.start()
        self.handler.client.connect()
        log.info("socket mode connecting")
        return self

    def stop(self) -> None:
        """Close the socket (Slack then sends envelopes to the other replicas) and the probe server."""
        try:
            # slack_sdk's builtin client races with its own receiver thread on close (the socket can turn None
            # between its check and its close); the connection is going away either way.
            with contextlib.suppress(AttributeError, OSError):
                self.handler.client.close()
        finally:
            self.server.stop()

    def __enter__(self) -> SocketModeRunner:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
