"""Prometheus metrics: what the flow counts (`ports.Metrics`), what Slack answered, and how fast we acked.

Every metric lives in the registry passed in, never the process-global one, so tests and a second app in the
same process get their own counters. `/metrics` (bot/adapters/http_server.py) renders that registry.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Rollouts take seconds (a Deployment of 3 pods) to many minutes (an ECS service draining connections).
ROLLOUT_BUCKETS = (5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0)
# Slack gives up after 3 s; anything past ~1 s deserves an alert, so the buckets are dense below that.
ACK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0)
# Incident ids already counted as opened: far more than open at once, so a recent one is never counted twice.
OPENED_IDS_REMEMBERED = 10_000


class PrometheusMetrics:
    """Implements `ports.Metrics` and the adapters' observers (SlackApiObserver, RequestObserver, SocketObserver)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self._opened_ids: OrderedDict[str, None] = OrderedDict()
        self._opened_lock = threading.Lock()
        self.commands = Counter("rollbot_commands", "Slash commands received, by verb.", ["verb"], registry=registry)
        self.approvals = Counter(
            "rollbot_approvals",
            "Approval reactions and clicks, by outcome (counted, withdrawn, rejected, refused, ignored).",
            ["outcome"],
            registry=registry,
        )
        self.operations = Counter(
            "rollbot_operations",
            "Operations entering a phase, by backend and phase.",
            ["backend", "phase"],
            registry=registry,
        )
        self.rollout_duration = Histogram(
            "rollbot_rollout_duration_seconds",
            "From the start of execution to the final phase, by backend and final phase.",
            ["backend", "phase"],
            buckets=ROLLOUT_BUCKETS,
            registry=registry,
        )
        self.incidents_opened = Counter(
            "rollbot_incidents_opened",
            "Incident cards posted, by backend and reason.",
            ["backend", "reason"],
            registry=registry,
        )
        self.incidents_resolved = Counter(
            "rollbot_incidents_resolved",
            "Incidents resolved, by backend and how they ended.",
            ["backend", "resolution"],
            registry=registry,
        )
        self.alerts_unmatched = Counter(
            "rollbot_alerts_unmatched",
            "Alertmanager alerts that name no target rollbot knows (logged, never posted), by why.",
            ["reason"],
            registry=registry,
        )
        self.webhook_requests = Counter(
            "rollbot_webhook_requests",
            "Requests to the webhooks (/webhooks/alertmanager, /webhooks/deploy), by endpoint and HTTP status.",
            ["endpoint", "status"],
            registry=registry,
        )
        self.detection_latency_seconds = Histogram(
            "rollbot_detection_latency_seconds",
            "From the moment a failure rule became true to the incident card's post.",
            ["backend"],
            buckets=(0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300),
            registry=registry,
        )
        self.slack_api_errors = Counter(
            "rollbot_slack_api_errors",
            "Slack Web API calls answered with ok=false (or failed in transport), by method and error code.",
            ["method", "error"],
            registry=registry,
        )
        self.slack_ratelimited_total = Counter(
            "rollbot_slack_ratelimited",
            "HTTP 429 answers from the Slack Web API (each retry counts).",
            registry=registry,
        )
        self.slack_retry_after = Counter(
            "rollbot_slack_retry_after_seconds",
            "Seconds Slack asked us to wait (Retry-After), summed.",
            registry=registry,
        )
        self.slack_ratelimited_by_method = Counter(
            "rollbot_slack_ratelimited_calls",
            "HTTP 429 answers from the Slack Web API, by method (each one is waited out and sent again).",
            ["method"],
            registry=registry,
        )
        self.slack_calls_queued_now = Gauge(
            "rollbot_slack_calls_queued",
            "Slack calls waiting for the outbound budget, by priority (urgent, normal, progress).",
            ["priority"],
            registry=registry,
        )
        self.slack_calls_in_flight_now = Gauge(
            "rollbot_slack_calls_in_flight",
            "Slack calls being sent, by priority.",
            ["priority"],
            registry=registry,
        )
        self.slack_progress_dropped = Counter(
            "rollbot_slack_progress_coalesced",
            "Progress updates not sent: a newer one replaced them, or the budget stayed spent.",
            registry=registry,
        )
        self.slack_requests = Histogram(
            "rollbot_slack_request_duration_seconds",
            "Time to answer a request from Slack on /slack/events (the ack latency), by kind and HTTP status.",
            ["kind", "status"],
            buckets=ACK_BUCKETS,
            registry=registry,
        )
        self.socket_connected = Gauge(
            "rollbot_socket_mode_connected",
            "1 while the Socket Mode connection to Slack is open (Socket Mode only).",
            registry=registry,
        )

    # ports.Metrics

    def command_received(self, verb: str) -> None:
        self.commands.labels(verb=verb).inc()

    def approval_recorded(self, outcome: str) -> None:
        self.approvals.labels(outcome=outcome).inc()

    def phase_entered(self, backend: str, phase: str) -> None:
        self.operations.labels(backend=backend, phase=phase).inc()

    def rollout_finished(self, backend: str, phase: str, duration_seconds: float) -> None:
        self.rollout_duration.labels(backend=backend, phase=phase).observe(duration_seconds)

    # IncidentFlow (bot/ports.py: IncidentMetrics)

    def incident_opened(self, backend: str, reason: str, incident_id: str) -> bool:
        with self._opened_lock:
            if incident_id in self._opened_ids:
                return False
            self._opened_ids[incident_id] = None
            if len(self._opened_ids) > OPENED_IDS_REMEMBERED:
                self._opened_ids.popitem(last=False)
        self.incidents_opened.labels(backend=backend, reason=reason).inc()
        return True

    def incident_resolved(self, backend: str, resolution: str) -> None:
        self.incidents_resolved.labels(backend=backend, resolution=resolution).inc()

    def detection_latency(self, backend: str, seconds: float) -> None:
        self.detection_latency_seconds.labels(backend=backend).observe(seconds)

    # Webhooks (bot/ports.py: IntakeMetrics)

    def alert_unmatched(self, reason: str) -> None:
        self.alerts_unmatched.labels(reason=reason).inc()

    def webhook_handled(self, endpoint: str, status: int) -> None:
        self.webhook_requests.labels(endpoint=endpoint, status=str(status)).inc()

    # SlackChat (bot/adapters/slack_chat.py: SlackApiObserver)

    def slack_api_error(self, method: str, error: str) -> None:
        self.slack_api_errors.labels(method=method, error=error).inc()

    def slack_ratelimited(self, method: str, retry_after_seconds: float) -> None:
        self.slack_ratelimited_total.inc()
        self.slack_ratelimited_by_method.labels(method=method).inc()
        self.slack_retry_after.inc(retry_after_seconds)

    # SlackOutbox (bot/adapters/slack_outbox.py: OutboxObserver)

    def slack_calls_queued(self, priority: str, delta: int) -> None:
        self.slack_calls_queued_now.labels(priority=priority).inc(delta)

    def slack_calls_in_flight(self, priority: str, delta: int) -> None:
        self.slack_calls_in_flight_now.labels(priority=priority).inc(delta)

    def slack_progress_coalesced(self) -> None:
        self.slack_progress_dropped.inc()

    # The HTTP server (bot/adapters/http_server.py: RequestObserver)

    def slack_request_handled(self, kind: str, status: int, seconds: float) -> None:
        self.slack_requests.labels(kind=kind, status=str(status)).observe(seconds)

    # Socket Mode (bot/adapters/socket_mode.py: SocketObserver)

    def watch_socket_connection(self, is_connected: Callable[[], bool]) -> None:
        """The gauge asks the connection at scrape time, so it is never stale."""
        self.socket_connected.set_function(lambda: 1.0 if is_connected() else 0.0)
