"""A wired bot while it runs: `start()` resumes what a previous process left in flight and serves; `stop()` stops
serving and watching, drains acknowledged work within its grace periods and leaves in-flight operations in Redis
for the next process. `bot.app.build_app` makes one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from slack_bolt import App

from bot.adapters.http_server import Server
from bot.adapters.prometheus_metrics import PrometheusMetrics
from bot.adapters.socket_mode import SocketModeRunner
from bot.flows import RollbackFlow
from bot.flows.auto_rollback import AutoRollbackFlow
from bot.flows.incident_groups import MassFailures
from bot.flows.incidents import IncidentFlow
from bot.flows.watching import ContextWatching
from bot.ports import Chat, OperationStore
from bot.settings import Settings

log = logging.getLogger("rollbot.app")

# How long stop() waits for executor threads to notice it; a rollout still running stays in Redis for takeover.
STOP_GRACE_SECONDS = 5.0
# How long stop() lets acknowledged request work (commands, votes) finish; what is left is parked for the other
# replicas. Well inside Kubernetes' default 30 s termination grace period.
REQUEST_DRAIN_SECONDS = 10.0


@dataclass
class RollbotApp:
    """A wired bot. `start()` / `stop()`; `url` is the HTTP base URL once started (HTTP mode)."""

    settings: Settings
    bolt: App
    flow: RollbackFlow
    store: OperationStore
    chat: Chat
    metrics: PrometheusMetrics
    server: Server | None
    rollout_executor: ThreadPoolExecutor
    request_executor: ThreadPoolExecutor
    vote_executor: ThreadPoolExecutor
    report_executor: ThreadPoolExecutor
    # Socket Mode: the runner owns the WebSocket and the probe server (then `server` is None).
    socket_runner: SocketModeRunner | None = None
    _closers: list[Callable[[], None]] = field(default_factory=list)
    incidents: IncidentFlow | None = None
    mass_failures: MassFailures | None = None
    auto: AutoRollbackFlow | None = None
    watching: ContextWatching | None = None
    _sweeper: threading.Thread | None = None
    _stopping: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        """Base URL of the HTTP server: Slack's endpoint and probes, or only the probes in Socket Mode."""
        if self.socket_runner is not None:
            return self.socket_runner.url
        assert self.server is not None
        return self.server.url

    @property
    def events_url(self) -> str:
        return f"{self.url}/slack/events"

    def start(self) -> RollbotApp:
        resumed = self.flow.resume_in_flight()
        if resumed:
            log.info("resuming operations left in flight", extra={"count": resumed})
        if self.socket_runner is not None:
            self.socket_runner.start()
        elif self.server is not None:
            self.server.start()
        self._sweeper = threading.Thread(target=self._sweep_forever, name="rollbot-sweeper", daemon=True)
        self._sweeper.start()
        if self.watching is not None:
            self.watching.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self.watching is not None:
            self._quietly(self.watching.stop)
        self.flow.stop()
        if self.socket_runner is not None:
            self._quietly(self.socket_runner.stop)
        elif self.server is not None:
            self._quietly(self.server.stop)
        if self._sweeper is not None:
            self._sweeper.join(timeout=5)
        # Work Slack already got an ack for is finished, not dropped: the queue drains within the grace period,
        # and whatever is still queued then stays parked in Redis, handed to the other replicas by goodbye.
        deadline = time.monotonic() + REQUEST_DRAIN_SECONDS
        for gestures in (self.vote_executor, self.request_executor):
            gestures.shutdown(wait=False)
            _join_workers(gestures, timeout=max(0.0, deadline - time.monotonic()))
            gestures.shutdown(wait=False, cancel_futures=True)
        self._quietly(self.flow.say_goodbye)
        # Watches notice `flow.stop()` at their next observation and hand their rollout over.
        self.rollout_executor.shutdown(wait=False, cancel_futures=True)
        _join_workers(self.rollout_executor, timeout=STOP_GRACE_SECONDS)
        # The lines of what was done (the hand-over lines too) go out within the grace period.
        self.report_executor.shutdown(wait=False)
        _join_workers(self.report_executor, timeout=STOP_GRACE_SECONDS)
        self.report_executor.shutdown(wait=False, cancel_futures=True)
        for close in self._closers:
            self._quietly(close)

    def finish_gestures(self) -> None:
        """Stop taking gestures and wait until those acknowledged so far are handled and reported (tests)."""
        for pool in (self.request_executor, self.vote_executor, self.report_executor):
            pool.shutdown(wait=True)

    def __enter__(self) -> RollbotApp:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _sweep_forever(self) -> None:
        interval = self.settings.sweep_interval.total_seconds()
        while not self._stopping.wait(interval):
            try:
                self.flow.sweep()
                if self.mass_failures is not None:
                    self.mass_failures.sweep()
                if self.auto is not None:  # due countdowns fire on whichever replica sweeps first
                    self.auto.sweep()
            except Exception:  # Redis hiccup: the next sweep tries again
                log.exception("sweep failed")

    @staticmethod
    def _quietly(action: Callable[[], object]) -> None:
        try:
            action()
        except Exception:
            log.exception("shutdown step failed")


def _join_workers(executor: ThreadPoolExecutor, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for thread in list(getattr(executor, "_threads", ())):
        thread.join(max(0.0, deadline - time.monotonic()))
