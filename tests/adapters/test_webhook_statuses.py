"""The webhooks' status codes where no Alertmanager is needed: 404 when not configured, 503 when Redis is down
(a retry helps, so Alertmanager retries), and the same request handled once Redis is back."""

from __future__ import annotations

import json
import time
import urllib.request
from datetime import UTC, datetime

import redis
from werkzeug.test import Client

from bot.adapters.http_server import SlackWsgiApp
from bot.adapters.redis_deliveries import RedisDeliveryLedger
from bot.adapters.socket_mode import SocketModeRunner
from bot.adapters.webhooks import WebhookEndpoints
from bot.core.intake import AlertmanagerPayload, DeployReport, sign
from bot.flows.intake import AlertsReceipt
from sandbox.slack import seed
from sandbox.slack.server import FakeSlack
from tests.adapters.test_http_server import socket_app

SECRET = "pipeline-secret"


class _SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class _CountingIntake:
    """The intake port, counting what reaches it."""

    def __init__(self) -> None:
        self.reports: list[DeployReport] = []

    def on_alerts(self, payload: AlertmanagerPayload) -> AlertsReceipt:
        return AlertsReceipt(handled=len(payload.alerts))

    def on_deploy(self, report: DeployReport) -> str:
        self.reports.append(report)
        return "noted"


def _signed(body: bytes) -> dict[str, str]:
    timestamp = str(int(time.time()))
    return {"X-Rollbot-Timestamp": timestamp, "X-Rollbot-Signature": sign(SECRET, timestamp, body)}


def test_without_a_token_or_secret_the_webhooks_do_not_exist():
    client = Client(SlackWsgiApp(None))
    assert client.post("/webhooks/alertmanager", data=b"{}").status_code == 404
    assert client.post("/webhooks/deploy", data=b"{}").status_code == 404


def test_an_endpoint_without_its_credential_answers_404(redis_url: str):
    ledger = RedisDeliveryLedger(redis.Redis.from_url(redis_url))
    endpoints = WebhookEndpoints(_CountingIntake(), token=None, secret=SECRET, ledger=ledger, clock=_SystemClock())
    client = Client(SlackWsgiApp(None, webhooks=endpoints))
    assert client.post("/webhooks/alertmanager", data=b"{}").status_code == 404
    assert client.get("/webhooks/deploy").status_code == 405


def test_a_body_over_a_megabyte_is_refused_unread(redis_url: str):
    intake = _CountingIntake()
    ledger = RedisDeliveryLedger(redis.Redis.from_url(redis_url))
    endpoints = WebhookEndpoints(intake, token="t", secret=SECRET, ledger=ledger, clock=_SystemClock())
    client = Client(SlackWsgiApp(None, webhooks=endpoints))
    answer = client.post("/webhooks/alertmanager", data=b"x" * ((1 << 20) + 1), headers={"Authorization": "Bearer t"})
    assert answer.status_code == 413
    assert intake.reports == []


def test_redis_down_answers_503_and_the_retry_is_handled_once_it_is_back(redis_url: str):
    intake = _CountingIntake()
    body = json.dumps({"target": "bootcamp", "status": "failed"}).encode()
    headers = _signed(body)
    down = RedisDeliveryLedger(redis.Redis(host="127.0.0.1", port=9, socket_connect_timeout=0.5))
    client = Client(
        SlackWsgiApp(
            None, webhooks=WebhookEndpoints(intake, token=None, secret=SECRET, ledger=down, clock=_SystemClock())
        )
    )
    answer = client.post("/webhooks/deploy", data=body, headers=headers)
    assert answer.status_code == 503
    assert answer.json == {"error": "temporarily unavailable, retry later"}
    assert intake.reports == []

    up = RedisDeliveryLedger(redis.Redis.from_url(redis_url))
    client = Client(
        SlackWsgiApp(
            None, webhooks=WebhookEndpoints(intake, token=None, secret=SECRET, ledger=up, clock=_SystemClock())
        )
    )
    assert client.post("/webhooks/deploy", data=body, headers=headers).status_code == 200
    assert [report.target for report in intake.reports] == ["bootcamp"]


def test_socket_mode_serves_the_webhooks_on_its_probe_port(redis_url: str):
    intake = _CountingIntake()
    ledger = RedisDeliveryLedger(redis.Redis.from_url(redis_url))
    endpoints = WebhookEndpoints(intake, token=None, secret=SECRET, ledger=ledger, clock=_SystemClock())
    with FakeSlack() as fake:
        runner = SocketModeRunner(socket_app(fake), seed.APP_TOKEN, host="127.0.0.1", port=0, webhooks=endpoints)
        runner.server.start()  # the probe server alone: no WebSocket is needed to take a pipeline's report
        try:
            body = json.dumps({"target": "bootcamp", "status": "failed"}).encode()
            request = urllib.request.Request(  # noqa: S310
                runner.url + "/webhooks/deploy", data=body, method="POST", headers=_signed(body)
            )
            with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
                assert response.status == 200
        finally:
            runner.server.stop()
    assert [report.target for report in intake.reports] == ["bootcamp"]
