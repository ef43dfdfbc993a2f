"""One list+watch of one Kubernetes collection, reduced to slim projections: the I/O under the failure watchers.

`CollectionStream.run` lists the collection in pages (`limit`/`continue`), hands the projections of the whole
listing over at once (`Listed`), then watches from the listing's resourceVersion with bookmarks (`Changed`
per event). A watch window that simply ends is reopened from the last resourceVersion (bookmarks keep it
fresh); a 410 Gone (an HTTP answer or an ERROR event in the stream) means the events are lost, so it lists
again. A transport error or a 5xx does the same after a back-off, because events may have been missed while
the connection was down. Connecting is retried with exponential back-off (tenacity); an error that outlasts it,
or one no retry can fix (403, 404), is handed over as `StreamFailed`, already translated into
`bot.core.errors`.

Objects are parsed from the raw JSON (no client models: building them is slow and memory-heavy) and projected
at once, page by page, so no whole object is ever kept. `close()` shuts the open response down so a stopping
watcher does not wait for the next event.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import structlog
import urllib3
from kubernetes.client.exceptions import ApiException
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from bot.backends.kubernetes_api import translating_errors
from bot.core.errors import BackendUnavailable, BotError

log = structlog.get_logger(__name__)
P = TypeVar("P")

# The API server ends every watch after this long; reopening it from the last resourceVersion is cheap, and a
# silently dropped connection is noticed within this bound plus READ_GRACE_SECONDS.
WATCH_WINDOW_SECONDS = 300
# Real API servers send a bookmark about every minute (kopf waits 70 s); no byte for this long means the
# connection is dead even though no error said so.
READ_GRACE_SECONDS = 90
CONNECT_TIMEOUT_SECONDS = 10
# Objects per list page: a few MB of JSON at most, projected before the next page is read.
PAGE_SIZE = 500


@dataclass(frozen=True)
class Backoff:
    """How reconnecting backs off: exponential with jitter, giving up after `attempts` failures in a row."""

    initial: float = 0.5
    maximum: float = 30.0
    attempts: int = 8


DEFAULT_BACKOFF = Backoff()


@dataclass(frozen=True)
class Listed(Generic[P]):
    """The whole collection as one (re)list found it; anything held before and absent here is gone."""

    stream: str
    items: list[P]


@dataclass(frozen=True)
class Changed(Generic[P]):
    stream: str
    is_deleted: bool
    item: P


@dataclass(frozen=True)
class StreamFailed:
    stream: str
    error: BotError


StreamEvent = Listed[P] | Changed[P] | StreamFailed


class EventSink(Protocol[P]):
    """Where a stream puts its events: a `queue.Queue`, or a watcher's own coalescing inbox."""

    def put(self, event: Listed[P] | Changed[P] | StreamFailed) -> None: ...


class _Gone(BackendUnavailable):
    """The resourceVersion (or a list's continue token) is too old (410): list again."""


class CollectionStream(Generic[P]):
    """List+watch one collection (`list_call` is a generated client method such as
    `AppsV1Api.list_deployment_for_all_namespaces`) and put `StreamEvent`s on `events`."""

    def __init__(
        self,
        name: str,
        list_call: Callable[..., Any],
        project: Callable[[dict[str, Any]], P | None],
        events: EventSink[P],
        *,
        args: tuple[str, ...] = (),
        label_selector: str | None = None,
        headers: dict[str, str] | None = None,
        watch_headers: dict[str, str] | None = None,
        page_size: int = PAGE_SIZE,
        window_seconds: int = WATCH_WINDOW_SECONDS,
        backoff: Backoff = DEFAULT_BACKOFF,
    ) -> None:
        self.name = name
        self._list_call = list_call
        self._project = project
        self._events = events
        self._args = args
        self._selector = {"label_selector": label_selector} if label_selector else {}
        self._headers = {"_headers": headers} if headers else {}
        watch_headers = watch_headers or headers
        self._watch_headers = {"_headers": watch_headers} if watch_headers else {}
        self._page_size = page_size
        self._window = window_seconds
        self._backoff = backoff
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._response: urllib3.BaseHTTPResponse | None = None

    # -- lifecycle -------------------------------------------------------------------------------------------

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name=f"watch-{self.name}", daemon=True)
        thread.start()
        return thread

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            response = self._response
        if response is not None:
            # Unblocks the reading thread at once (a plain close() would wait for the next chunk).
            response.shutdown()

    def run(self) -> None:
        try:
            self._run()
        except BotError as exc:
            if not self._stop.is_set():
                self._events.put(StreamFailed(self.name, exc))
        except Exception as exc:
            # A bug, not the cluster: still say so to the watcher rather than go silent on this collection.
            log.exception("watch stream crashed", stream=self.name)
            self._events.put(StreamFailed(self.name, BackendUnavailable(f"watching {self.name} failed: {exc!r}")))

    def _run(self) -> None:
        while not self._stop.is_set():
            resource_version = self._connect()
            if resource_version is None:
                return
            try:
                self._follow(resource_version)
            except BackendUnavailable as exc:
                if self._stop.is_set():
                    return
                # Events may have been missed while the connection was down: back off, then list again.
                log.info("watch connection lost, listing again", stream=self.name, error=str(exc))
                self._stop.wait(self._backoff.initial)

    # -- listing ---------------------------------------------------------------------------------------------

    def _connect(self) -> str | None:
        """List (with back-off on errors that a retry can fix) and hand the listing over; its resourceVersion."""
        retrying = Retrying(
            retry=retry_if_exception_type(BackendUnavailable),
            wait=wait_exponential_jitter(multiplier=self._backoff.initial, max=self._backoff.maximum),
            stop=stop_after_attempt(self._backoff.attempts),
            sleep=self._sleep,
            before_sleep=self._log_retry,
            reraise=True,
        )
        for attempt in retrying:
            with attempt:
                if self._stop.is_set():
                    return None
                items, resource_version = self._list()
                self._events.put(Listed(self.name, items))
                return resource_version
        return None  # pragma: no cover - Retrying either returns above or re-raises

    def _sleep(self, seconds: float) -> None:
        self._stop.wait(seconds)

    def _log_retry(self, state: RetryCallState) -> None:
        outcome = state.outcome
        log.warning(
            "listing failed, retrying",
            stream=self.name,
            attempt=state.attempt_number,
            error=str(outcome.exception()) if outcome is not None else None,
        )

    def _list(self) -> tuple[list[P], str]:
        items: list[P] = []
        token: str | None = None
        resource_version = ""
        while True:
            page_args: dict[str, Any] = {"limit": self._page_size, **self._selector, **self._headers}
            if token:
                page_args["_continue"] = token
            with self._translated(f"listing {self.name}"):
                response = self._list_call(
                    *self._args,
                    _preload_content=False,
                    _request_timeout=(CONNECT_TIMEOUT_SECONDS, READ_GRACE_SECONDS),
                    **page_args,
                )
                page = json.loads(response.data)
            for obj in page.get("items") or ():
                projected = self._projected(obj)
                if projected is not None:
                    items.append(projected)
            meta = page.get("metadata") or {}
            # The first page's resourceVersion is the snapshot every later page belongs to.
            resource_version = resource_version or str(meta.get("resourceVersion") or "")
            token = meta.get("continue") or None
            if not token:
                return items, resource_version

    # -- watching --------------------------------------------------------------------------------------------

    def _follow(self, resource_version: str) -> None:
        """Watch window after window until a 410 (then return, to list again) or `close()`."""
        while not self._stop.is_set():
            events = self._watch_window(resource_version)
            try:
                for event in events:
                    kind = event.get("type")
                    obj = event.get("object") or {}
                    if kind == "ERROR":
                        if obj.get("code") == 410:
                            raise _Gone(f"watching {self.name}: {obj.get('message') or 'expired'}")
                        raise BackendUnavailable(f"watching {self.name}: {obj.get('message') or obj}")
                    resource_version = str((obj.get("metadata") or {}).get("resourceVersion") or resource_version)
                    if kind == "BOOKMARK":
                        continue
                    projected = self._projected(obj)
                    if projected is not None:
                        self._events.put(Changed(self.name, kind == "DELETED", projected))
            except _Gone:
                log.info("watch expired (410), listing again", stream=self.name)
                return
            finally:
                events.close()

    def _watch_window(self, resource_version: str) -> Generator[dict[str, Any], None, None]:
        with self._translated(f"watching {self.name}"):
            response = self._list_call(
                *self._args,
                watch=True,
                resource_version=resource_version,
                allow_watch_bookmarks=True,
                timeout_seconds=self._window,
                _preload_content=False,
                _request_timeout=(CONNECT_TIMEOUT_SECONDS, self._window + READ_GRACE_SECONDS),
                **self._selector,
                **self._watch_headers,
            )
            with self._lock:
                self._response = response
            try:
                for line in _lines(response):
                    if self._stop.is_set():
                        return
                    if line:
                        yield json.loads(line)
            finally:
                with self._lock:
                    self._response = None
                response.release_conn()

    def _translated(self, what: str) -> contextlib.AbstractContextManager[None]:
        return _stream_errors(what, self._stop)

    def _projected(self, obj: dict[str, Any]) -> P | None:
        try:
            return self._project(obj)
        except (KeyError, TypeError, ValueError) as exc:
            # One odd object must not blind the watcher to the rest of the collection.
            meta = obj.get("metadata") or {}
            log.warning("object skipped", stream=self.name, name=meta.get("name"), error=str(exc))
            return None


def _lines(response: urllib3.BaseHTTPResponse) -> Iterator[bytes]:
    """The watch stream's events, one JSON document per line, however the chunks cut them."""
    buffer = b""
    for chunk in response.stream(amt=None, decode_content=False):
        buffer += chunk
        *complete, buffer = buffer.split(b"\n")
        yield from complete


@contextlib.contextmanager
def _stream_errors(what: str, stop: threading.Event) -> Iterator[None]:
    """`translating_errors`, plus: a 410 means list again, and nothing after `close()` is an error."""
    try:
        with translating_errors(what):
            try:
                yield
            except ApiException as exc:
                if exc.status == 410:
                    raise _Gone(f"{what}: resource version too old") from exc
                raise
            except json.JSONDecodeError as exc:
                # A line that is not JSON: the connection was cut mid-event.
                raise urllib3.exceptions.ProtocolError(f"unreadable watch event: {exc}") from exc
    except BackendUnavailable:
        if not stop.is_set():
            raise
