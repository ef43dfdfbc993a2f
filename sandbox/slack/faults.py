"""Storms on the fake Slack Web API: make chosen methods answer 429 or 5xx, or hang, with a probability.

Where :meth:`FakeSlack.fail_next` arms one exact failure for the next call, a storm rule is statistical: it matches
Web API methods with a glob (``chat.*``, ``reactions.add``, ``*``; :func:`fnmatch.fnmatchcase`), fires on each
matching call with ``probability`` (reproducibly with a ``seed``), at most ``count`` times, and may ``delay`` the
answer. What Slack sends back, and what the fake imitates:

- ``status=429``: ``{"ok": false, "error": "ratelimited"}`` with an integer ``Retry-After`` (default 1 s), which
  slack_sdk's ``RateLimitErrorRetryHandler`` honours;
- ``status=5xx``: ``{"ok": false, "error": "internal_error"}`` (``service_unavailable`` for 503), which slack_sdk
  raises as ``SlackApiError`` and its ``ServerErrorRetryHandler`` retries.

Armed ``fail_next``/``delay``/``drop_connection`` faults are judged first; a storm only touches calls they left
alone. Storm answers are recorded as injected calls, so ``assert_no_errors()`` does not count them. Rules are
managed with ``FakeSlack.inject_fault()``/``fault_rules()``/``clear_faults()`` in process, or over HTTP on
``/_sim/faults`` (:class:`sandbox.faults.FaultClient`).
"""

from __future__ import annotations

import json
from fnmatch import fnmatchcase
from typing import Any, Self

from pydantic import Field, field_validator, model_validator

from sandbox.faults import FaultSpec, FaultTable, InvalidFault

# Error codes Slack documents for these statuses (docs.slack.dev: "ratelimited", "internal_error",
# "service_unavailable"); any other 5xx gets the generic internal_error.
DEFAULT_ERRORS: dict[int, str] = {429: "ratelimited", 503: "service_unavailable"}
DEFAULT_RETRY_AFTER_SECONDS = 1


class SlackFault(FaultSpec):
    """One storm rule on the fake Slack Web API."""

    method: str = "*"
    status: int | None = None
    error: str | None = None
    retry_after: int | None = Field(None, ge=0)

    @field_validator("status")
    @classmethod
    def _slack_failure_status(cls, value: int | None) -> int | None:
        if value is not None and value != 429 and not 500 <= value <= 599:
            raise ValueError("must be 429 (rate limited) or a 5xx server error")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.status is None and not self.delay:
            raise ValueError("give a status to answer with, a delay to hang for, or both")
        if self.retry_after is not None and self.status != 429:
            raise ValueError("retry_after only goes with status 429")
        return self

    def applies_to(self, method: str) -> bool:
        return fnmatchcase(method, self.method)

    def answer(self) -> tuple[int, dict[str, Any], dict[str, str]]:
        """(HTTP status, body, headers) of the injected failure."""
        assert self.status is not None
        error = self.error or DEFAULT_ERRORS.get(self.status, "internal_error")
        headers: dict[str, str] = {}
        if self.status == 429:
            seconds = DEFAULT_RETRY_AFTER_SECONDS if self.retry_after is None else self.retry_after
            headers["Retry-After"] = str(seconds)
        return self.status, {"ok": False, "error": error}, headers


def fault_control(table: FaultTable[SlackFault], http_method: str, body: bytes) -> tuple[int, dict[str, Any]]:
    """Answer a ``/_sim/faults`` request: POST arms a rule, GET lists the rules, DELETE clears them."""
    if http_method == "GET":
        return 200, {"ok": True, "faults": table.describe()}
    if http_method == "DELETE":
        table.clear()
        return 200, {"ok": True, "faults": []}
    if http_method != "POST":
        return 405, {"ok": False, "error": "method_not_allowed", "detail": "use GET, POST or DELETE"}
    try:
        spec = table.parse(json.loads(body or b"null"))
    except InvalidFault as exc:
        return 400, {"ok": False, "error": "invalid_fault", "detail": str(exc)}
    except ValueError:
        return 400, {"ok": False, "error": "invalid_fault", "detail": "the fault rule must be a JSON object"}
    return 201, {"ok": True, **table.add(spec)}
