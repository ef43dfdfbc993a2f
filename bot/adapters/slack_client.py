"""The slack_sdk WebClient the bot uses, and what a 429 looks like to it.

`build_web_client` gives Bolt's listener clients their retries (dropped connections, 429 after Retry-After);
`SlackChat` takes a copy without the 429 handler (`without_rate_limit_retries`), because its outbox waits
Retry-After for the whole method instead of sleeping in one thread.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any, Protocol

import structlog
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler, RetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState

from bot.adapters.slack_outbox import OutboxObserver

log = structlog.get_logger(__name__)

# Slack's own retries: how long the WebClient may sleep on a 429 before giving the decision back to the flow.
DEFAULT_MAX_RETRY_WAIT = timedelta(seconds=30)
RATE_LIMITED = frozenset({"ratelimited", "rate_limited"})


class SlackApiObserver(OutboxObserver, Protocol):
    """Where SlackChat reports what Slack answered and its outbox's queue (implemented by PrometheusMetrics)."""

    def slack_api_error(self, method: str, error: str) -> None: ...

    def slack_ratelimited(self, method: str, retry_after_seconds: float) -> None: ...


def retry_after_seconds(headers: Mapping[str, Any] | Any) -> float | None:
    """The Retry-After header as seconds; tolerant of list values, odd casing and non-integers."""
    if headers is None:
        return None
    try:
        items = list(headers.items())
    except AttributeError:
        return None
    for key, value in items:
        if str(key).lower() == "retry-after":
            raw = value[0] if isinstance(value, list | tuple) and value else value
            try:
                return max(0.0, float(str(raw).strip()))
            except ValueError:
                return None
    return None


class RateLimitRetryHandler(RateLimitErrorRetryHandler):
    """Sleeps Retry-After (+ up to 0.5 s jitter) and tries again; reports every 429 it retries.

    Unlike the SDK's handler it does not crash on a non-integer Retry-After, and it gives up when Slack asks
    for a longer wait than `max_wait`: blocking a thread for minutes is worse than letting the flow retry.
    """

    def __init__(
        self,
        max_retry_count: int = 3,
        *,
        max_wait: timedelta = DEFAULT_MAX_RETRY_WAIT,
        observer: SlackApiObserver | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(max_retry_count=max_retry_count)
        self._max_wait = max_wait.total_seconds()
        self._observer = observer
        self._sleep = sleep

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if response is None or response.status_code != 429:
            return False
        wait = retry_after_seconds(response.headers)
        return wait is None or wait <= self._max_wait

    def prepare_for_next_attempt(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> None:
        if response is None:  # pragma: no cover (only called after _can_retry saw a response)
            raise error if error is not None else RuntimeError("retry without a response")
        wait = retry_after_seconds(response.headers)
        wait = 1.0 if wait is None else wait
        if self._observer is not None:
            self._observer.slack_ratelimited(_method_of(request.url), wait)
        log.warning("slack rate limited, waiting", method=_method_of(request.url), retry_after=wait)
        state.next_attempt_requested = True
        self._sleep(wait + random.uniform(0, 0.5))  # noqa: S311 (jitter, not cryptography)
        state.increment_current_attempt()


def _method_of(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]


def build_web_client(
    token: str,
    *,
    base_url: str = "https://slack.com/api/",
    observer: SlackApiObserver | None = None,
    max_rate_limit_retries: int = 3,
    max_connection_retries: int = 2,
    max_retry_wait: timedelta = DEFAULT_MAX_RETRY_WAIT,
    timeout: int = 15,
) -> WebClient:
    """The WebClient the bot uses everywhere (Bolt's listener clients copy its base_url and retry handlers)."""
    return WebClient(
        token=token,
        base_url=base_url,
        timeout=timeout,
        retry_handlers=[
            ConnectionErrorRetryHandler(max_retry_count=max_connection_retries),
            RateLimitRetryHandler(max_rate_limit_retries, max_wait=max_retry_wait, observer=observer),
        ],
    )


def error_code(exc: SlackApiError) -> str:
    """Slack's error code for a failed call; `ratelimited` for any 429, `http_<status>` without a body."""
    response = exc.response
    error = response.get("error") if isinstance(response.data, dict) else None
    if response.status_code == 429:
        return "ratelimited"
    return str(error) if error else f"http_{response.status_code}"


def rate_limit_wait(exc: BaseException) -> float | None:
    """Retry-After of a 429 (or of postMessage's HTTP 200 `rate_limited`); None for every other failure."""
    if isinstance(exc, SlackApiError) and error_code(exc) in RATE_LIMITED:
        return retry_after_seconds(exc.response.headers) or 1.0
    return None


def without_rate_limit_retries(client: WebClient) -> WebClient:
    """The same client minus its 429 handler (the outbox waits instead); connection retries stay."""
    handlers: list[RetryHandler] = [
        handler for handler in client.retry_handlers if not isinstance(handler, RateLimitErrorRetryHandler)
    ]
    if len(handlers) == len(client.retry_handlers):
        return client
    return WebClient(
        token=client.token,
        base_url=client.base_url,
        timeout=client.timeout,
        headers=dict(client.headers),
        retry_handlers=handlers,
    )
