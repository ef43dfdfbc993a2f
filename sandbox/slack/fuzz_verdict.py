"""What counts as a crash when fuzzing the bot's Slack endpoint, tallied the same way by the bench and the test.

A crash is any of: an answer other than the one the request deserves (200 for a correctly signed request, 401 for a
forged one: a 500, Bolt's 404, a 401 for a genuine request, a 200 for a forged one); no answer within the timeout
(a hung request) or a dropped connection; a log line at ERROR or above, or one carrying an exception (an exception
escaping a listener reaches Bolt's error handler, or a listener's own `log.exception`); and a Python traceback in
anything the bot sent to Slack or answered to it. Warnings are counted, not failed: "ignored a malformed Slack
request" is the bot doing its job.
"""

from __future__ import annotations

import io
import json
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sandbox.slack.fuzz_requests import FuzzAnswer, FuzzRequest, leaks_traceback
from sandbox.slack.state import SlackState

# Enough examples to start debugging from without flooding the report.
SAMPLES_KEPT = 5
# Request bodies in samples are cut to this many characters.
SAMPLE_BODY_LENGTH = 300
MALFORMED_EVENT = "ignored a malformed Slack request"
# The flow's lines for a Slack call that Slack refused, which it handles (bot/flows.py, bot/adapters/slack_chat.py).
REFUSAL_EVENTS = frozenset({"slack refused a call", "side effect failed"})


class LogLines(io.TextIOBase):
    """A stream for `configure_logging(stream=…)`: keeps the JSON lines at WARNING and above, thread-safely."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending = ""
        self.records: list[dict[str, Any]] = []

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        with self._lock:
            self._pending += text
            *complete, self._pending = self._pending.split("\n")
            for line in complete:
                if line.strip():
                    self.records.append(_parse(line))
        return len(text)

    def crashes(self) -> list[dict[str, Any]]:
        """Lines that report a failure of the bot: an exception attached, or ERROR from the bot or Bolt.

        Not counted: slack_sdk's own ERROR line for a refused URL (it raises to the bot, which handles it), and the
        flow's report that Slack refused a call (`ChatRejected`: e.g. an ephemeral notice to a user id Slack does
        not know); those are handled outcomes, counted by `refusals()`.
        """
        with self._lock:
            return [r for r in self.records if _is_crash(r)]

    def refusals(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r for r in self.records if _is_refusal(r)]

    def count(self, event: str) -> int:
        with self._lock:
            return sum(1 for r in self.records if r.get("event") == event)

    def levels(self) -> dict[str, int]:
        with self._lock:
            return dict(Counter(str(r.get("level")) for r in self.records))


def _is_crash(record: dict[str, Any]) -> bool:
    if _is_refusal(record) or str(record.get("logger", "")).startswith("slack_sdk"):
        return False
    return "exception" in record or record.get("level") in ("error", "critical")


def _is_refusal(record: dict[str, Any]) -> bool:
    if record.get("event") not in REFUSAL_EVENTS:
        return False
    return "exception" not in record or "ChatRejected" in str(record["exception"])


def _parse(line: str) -> dict[str, Any]:
    try:
        parsed = json.loads(line)
    except ValueError:
        return {"level": "error", "event": "unparsable log line", "line": line[:SAMPLE_BODY_LENGTH]}
    return parsed if isinstance(parsed, dict) else {"level": "error", "event": "log line not an object"}


@dataclass
class FuzzTally:
    """Every answer, judged as it arrives (several sender threads record at once)."""

    statuses: Counter[str] = field(default_factory=Counter)
    by_kind: Counter[str] = field(default_factory=Counter)
    forged: int = 0
    wrong_answers: int = 0
    hung: int = 0
    tracebacks_in_answers: int = 0
    latencies: list[float] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, request: FuzzRequest, answer: FuzzAnswer) -> bool:
        """Judge one answer; True when it is the one the request deserves."""
        status = str(answer.status) if answer.transport_error is None else f"no answer ({answer.transport_error})"
        leaked = leaks_traceback(answer.body.decode("utf-8", "replace"))
        right = answer.status == request.expected_status and answer.transport_error is None and not leaked
        with self._lock:
            self.statuses[status] += 1
            self.by_kind[request.kind] += 1
            self.forged += request.signing != "valid"
            self.latencies.append(answer.latency)
            self.hung += answer.transport_error is not None
            self.tracebacks_in_answers += leaked
            if not right:
                self.wrong_answers += 1
                if len(self.samples) < SAMPLES_KEPT:
                    self.samples.append(_sample(request, answer))
        return right

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    def summary(self) -> dict[str, Any]:
        with self._lock:
            ordered = sorted(self.latencies)
            return {
                "requests": self.requests,
                "forged_signatures": self.forged,
                "statuses": dict(sorted(self.statuses.items())),
                "by_kind": dict(sorted(self.by_kind.items())),
                "wrong_answers": self.wrong_answers,
                "hung_requests": self.hung,
                "tracebacks_in_answers": self.tracebacks_in_answers,
                "latency_ms": {
                    "p50": _ms(ordered, 0.50),
                    "p99": _ms(ordered, 0.99),
                    "max": round(ordered[-1] * 1000, 1) if ordered else None,
                },
                "wrong_answer_samples": list(self.samples),
            }


def _ms(ordered: list[float], fraction: float) -> float | None:
    if not ordered:
        return None
    return round(ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1000, 1)


def _sample(request: FuzzRequest, answer: FuzzAnswer) -> dict[str, Any]:
    return {
        "kind": request.kind,
        "signing": request.signing,
        "forgery": request.forgery[:40],
        "content_type": request.content_type,
        "expected": request.expected_status,
        "status": answer.status,
        "transport_error": answer.transport_error,
        "answer": answer.body.decode("utf-8", "replace")[:SAMPLE_BODY_LENGTH],
        "body": request.body.decode("utf-8", "replace")[:SAMPLE_BODY_LENGTH],
    }


def slack_tracebacks(fake: SlackState) -> list[str]:
    """Every text the bot sent to Slack (Web API calls, response_url posts) that carries a Python traceback."""
    leaks: list[str] = []
    for call in fake.calls():
        texts = _strings(call.args)
        leaks += [f"{call.method}: {text[:SAMPLE_BODY_LENGTH]}" for text in texts if leaks_traceback(text)]
    for post in fake.responses():
        texts = _strings(post.body) if post.body is not None else [post.raw_body.decode("utf-8", "replace")]
        leaks += [f"response_url: {text[:SAMPLE_BODY_LENGTH]}" for text in texts if leaks_traceback(text)]
    return leaks


def slack_activity(fake: SlackState) -> dict[str, int]:
    """How much the bot said in Slack during the run, per Web API method, plus response_url posts."""
    counts = Counter(call.method for call in fake.calls())
    counts["response_url posts"] = len(fake.responses())
    return dict(sorted(counts.items()))


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)
