"""The bot's HTTP surface on one port: Slack's signed requests, health, readiness and metrics.

    POST /slack/events   slash commands, Events API callbacks and interactivity → Bolt (`app.dispatch`)
    GET  /healthz        liveness: answers while the process serves HTTP; no I/O
    GET  /readyz         200 when the readiness callable says so (e.g. Redis reachable), else 503 + reason
    GET  /metrics        Prometheus text format
    POST /webhooks/*     failure reports from Alertmanager and pipelines (bot/adapters/webhooks.py), when enabled

Served by waitress (a threaded, production WSGI server; Bolt's own `app.start()` is a single-threaded
`http.server` with a listen backlog of 5, which made one in forty concurrent acks take a second, slack.md §2.2).

Before Bolt sees a request this module verifies its signature on the exact bytes received (a bad or stale one is
answered 401 without Bolt, so Bolt never logs the body), and works around Bolt Pitfall C: Bolt parses any
form body containing the substring ``payload`` as an interactivity payload, so `/rollback payload-api 1` would
be answered 404 "unhandled request". Such bodies are rewritten ``payload`` → ``%70ayload`` (which decodes to the
same text) and re-signed with the same timestamp.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol
from urllib.parse import parse_qs

import structlog
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from slack_bolt import App, BoltRequest
from slack_sdk.signature import Clock as SignatureClock
from slack_sdk.signature import SignatureVerifier
from waitress import wasyncore
from waitress.server import create_server
from waitress.trigger import trigger as WaitressTrigger  # noqa: N812 (waitress names its class in lowercase)

from bot.adapters.slack_request_shape import malformed_reason

log = structlog.get_logger(__name__)

SLACK_PATH = "/slack/events"
# Enough request threads that 50 concurrent slash commands never queue behind each other for long; each one
# holds its thread only until the listener calls ack() (milliseconds).
DEFAULT_THREADS = 32
# Slack's payloads are a few kB; a large body is not from Slack.
MAX_BODY_BYTES = 1 << 20
# Readiness checks must answer fast: a probe that hangs is a probe that fails.
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"

StartResponse = Callable[..., Any]
Environ = dict[str, Any]
WsgiHandler = Callable[[Environ, StartResponse], Iterable[bytes]]
# Everything under this prefix goes to the webhooks (which answer 404 for an endpoint that is not configured).
WEBHOOK_PREFIX = "/webhooks/"
# What a readiness check answers: ready or not, optionally with the reason it is not.
ReadinessAnswer = bool | tuple[bool, str]


class RequestObserver(Protocol):
    """Where the server reports how long it took to answer Slack (implemented by PrometheusMetrics)."""

    def slack_request_handled(self, kind: str, status: int, seconds: float) -> None: ...


def always_ready() -> ReadinessAnswer:
    return True


def request_kind(body: str, content_type: str) -> str:
    """command, event, interactive or other: the label of the ack-latency histogram."""
    if content_type.startswith(JSON) or body.startswith("{"):
        return "event"
    fields = parse_qs(body, keep_blank_values=True)
    if "payload" in fields:
        return "interactive"
    if "command" in fields:
        return "command"
    return "other"


def protect_payload_substring(body: str, content_type: str) -> str:
    """Bolt Pitfall C: hide the substring `payload` from Bolt's parser when there is no `payload=` field.

    `%70` is `p` percent-encoded, so the form decodes to exactly the same fields and values.
    """
    if content_type.startswith(JSON) or body.startswith("{") or "payload" not in body:
        return body
    if "payload" in parse_qs(body, keep_blank_values=True):
        return body
    return body.replace("payload", "%70ayload")


class SlackWsgiApp:
    """The WSGI application behind `serve`; usable with any WSGI server."""

    def __init__(
        self,
        bolt_app: App | None,
        *,
        signing_secret: str | None = None,
        readiness: Callable[[], ReadinessAnswer] = always_ready,
        metrics_registry: CollectorRegistry | None = None,
        observer: RequestObserver | None = None,
        clock: Callable[[], float] = time.time,
        webhooks: WsgiHandler | None = None,
    ) -> None:
        self._bolt = bolt_app
        self._webhooks = webhooks
        self._readiness = readiness
        self._registry = metrics_registry if metrics_registry is not None else REGISTRY
        self._observer = observer
        self._verifier: SignatureVerifier | None = None
        if bolt_app is not None:
            secret = signing_secret if signing_secret is not None else getattr(bolt_app, "_signing_secret", None)
            if not secret:
                raise ValueError("SLACK_SIGNING_SECRET is required to serve Slack requests over HTTP")
            self._verifier = SignatureVerifier(secret, clock=_Clock(clock))

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "/")
        if path == SLACK_PATH and self._bolt is not None:
            if method != "POST":
                return _reply(start_response, 405, "method not allowed", headers=[("Allow", "POST")])
            return self._slack(environ, start_response)
        if path.startswith(WEBHOOK_PREFIX):
            if self._webhooks is None:
                return _reply(start_response, 404, "not found")
            return self._webhooks(environ, start_response)
        if method not in ("GET", "HEAD"):
            return _reply(start_response, 405, "method not allowed", headers=[("Allow", "GET")])
        if path == "/healthz":
            return _reply_json(start_response, 200, {"status": "ok"})
        if path == "/readyz":
            return self._ready(start_response)
        if path == "/metrics":
            return _reply(start_response, 200, generate_latest(self._registry), content_type=CONTENT_TYPE_LATEST)
        return _reply(start_response, 404, "not found")

    def _ready(self, start_response: StartResponse) -> Iterable[bytes]:
        try:
            answer = self._readiness()
        except Exception as exc:  # a failing probe means "not ready", never a 500
            answer = (False, f"readiness check failed: {type(exc).__name__}")
        ready, reason = answer if isinstance(answer, tuple) else (answer, "" if answer else "not ready")
        if ready:
            return _reply_json(start_response, 200, {"status": "ready"})
        return _reply_json(start_response, 503, {"status": "not ready", "reason": reason})

    def _slack(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        assert self._bolt is not None
        assert self._verifier is not None
        started = time.perf_counter()
        kind = "other"
        status = 500
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            if length > MAX_BODY_BYTES:
                status = 413
                return _reply(start_response, 413, "request too large")
            raw = environ["wsgi.input"].read(length) if length > 0 else b""
            headers = _headers(environ)
            timestamp = _first(headers.get("x-slack-request-timestamp"))
            signature = _first(headers.get("x-slack-signature"))
            if not self._is_signed(raw, timestamp, signature):
                status = 401
                return _reply_json(start_response, 401, {"error": "invalid request"})
            try:
                body = raw.decode("utf-8")
            except UnicodeDecodeError:
                status = 400
                return _reply(start_response, 400, "body is not UTF-8")
            content_type = _first(headers.get("content-type")) or ""
            kind = request_kind(body, content_type)
            protected = protect_payload_substring(body, content_type)
            if protected != body:
                assert timestamp is not None
                headers["x-slack-signature"] = [
                    self._verifier.generate_signature(timestamp=timestamp, body=protected) or ""
                ]
                body = protected
            reason = malformed_reason(body, content_type.split(";")[0] or None)
            if reason is not None:
                # Signed, so not an attacker; not Slack either. 200 so nobody retries it (slack_request_shape).
                log.warning("ignored a malformed Slack request", kind=kind, reason=reason)
                status = 200
                return _reply(start_response, 200, "")
            request = BoltRequest(body=body, query=environ.get("QUERY_STRING", ""), headers=headers)
            response = self._bolt.dispatch(request)
            status = response.status
            out_headers = [(name, value) for name, values in response.headers.items() for value in values]
            payload = response.body.encode("utf-8") if isinstance(response.body, str) else bytes(response.body or b"")
            start_response(_status_line(status), [*out_headers, ("Content-Length", str(len(payload)))])
            return [payload]
        except Exception:
            log.exception("slack request failed", kind=kind)
            status = 500
            return _reply(start_response, 500, "internal error")
        finally:
            if self._observer is not None:
                self._observer.slack_request_handled(kind, status, time.perf_counter() - started)

    def _is_signed(self, raw: bytes, timestamp: str | None, signature: str | None) -> bool:
        assert self._verifier is not None
        if not timestamp or not signature or not timestamp.strip().lstrip("-").isdigit():
            return False
        try:
            return self._verifier.is_valid(body=raw, timestamp=timestamp, signature=signature)
        # OverflowError: slack_sdk compares the timestamp as a float, and a 400-digit one does not fit.
        except (ValueError, UnicodeDecodeError, OverflowError):
            return False


class _Clock(SignatureClock):
    """slack_sdk's signature clock over a plain callable (tests pass a fixed time)."""

    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now

    def now(self) -> float:
        return self._now()


def _headers(environ: Environ) -> dict[str, str | Sequence[str]]:
    headers: dict[str, str | Sequence[str]] = {}
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            headers[key[5:].replace("_", "-").lower()] = [str(value)]
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            headers[key.replace("_", "-").lower()] = [str(environ[key])]
    return headers


def _first(values: str | Sequence[str] | None) -> str | None:
    if isinstance(values, str):
        return values
    return values[0] if values else None


def _status_line(status: int) -> str:
    phrases = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed"}
    phrases |= {413: "Payload Too Large", 500: "Internal Server Error", 503: "Service Unavailable"}
    return f"{status} {phrases.get(status, 'Status')}"


def _reply(
    start_response: StartResponse,
    status: int,
    body: str | bytes,
    *,
    content_type: str = "text/plain; charset=utf-8",
    headers: list[tuple[str, str]] | None = None,
) -> list[bytes]:
    payload = body.encode("utf-8") if isinstance(body, str) else body
    start_response(
        _status_line(status),
        [("Content-Type", content_type), ("Content-Length", str(len(payload))), *(headers or [])],
    )
    return [payload]


def _reply_json(start_response: StartResponse, status: int, body: dict[str, Any]) -> list[bytes]:
    return _reply(start_response, status, json.dumps(body), content_type=JSON)


class Server:
    """A waitress server on its own thread (`start`/`stop`) or in the foreground (`serve_forever`)."""

    def __init__(self, wsgi_app: Callable[..., Iterable[bytes]], *, host: str, port: int, threads: int) -> None:
        self._host = host
        self._server = create_server(
            wsgi_app,
            host=host,
            port=port,
            threads=threads,
            ident="rollbot",
            # Behind an ingress or Slack's own proxies: don't trust forwarded headers we don't use.
            clear_untrusted_proxy_headers=True,
            max_request_body_size=MAX_BODY_BYTES,
            # More connections than threads: waiting connections queue instead of being refused.
            connection_limit=max(100, threads * 4),
        )
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()

    @property
    def port(self) -> int:
        port = getattr(self._server, "effective_port", None)
        if port is None:
            port = self._server.effective_listen[0][1]  # type: ignore[union-attr]
        return int(port)

    @property
    def url(self) -> str:
        """Base URL to reach the server locally (a wildcard bind is reached through loopback)."""
        host = "127.0.0.1" if self._host in ("0.0.0.0", "", "*") else self._host  # noqa: S104
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    def start(self) -> Server:
        """Serve on a daemon thread; returns at once (the socket is already listening)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self.serve_forever, name="rollbot-http", daemon=True)
            self._thread.start()
        return self

    def serve_forever(self) -> None:
        log.info("serving http", url=self.url)
        self._server.run()
        self._stopped.set()

    def stop(self, timeout: int = 5) -> None:
        """Close the listening socket and every connection, then wait for the request threads."""
        socket_map = getattr(self._server, "_map", None) or getattr(self._server, "map", {})
        pull = next((d for d in list(socket_map.values()) if isinstance(d, WaitressTrigger)), None)
        if pull is not None and self._thread is not None and self._thread.is_alive():

            def close_everything(_: object = None) -> None:
                wasyncore.close_all(socket_map)

            pull.pull_trigger(close_everything)
            self._thread.join(timeout)
        else:
            wasyncore.close_all(socket_map)
        self._server.task_dispatcher.shutdown(timeout=int(timeout))

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def serve(
    bolt_app: App | None,
    *,
    host: str = "0.0.0.0",  # noqa: S104 (a pod serves on every interface)
    port: int = 3000,
    readiness: Callable[[], ReadinessAnswer] = always_ready,
    metrics_registry: CollectorRegistry | None = None,
    signing_secret: str | None = None,
    observer: RequestObserver | None = None,
    threads: int = DEFAULT_THREADS,
    webhooks: WsgiHandler | None = None,
) -> Server:
    """Build the server (bound, not yet serving): call `.start()` or `.serve_forever()`.

    `bolt_app=None` serves only health, readiness and metrics (Socket Mode). `signing_secret` defaults to the
    one the Bolt app was built with. `port=0` picks a free port (see `.port` / `.url`).
    """
    wsgi_app = SlackWsgiApp(
        bolt_app,
        signing_secret=signing_secret,
        readiness=readiness,
        metrics_registry=metrics_registry,
        observer=observer,
        webhooks=webhooks,
    )
    return Server(wsgi_app, host=host, port=port, threads=threads)
