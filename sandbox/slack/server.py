"""FakeSlack: a stateful fake of the Slack Web API and of response_urls, served over real HTTP.

The bot talks to it exactly as to Slack (``WebClient(base_url=fake.api_url)``; ``respond()`` to the
response_urls the driver hands out), and tests read back what happened through the query API inherited from
:class:`~sandbox.slack.state.SlackState`.

Each ``/api/<method>`` request is judged in this order (slack.md §7.3; Slack's own order is undocumented):

0. a fault armed with ``fail_next`` / ``delay`` / ``drop_connection``, then a storm rule (``inject_fault``,
   ``/_sim/faults``; ``faults.py``)
1. unknown method → ``unknown_method``
2. token → ``not_authed`` · ``invalid_auth`` · ``token_revoked`` · ``not_allowed_token_type``
3. scopes → ``missing_scope`` (+ ``needed``/``provided``)
4. required args → ``invalid_arguments``
5. rate limits (``rate_limits="strict"``) → HTTP 429 ``ratelimited`` + integer ``Retry-After``
6. method semantics (``webapi.py``)

Errors are HTTP 200 with ``{"ok": false, "error": …}`` like real Slack, except 429 and injected statuses.
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from sandbox.faults import FAULTS_PATH, FaultTable
from sandbox.slack.blockkit import validate_blocks
from sandbox.slack.faults import SlackFault, fault_control
from sandbox.slack.ratelimits import RateLimiter, RateLimitMode
from sandbox.slack.records import Call, Encoding, ResponseEffect, ResponseUrlPost
from sandbox.slack.seed import Channel, Clock, Token, WallClock, Workspace, default_workspace
from sandbox.slack.socket_mode import EnvelopeType, SocketAck, SocketLink, serve_link
from sandbox.slack.state import RESPONSE_URL_MAX_USES, RESPONSE_URL_TTL_SECONDS, ResponseUrl, SlackState
from sandbox.slack.webapi import METHODS, ApiOptions, Context, SlackApiError, decode_json_fields

JSON_CONTENT_TYPE = "application/json; charset=utf-8"


@dataclass
class _Fault:
    method: str
    remaining: int | None  # None = until cleared
    error: str | None = None
    status: int = 200
    retry_after: int | None = None
    delay: float = 0.0
    drop: bool = False
    when: Callable[[dict[str, Any]], bool] | None = None


@dataclass
class _Answer:
    status: int
    body: dict[str, Any]
    headers: dict[str, str]
    injected: bool = False


class FakeSlack(SlackState):
    """The fake Slack workspace plus its HTTP server; use as a context manager or call start()/stop()."""

    def __init__(
        self,
        workspace: Workspace | None = None,
        *,
        clock: Clock | None = None,
        rate_limits: RateLimitMode = "off",
        rate_limit_scale: float = 1.0,
        options: ApiOptions | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        socket_ping_interval: float | None = 0.2,
    ) -> None:
        super().__init__(workspace or default_workspace(), clock or WallClock())
        self.options = options or ApiOptions()
        self.rate_limiter = RateLimiter(self.clock, rate_limits, rate_limit_scale)
        self._faults: list[_Fault] = []
        self._storms = FaultTable(SlackFault)
        self._address = (host, port)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._sequence = 0
        # Open Socket Mode connections (socket_mode.py); envelopes go to them round-robin.
        self.socket_links: list[SocketLink] = []
        self.socket_ping_interval = socket_ping_interval
        self._next_link = 0

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> FakeSlack:
        if self._server is not None:
            return self
        server = _Server(self._address, _Handler)
        server.fake = self
        self._server = server
        self.base_url = f"http://{self._address[0]}:{server.server_address[1]}"
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.01}, name="fake-slack", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        for link in list(self.socket_links):
            with contextlib.suppress(OSError):
                link.close()
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeSlack:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("FakeSlack is not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Root URL, e.g. ``http://127.0.0.1:PORT``."""
        if not self.base_url:
            raise RuntimeError("FakeSlack is not started")
        return self.base_url

    @property
    def api_url(self) -> str:
        """What the bot gets as ``SLACK_API_URL`` / ``WebClient(base_url=…)``."""
        return f"{self.url}/api/"

    def reset(self) -> None:
        """Forget messages, calls, faults and rate-limit buckets; restore the seeded workspace."""
        self._storms.clear()
        with self._lock:
            self._faults.clear()
            self.rate_limiter.reset()
            self._reset_state()

    # ------------------------------------------------------------------ steering

    def fail_next(
        self,
        method: str,
        error: str | None = None,
        *,
        status: int = 200,
        retry_after: int | None = None,
        times: int = 1,
        when: Callable[[dict[str, Any]], bool] | None = None,
    ) -> None:
        """Answer the next ``times`` calls of ``method`` (``"*"`` = any method; matching ``when(args)``) with an error.

        ``status=429`` defaults to ``error="ratelimited"`` and ``Retry-After: 1``; otherwise the default error is
        ``internal_error``. Injected failures skip all other checks and are marked ``Call.injected``.
        """
        if error is None:
            error = "ratelimited" if status == 429 else "internal_error"
        if status == 429 and retry_after is None:
            retry_after = 1
        with self._lock:
            self._faults.append(_Fault(method, times, error, status, retry_after, when=when))

    def delay(self, method: str, seconds: float, *, times: int | None = None) -> None:
        """Answer ``method`` only after ``seconds`` of real time (slow Slack); ``times=None`` = until reset."""
        with self._lock:
            self._faults.append(_Fault(method, times, delay=seconds))

    def drop_connection(self, method: str, *, times: int = 1) -> None:
        """Close the connection without answering (the client sees a reset / RemoteDisconnected)."""
        with self._lock:
            self._faults.append(_Fault(method, times, drop=True))

    def clear_faults(self) -> None:
        """Disarm every fault: ``fail_next``/``delay``/``drop_connection`` and the storm rules."""
        self._storms.clear()
        with self._lock:
            self._faults.clear()

    def inject_fault(self, method: str = "*", **knobs: Any) -> dict[str, Any]:
        """Arm a storm rule (``faults.py``): e.g. ``inject_fault("chat.*", status=503, probability=0.3, seed=1)``.

        Returns the rule with its id and counters; a bad rule raises ``InvalidFault`` saying what to fix.
        """
        return self._storms.add(self._storms.parse({"method": method, **knobs}))

    def fault_rules(self) -> list[dict[str, Any]]:
        """The storm rules with how many matching calls each one ``seen`` and fired on (``hits``)."""
        return self._storms.describe()

    def set_rate_limits(self, mode: RateLimitMode, scale: float | None = None) -> None:
        with self._lock:
            self.rate_limiter.mode = mode
            if scale is not None:
                self.rate_limiter.scale = scale
            self.rate_limiter.reset()

    def revoke_token(self, token: str) -> None:
        with self._lock:
            self.workspace.tokens[token].revoked = True

    def set_scopes(self, token: str, scopes: tuple[str, ...]) -> None:
        with self._lock:
            self.workspace.tokens[token].scopes = tuple(scopes)

    def add_channel(self, channel: Channel) -> None:
        """A channel created while the fake runs (tests that spread cards over several channels)."""
        with self._lock:
            self.workspace.add_channel(channel)

    def join_channel(self, channel: str, user: str) -> None:
        with self._lock:
            members = self.workspace.channels[channel].members
            if user not in members:
                members.append(user)

    def leave_channel(self, channel: str, user: str) -> None:
        with self._lock:
            members = self.workspace.channels[channel].members
            if user in members:
                members.remove(user)

    def archive_channel(self, channel: str) -> None:
        with self._lock:
            self.workspace.channels[channel].is_archived = True

    def _take_faults(self, method: str, args: dict[str, Any]) -> list[_Fault]:
        """Consume the armed faults that apply to this request (a delay and an error may combine)."""
        taken: list[_Fault] = []
        with self._lock:
            for fault in list(self._faults):
                if fault.method not in (method, "*") or (fault.when is not None and not fault.when(args)):
                    continue
                if any(_kind_of(f) == _kind_of(fault) for f in taken):
                    continue
                taken.append(fault)
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
        return taken

    # ------------------------------------------------------------------ Socket Mode

    def wait_for_socket(self, count: int = 1, timeout: float = 5.0) -> None:
        """Block until ``count`` Socket Mode connections are open (the bot finished connecting)."""
        self.wait_for(lambda: len(self.socket_links) >= count, timeout, description=f"{count} socket link(s)")

    def push_envelope(
        self,
        envelope_type: EnvelopeType,
        payload: dict[str, Any],
        *,
        retry_attempt: int = 0,
        retry_reason: str = "",
        timeout: float = 3.0,
    ) -> SocketAck:
        """Deliver one envelope over an open connection (round-robin, as Slack spreads them) and await its ack."""
        with self._lock:
            if not self.socket_links:
                raise RuntimeError("no Socket Mode connection is open")
            link = self.socket_links[self._next_link % len(self.socket_links)]
            self._next_link += 1
        return link.push(
            envelope_type, payload, retry_attempt=retry_attempt, retry_reason=retry_reason, timeout=timeout
        )

    def disconnect_sockets(self, reason: str = "refresh_requested", *, grace: float = 10.0) -> None:
        """Ask every connected client to reconnect (Slack does this every few hours).

        Like Slack, the old connections are then closed from our side, as soon as replacements are open or after
        ``grace`` seconds; without that the client sits in a blocking read until its own timeout.
        """
        with self._lock:
            links = list(self.socket_links)
        for link in links:
            link.disconnect(reason)

        def close_when_replaced() -> None:
            with contextlib.suppress(TimeoutError):
                self.wait_for(lambda: sum(link not in links for link in self.socket_links) >= len(links), grace)
            for link in links:
                link.close()

        threading.Thread(target=close_when_replaced, name="fake-slack-disconnect", daemon=True).start()

    def close_sockets(self) -> None:
        """Drop every Socket Mode connection from the server side (call before stopping a client quickly)."""
        with self._lock:
            links = list(self.socket_links)
        for link in links:
            link.close()

    def _add_link(self, link: SocketLink) -> None:
        with self._lock:
            self.socket_links.append(link)
            self._changed.notify_all()

    def _remove_link(self, link: SocketLink) -> None:
        with self._lock:
            if link in self.socket_links:
                self.socket_links.remove(link)
            self._changed.notify_all()

    # ------------------------------------------------------------------ Web API pipeline

    def _serve_api(self, request: _Request) -> None:
        started = time.perf_counter()
        arrived_at = self.clock.now()
        method = request.path.removeprefix("/api/").strip("/")
        args, encoding, parse_error = _parse_args(request)
        # Slack accepts the token as a header or an argument; never keep it in the recorded args.
        argument_token = _pop_str(args, "token")
        token = _bearer(request.headers.get("authorization")) or argument_token
        faults = self._take_faults(method, args)
        armed_failure = any(fault.error or fault.drop for fault in faults)
        storm = None if armed_failure else self._storms.draw(lambda rule: rule.applies_to(method))
        for fault in faults:
            if fault.delay:
                time.sleep(fault.delay)
        if storm is not None and storm.delay:
            time.sleep(storm.delay)
        dropped = any(fault.drop for fault in faults)
        if dropped:
            answer = _Answer(0, {"ok": False, "error": "connection_dropped"}, {}, injected=True)
        elif storm is not None and storm.status is not None:
            answer = _Answer(*storm.answer(), injected=True)
        else:
            answer = self._answer_api(method, args, token, faults, parse_error)
        with self._lock:
            self._sequence += 1
            sequence = self._sequence
        # Record before answering: a test that inspects calls right after the client returns must see this one.
        self._record_call(
            Call(
                seq=sequence,
                t=arrived_at,
                monotonic=started,
                http_method=request.http_method,
                path=request.path,
                method=method,
                content_type=request.headers.get("content-type", ""),
                encoding=encoding,
                headers=_redacted(request.headers),
                raw_body=request.body,
                args=args,
                token=token,
                status=answer.status,
                response=answer.body,
                response_headers=answer.headers,
                latency=time.perf_counter() - started,
                injected=answer.injected,
            )
        )
        if dropped:
            request.drop()
        else:
            request.reply(answer.status, json.dumps(answer.body).encode(), JSON_CONTENT_TYPE, answer.headers)

    def _answer_api(
        self,
        method: str,
        args: dict[str, Any],
        token: str | None,
        faults: list[_Fault],
        parse_error: str | None,
    ) -> _Answer:
        injected = next((fault for fault in faults if fault.error), None)
        if injected is not None:
            headers = {"Retry-After": str(injected.retry_after)} if injected.retry_after is not None else {}
            return _Answer(injected.status, {"ok": False, "error": injected.error}, headers, injected=True)
        spec = METHODS.get(method)
        if spec is None:
            return _error("unknown_method")
        if parse_error is not None:
            return _error(parse_error)
        if not token:
            return _error("not_authed")
        with self._lock:
            known = self.workspace.tokens.get(token)
        if known is None:
            return _error("invalid_auth")
        if known.revoked:
            return _error("token_revoked")
        if known.kind not in spec.token_kinds:
            return _error("not_allowed_token_type")
        headers = {"x-oauth-scopes": ",".join(known.scopes), "x-accepted-oauth-scopes": ",".join(spec.scopes)}
        if spec.scopes and not any(scope in known.scopes for scope in spec.scopes):
            return _error("missing_scope", headers, needed=",".join(spec.scopes), provided=",".join(known.scopes))
        missing = [name for name in spec.required if args.get(name) in (None, "")]
        if missing:
            messages = [f"[ERROR] missing required field: {name}" for name in missing]
            return _error("invalid_arguments", headers, response_metadata={"messages": messages})
        retry_after = self.rate_limiter.check(
            self.workspace.team_id, method, spec.tier, str(args.get("channel") or "") or None
        )
        if retry_after is not None:
            return _Answer(429, {"ok": False, "error": "ratelimited"}, {**headers, "Retry-After": str(retry_after)})
        return self._run_handler(spec.handler, known, args, headers)

    def _run_handler(
        self, handler: Callable[[Context], dict[str, Any]], token: Token, args: dict[str, Any], headers: dict[str, str]
    ) -> _Answer:
        with self._lock:
            try:
                body = handler(Context(self, token, args, self.options))
            except SlackApiError as failure:
                return _error(failure.error, headers, **failure.extra)
        return _Answer(200, {"ok": True, **body}, headers)

    # ------------------------------------------------------------------ response_url sink

    def _serve_response_url(self, request: _Request) -> None:
        with self._lock:
            entry = self._response_urls.get(request.path)
        if entry is None:
            request.reply(404, b"no_service", "text/plain")
            return
        status, reason, effect, body = self._apply_response(entry, request.body, request.headers)
        self._record_response(
            ResponseUrlPost(
                url=entry.url,
                kind=entry.kind,
                channel=entry.channel,
                user=entry.user,
                use=entry.uses if status == 200 else 0,
                status=status,
                body=body,
                raw_body=request.body,
                t=self.clock.now(),
                effect=effect,
                reason=reason,
            )
        )
        request.reply(status, (reason or "ok").encode(), "text/plain")

    def _apply_response(
        self, entry: ResponseUrl, raw: bytes, headers: dict[str, str]
    ) -> tuple[int, str | None, ResponseEffect, dict[str, Any] | None]:
        """Return (status, rejection reason, effect, parsed body) and apply the effect to the workspace."""
        body = _parse_response_body(raw, headers.get("content-type", ""))
        if body is None:
            return 400, "invalid_payload", "rejected", None
        with self._lock:
            if self.clock.now() - entry.created_at > RESPONSE_URL_TTL_SECONDS:
                return 404, "expired_url", "rejected", body
            if entry.uses >= RESPONSE_URL_MAX_USES:
                return 404, "used_url", "rejected", body
            text = body.get("text")
            text = text if isinstance(text, str) else None
            blocks = body.get("blocks")
            if blocks is not None:
                outcome = validate_blocks(blocks, max_json_chars=self.options.max_blocks_json_chars)
                if not outcome.ok:
                    return 400, outcome.error_code, "rejected", body
            original = (
                self.find_message(entry.channel, entry.original_ts)
                if entry.kind == "actions" and entry.original_ts and not entry.is_ephemeral_original
                else None
            )
            wants_delete = _truthy(body.get("delete_original"))
            wants_replace = _truthy(body.get("replace_original"))
            if (wants_delete or wants_replace) and entry.kind == "actions" and not entry.is_ephemeral_original:
                if original is None:
                    return 404, "message_not_found", "rejected", body
                entry.uses += 1
                if wants_delete:
                    self.delete_message(original, by=self.workspace.bot_user_id)
                    return 200, None, "delete_original", body
                if text is None and blocks is None:
                    entry.uses -= 1
                    return 400, "no_text", "rejected", body
                self.edit_message(original, editor=self.workspace.bot_user_id, text=text, blocks=blocks)
                return 200, None, "replace_original", body
            if not text and not blocks:
                return 400, "no_text", "rejected", body
            entry.uses += 1
            thread_ts = body.get("thread_ts")
            parent = self.find_message(entry.channel, thread_ts) if isinstance(thread_ts, str) else None
            if body.get("response_type") == "in_channel":
                self.store_message(
                    entry.channel,
                    user=self.workspace.bot_user_id,
                    bot_id=self.workspace.bot_id,
                    text=text or "",
                    blocks=blocks,
                    thread_ts=parent.ts if parent and not parent.is_reply else None,
                    source="response_url",
                )
                return 200, None, "in_channel", body
            self.record_ephemeral(
                entry.channel,
                entry.user,
                text or "",
                blocks=blocks,
                thread_ts=parent.ts if parent else None,
                source="response_url",
            )
            return 200, None, "ephemeral", body

    # ------------------------------------------------------------------ routing

    def _route(self, request: _Request) -> None:
        if request.path.startswith("/api/"):
            self._serve_api(request)
        elif request.path.rstrip("/") == FAULTS_PATH:
            status, body = fault_control(self._storms, request.http_method, request.body)
            request.reply(status, json.dumps(body).encode(), JSON_CONTENT_TYPE)
        elif request.path.startswith("/hooks/") and request.http_method == "POST":
            self._serve_response_url(request)
        elif request.path.rstrip("/") == "/link" and request.headers.get("upgrade", "").lower() == "websocket":
            serve_link(self, request)
        else:
            request.reply(404, b"not found", "text/plain")


def _kind_of(fault: _Fault) -> str:
    return "drop" if fault.drop else "delay" if fault.delay else "error"


def _error(error: str, headers: dict[str, str] | None = None, **extra: Any) -> _Answer:
    return _Answer(200, {"ok": False, "error": error, **extra}, dict(headers or {}))


def _truthy(value: Any) -> bool:
    return value in (True, 1, "1", "true", "True")


def _bearer(header: str | None) -> str | None:
    if header and header.lower().startswith("bearer "):
        return header[7:].strip() or None
    return None


def _pop_str(args: dict[str, Any], name: str) -> str | None:
    value = args.pop(name, None)
    return str(value) if value else None


def _redacted(headers: dict[str, str]) -> dict[str, str]:
    redacted = dict(headers)
    if "authorization" in redacted:
        token = _bearer(redacted["authorization"]) or ""
        redacted["authorization"] = f"Bearer {token[:5]}…"
    return redacted


def _parse_args(request: _Request) -> tuple[dict[str, Any], Encoding, str | None]:
    """Merge query string and body (JSON or form) into one args dict, as Slack does."""
    args: dict[str, Any] = dict(parse_qsl(request.query, keep_blank_values=True))
    encoding: Encoding = "query" if args else "none"
    parse_error = None
    content_type = request.headers.get("content-type", "").lower()
    if request.body:
        if content_type.startswith("application/json"):
            encoding = "json"
            try:
                decoded = json.loads(request.body)
            except ValueError:
                decoded, parse_error = {}, "invalid_json"
            if isinstance(decoded, dict):
                args.update(decoded)
            else:
                parse_error = "invalid_json"
        else:
            encoding = "form"
            args.update(parse_qsl(request.body.decode("utf-8", "replace"), keep_blank_values=True))
    decode_json_fields(args)
    return args, encoding, parse_error


def _parse_response_body(raw: bytes, content_type: str) -> dict[str, Any] | None:
    text = raw.decode("utf-8", "replace")
    if "application/x-www-form-urlencoded" in content_type:
        text = dict(parse_qsl(text)).get("payload", "")
    try:
        body = json.loads(text)
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


class _Request:
    """The parts of an HTTP request the fake needs, plus ways to answer it."""

    def __init__(self, handler: _Handler, http_method: str) -> None:
        self.handler = handler
        self.http_method = http_method
        parts = urlsplit(handler.path)
        self.path = parts.path
        self.query = parts.query
        self.headers = {key.lower(): value for key, value in handler.headers.items()}
        length = int(self.headers.get("content-length") or 0)
        self.body = handler.rfile.read(length) if length else b""

    def reply(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.handler.send_response(status)
        self.handler.send_header("Content-Type", content_type)
        self.handler.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.handler.send_header(name, value)
        self.handler.end_headers()
        self.handler.wfile.write(body)

    def drop(self) -> None:
        self.handler.close_connection = True
        with contextlib.suppress(OSError):
            self.handler.connection.shutdown(2)  # socket.SHUT_RDWR


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # wsgiref-like default backlog (5) made 40 concurrent clients stall for a second (slack.md §2.2).
    request_queue_size = 128
    fake: FakeSlack

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-response (a watch closed, a test ending) is normal here, not an error.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so benchmarks do not pay a TCP handshake per call
    server: _Server

    def do_GET(self) -> None:
        self.server.fake._route(_Request(self, "GET"))

    def do_POST(self) -> None:
        self.server.fake._route(_Request(self, "POST"))

    def do_DELETE(self) -> None:
        self.server.fake._route(_Request(self, "DELETE"))

    def log_message(self, format: str, *args: Any) -> None:
        """Silence per-request logging; the fake records calls itself."""
