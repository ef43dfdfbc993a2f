"""The webhooks on the bot's HTTP port: failure reports from Alertmanager and from deploy pipelines.

    POST /webhooks/alertmanager   Alertmanager's webhook (payload version 4), `Authorization: Bearer <token>`
    POST /webhooks/deploy         a pipeline's `{target, status, revision?, url?, summary?}`, signed:
                                  X-Rollbot-Timestamp + X-Rollbot-Signature: v0=hex(HMAC-SHA256("v0:{ts}:{body}"))

An endpoint whose credential is not configured (ROLLBOT_WEBHOOK_TOKEN, ROLLBOT_WEBHOOK_SECRET) answers 404, as if
it did not exist. Status codes follow Alertmanager's retry rule (detection.md §4: 5xx is retried, 4xx is not):
503 only when Redis does not answer (a retry can help), 401 for a wrong or missing credential, a stale or replayed
signature, 400 with a short reason for a body that is not what the endpoint expects, 413 for a body over 1 MiB.
Tokens and signatures are compared in constant time. Nothing here decides about incidents: `bot.flows.intake`
does, with the rules in `bot.core.intake`.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable, Iterable
from typing import Any, Final, Protocol, TypeVar

import structlog
from pydantic import BaseModel, ValidationError

from bot.adapters.http_server import WEBHOOK_PREFIX
from bot.core.errors import TemporaryError, UserError
from bot.core.intake import SIGNATURE_MEMORY, AlertmanagerPayload, DeployReport, signature_problem
from bot.flows.intake import AlertsReceipt
from bot.ports import Clock, DeliveryLedger, IntakeMetrics

log = structlog.get_logger(__name__)

ALERTMANAGER_PATH: Final = "/webhooks/alertmanager"
DEPLOY_PATH: Final = "/webhooks/deploy"
# Alertmanager's payloads grow with the group (`max_alerts` caps them); a megabyte is thousands of alerts.
MAX_WEBHOOK_BYTES: Final = 1 << 20

_Model = TypeVar("_Model", bound=BaseModel)
StartResponse = Callable[..., Any]
Environ = dict[str, Any]


class Intake(Protocol):
    """The intake flow as the webhooks need it (bot/flows/intake.py)."""

    def on_alerts(self, payload: AlertmanagerPayload) -> AlertsReceipt: ...

    def on_deploy(self, report: DeployReport) -> str: ...


class WebhookEndpoints:
    """WSGI handling of `/webhooks/*`; `SlackWsgiApp` hands it every request under that prefix."""

    def __init__(
        self,
        intake: Intake,
        *,
        token: str | None,
        secret: str | None,
        ledger: DeliveryLedger,
        clock: Clock,
        metrics: IntakeMetrics | None = None,
    ) -> None:
        self._intake = intake
        self._token = token or None
        self._secret = secret or None
        self._ledger = ledger
        self._clock = clock
        self._metrics = metrics

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        endpoint = path.removeprefix(WEBHOOK_PREFIX)
        status, body = self._handle(path, environ)
        if self._metrics is not None and status != 404:
            self._metrics.webhook_handled(endpoint, status)
        payload = json.dumps(body).encode()
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))]
        if status == 405:
            headers.append(("Allow", "POST"))
        start_response(_status_line(status), headers)
        return [payload]

    def _handle(self, path: str, environ: Environ) -> tuple[int, dict[str, Any]]:
        credential = {ALERTMANAGER_PATH: self._token, DEPLOY_PATH: self._secret}.get(path)
        if credential is None:
            return 404, {"error": "not found"}
        if environ.get("REQUEST_METHOD") != "POST":
            return 405, {"error": "use POST"}
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return 400, {"error": "bad Content-Length"}
        if length > MAX_WEBHOOK_BYTES:
            return 413, {"error": f"body larger than {MAX_WEBHOOK_BYTES} bytes"}
        raw: bytes = environ["wsgi.input"].read(length) if length > 0 else b""
        try:
            if path == ALERTMANAGER_PATH:
                return self._alertmanager(raw, environ, credential)
            return self._deploy(raw, environ, credential)
        except TemporaryError as exc:
            log.warning("webhook could not be handled now; the sender should retry", path=path, reason=str(exc))
            return 503, {"error": "temporarily unavailable, retry later"}
        except Exception:  # a bug: say so without the details (the log has them); the sender may retry
            log.exception("webhook failed", path=path)
            return 500, {"error": "internal error"}

    def _alertmanager(self, raw: bytes, environ: Environ, token: str) -> tuple[int, dict[str, Any]]:
        given = str(environ.get("HTTP_AUTHORIZATION", ""))
        scheme, _, value = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), token.encode()):
            return 401, {"error": "missing or wrong bearer token"}
        payload = _parse(AlertmanagerPayload, raw)
        if isinstance(payload, str):
            return 400, {"error": payload}
        if payload.truncatedAlerts:  # Alertmanager's max_alerts dropped some: they never reach rollbot
            log.warning("alertmanager truncated the group", group_key=payload.groupKey, dropped=payload.truncatedAlerts)
        receipt = self._intake.on_alerts(payload)
        log.info("alertmanager delivery", group_key=payload.groupKey, **receipt.__dict__)
        return 200, {"status": "ok", **receipt.__dict__}

    def _deploy(self, raw: bytes, environ: Environ, secret: str) -> tuple[int, dict[str, Any]]:
        timestamp = environ.get("HTTP_X_ROLLBOT_TIMESTAMP")
        signature = environ.get("HTTP_X_ROLLBOT_SIGNATURE")
        problem = signature_problem(secret, timestamp, signature, raw, self._clock.now())
        if problem is not None:
            return 401, {"error": problem}
        assert signature is not None
        replay_key = f"signature:{signature.strip()}"
        if not self._ledger.claim(replay_key, SIGNATURE_MEMORY):
            return 401, {"error": "replayed request: this signature was already used"}
        try:
            report = _parse(DeployReport, raw)
            if isinstance(report, str):
                return 400, {"error": report}
            try:
                outcome = self._intake.on_deploy(report)
            except UserError as exc:
                return 400, {"error": str(exc)}
        except TemporaryError:
            self._ledger.release(replay_key)  # not handled: the same signed request may be retried
            raise
        log.info("deploy report", target=report.target, status=report.status, outcome=outcome)
        return 200, {"status": "ok", "outcome": outcome}


def _parse(model: type[_Model], raw: bytes) -> _Model | str:
    """The body as `model`, or a short reason naming the first problem (never the body itself)."""
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return f"body is not JSON: {exc.__class__.__name__}"
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        return f"{where}: {first['msg']}{more}"


def _status_line(status: int) -> str:
    phrases = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed"}
    phrases |= {413: "Payload Too Large", 500: "Internal Server Error", 503: "Service Unavailable"}
    return f"{status} {phrases.get(status, 'Status')}"


__all__ = ["ALERTMANAGER_PATH", "DEPLOY_PATH", "Intake", "WebhookEndpoints"]
