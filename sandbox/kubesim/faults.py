"""Fault injection for kubesim: make chosen API requests fail or hang, the way a sick kube-apiserver does.

A rule matches on the HTTP `method` (`"*"` for any) and a `path` glob, matched like :func:`fnmatch.fnmatchcase` on
the URL path without its query string (so `*` also crosses `/`: `/apis/apps/v1/namespaces/*/deployments/*` matches
`…/deployments/web` and `…/deployments/web/status`). An injected error is a real `metav1.Status` with the reason
the API server uses for that code (409 → `Conflict`, 500 → `InternalError`, …) and the message `injected fault`,
so kubectl, helm and the Python client react exactly as they would to the real thing; a 429 also carries
`Retry-After`, as API Priority and Fairness sends it.

Watches: a watch is the `GET` of a collection with `?watch=true`, and a rule acts *before the stream opens*: a
`status` refuses the watch (the client sees its watch request fail), a `delay` holds the response headers back
(the client's watch hangs while connecting). Events already streaming are never cut; `"watch": true` or
`false` restricts a rule to watches or to everything else.

`/_sim/faults` itself is never subject to faults. The common knobs (probability, count, seed, delay) and the
HTTP helper are in :mod:`sandbox.faults`.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any, Self

from pydantic import Field, field_validator, model_validator

from sandbox.faults import FaultSpec
from sandbox.kubesim.store import ApiError

INJECTED_MESSAGE = "injected fault"
# The `reason` kube-apiserver puts in a Status for each code (k8s.io/apimachinery metav1.StatusReason).
REASONS: dict[int, str] = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    410: "Expired",
    413: "RequestEntityTooLarge",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}
HTTP_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})


class KubeFault(FaultSpec):
    """One kubesim fault rule, as posted to `/_sim/faults`."""

    method: str = "*"
    path: str
    status: int | None = Field(None, ge=400, le=599)
    watch: bool | None = None
    retry_after: int | None = Field(None, ge=0)

    @field_validator("method")
    @classmethod
    def _known_method(cls, value: str) -> str:
        method = value.upper()
        if method != "*" and method not in HTTP_METHODS:
            raise ValueError(f"must be * or one of {', '.join(sorted(HTTP_METHODS))}")
        return method

    @field_validator("path")
    @classmethod
    def _absolute_path(cls, value: str) -> str:
        if not value.startswith(("/", "*")):
            raise ValueError("must be a URL path glob such as /apis/apps/v1/namespaces/*/deployments/*")
        return value

    @model_validator(mode="after")
    def _does_something(self) -> Self:
        if self.status is None and not self.delay:
            raise ValueError("give a status to answer with, a delay to hang for, or both")
        return self

    def applies_to(self, method: str, path: str, *, is_watch: bool) -> bool:
        return (
            self.method in ("*", method)
            and (self.watch is None or self.watch == is_watch)
            and fnmatchcase(path, self.path)
        )

    def error(self) -> ApiError:
        assert self.status is not None
        details: dict[str, Any] | None = None
        retry_after = self.retry_seconds
        if retry_after is not None:
            details = {"retryAfterSeconds": retry_after}
        return ApiError(self.status, REASONS.get(self.status, "Unknown"), INJECTED_MESSAGE, details)

    @property
    def retry_seconds(self) -> int | None:
        """Retry-After for the answer: as configured, and 1 s for a 429 by default (what APF sends)."""
        if self.retry_after is not None:
            return self.retry_after
        return 1 if self.status == 429 else None
