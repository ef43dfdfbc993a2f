"""Fault injection shared by the simulated servers: the knobs every fault has, the table that arms them, a client.

A *fault rule* says which requests it applies to (each server defines that: kubesim matches an HTTP method and a
path glob, the fake Slack a Web API method glob) and what happens to a matching request: it waits `delay` seconds
(a hung server), then, if the rule has a `status`, answers with that error instead of doing the work. Each matching
request fires the rule with `probability`; a rule fires at most `count` times, then stays listed but inert. A rule
with a `seed` draws from its own random generator, so the same sequence of requests meets the same failures on
every run.

Rules are tried in the order they were added and the first that fires wins. Each server exposes them as
`POST /_sim/faults` (add one rule; the JSON body is the rule), `GET /_sim/faults` (the rules with their counters)
and `DELETE /_sim/faults` (clear); :class:`FaultClient` speaks that protocol from a test or a script.

What this is not: a chaos tool for real clusters, or a way to change what a request does when it succeeds.
"""

from __future__ import annotations

import json
import random
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

FAULTS_PATH = "/_sim/faults"
# A fault longer than this would outlive the test that armed it (pytest's timeout is 300 s).
MAX_DELAY_SECONDS = 600.0


class FaultSpec(BaseModel):
    """The knobs common to every fault rule; servers subclass it with their matching fields and `status`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    probability: float = Field(1.0, ge=0.0, le=1.0)
    delay: float = Field(0.0, ge=0.0, le=MAX_DELAY_SECONDS)
    count: int | None = Field(None, ge=1)
    seed: int | None = None


SpecT = TypeVar("SpecT", bound=FaultSpec)


class InvalidFault(ValueError):
    """A fault rule that does not parse; the message lists each bad field and is meant for the person writing it."""

    @classmethod
    def from_validation(cls, error: ValidationError) -> Self:
        problems = []
        for item in error.errors():
            where = ".".join(str(part) for part in item["loc"]) or "rule"
            problems.append(f"{where}: {item['msg']}")
        return cls("invalid fault rule: " + "; ".join(problems))


@dataclass
class ArmedFault(Generic[SpecT]):
    id: int
    spec: SpecT
    rng: random.Random
    seen: int = 0  # matching requests that were considered
    hits: int = 0  # of those, how many the fault fired on

    @property
    def is_spent(self) -> bool:
        return self.spec.count is not None and self.hits >= self.spec.count

    def describe(self) -> dict[str, Any]:
        return {"id": self.id, **self.spec.model_dump(), "seen": self.seen, "hits": self.hits}


@dataclass
class FaultTable(Generic[SpecT]):
    """The armed rules of one server; thread-safe, since the servers answer each request on its own thread."""

    spec_type: type[SpecT]
    _faults: list[ArmedFault[SpecT]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _next_id: int = 1

    def parse(self, raw: Any) -> SpecT:
        """A rule from decoded JSON, or :class:`InvalidFault` saying what is wrong with it."""
        if not isinstance(raw, dict):
            raise InvalidFault("invalid fault rule: the body must be a JSON object")
        try:
            return self.spec_type.model_validate(raw)
        except ValidationError as exc:
            raise InvalidFault.from_validation(exc) from exc

    def add(self, spec: SpecT) -> dict[str, Any]:
        with self._lock:
            armed = ArmedFault(self._next_id, spec, random.Random(spec.seed))
            self._next_id += 1
            self._faults.append(armed)
            return armed.describe()

    def draw(self, applies: Callable[[SpecT], bool]) -> SpecT | None:
        """The rule that fires on this request, if any; counts the request against every rule it was tried on."""
        with self._lock:
            for armed in self._faults:
                if armed.is_spent or not applies(armed.spec):
                    continue
                armed.seen += 1
                if armed.rng.random() < armed.spec.probability:
                    armed.hits += 1
                    return armed.spec
            return None

    def describe(self) -> list[dict[str, Any]]:
        with self._lock:
            return [armed.describe() for armed in self._faults]

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()


class FaultClient:
    """Arms, lists and clears faults on a running simulated server over its `/_sim/faults` endpoint."""

    def __init__(self, base_url: str, *, timeout: float = 10.0) -> None:
        self._url = base_url.rstrip("/") + FAULTS_PATH
        self._timeout = timeout

    def add(self, **rule: Any) -> dict[str, Any]:
        """Arm one rule (keyword arguments are the JSON fields); returns it with its id and counters."""
        added: dict[str, Any] = self._call("POST", {key: value for key, value in rule.items() if value is not None})
        return added

    def list(self) -> list[dict[str, Any]]:
        faults: list[dict[str, Any]] = self._call("GET")["faults"]
        return faults

    def clear(self) -> None:
        self._call("DELETE")

    def _call(self, method: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 - the URL is the simulated server's own http:// address
            self._url, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:  # noqa: S310
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            answer = json.loads(exc.read() or b"{}")
            raise InvalidFault(answer.get("message") or answer.get("detail") or str(exc)) from exc
