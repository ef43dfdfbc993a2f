"""Serve a WSGI app (e.g. Bolt's ``SlackRequestHandler``) on ``127.0.0.1:<random port>`` in a thread.

Tests and benchmarks need the bot's real HTTP endpoint so the driver's requests go through the adapter exactly
as in production. wsgiref's default server handles one request at a time with a listen backlog of 5, which made
concurrent slash commands stall for a second (slack.md §2.2); this one threads and has a deep backlog.
"""

from __future__ import annotations

import threading
from socketserver import ThreadingMixIn
from types import TracebackType
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

if TYPE_CHECKING:
    from wsgiref.types import WSGIApplication


class _ThreadingWsgiServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    request_queue_size = 128


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Per-request access logs would drown test output."""


class WsgiHost:
    """``with WsgiHost(SlackRequestHandler(app)) as host: driver = SlackDriver(host.url + "/slack/events", …)``."""

    def __init__(self, app: WSGIApplication, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server = make_server(host, port, app, server_class=_ThreadingWsgiServer, handler_class=_QuietHandler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="wsgi-host", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> WsgiHost:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> WsgiHost:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
