"""The catalog's automatic-rollback settings: which incidents roll a target back without waiting for a human
(`targets.<name>.auto_rollback`, off unless set), and the limits that keep that safe (`defaults.auto_rollback_limits`).

    defaults:
      auto_rollback_limits: {per_target: 1/1h, per_context: 3/10m}
    targets:
      bootcamp:
        auto_rollback: {on: [ProgressDeadlineExceeded, CrashLoopBackOff, alert, pipeline], countdown: 2m, approvals: 0}

`on` lists incident reasons as the card's metadata spells them (case-sensitive) and the sources `alert` and
`pipeline`. A limit is `COUNT/WINDOW`: at most COUNT automatic rollbacks within any WINDOW.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Final

from pydantic import BeforeValidator, Field, field_validator, model_validator

from bot.core.catalog_types import PositiveDuration, _Strict, format_duration, parse_duration

# The incident sources a policy may list next to reasons (a watch-detected incident is selected by its reason).
SOURCE_WORDS: Final = frozenset({"alert", "pipeline"})
# Reasons the detection rules produce (detection.md §6.2–6.5), to catch a mistyped one in `rollbot check-config`;
# any other word is accepted as is (an Alertmanager alert's reason is its alertname).
KNOWN_REASONS: Final = frozenset(
    {
        "ProgressDeadlineExceeded",
        "ReplicaFailure",
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
        "CrashLoopBackOff",
        "Unhealthy",
        "Failed",
        "Stalled",
        "failed",
        "FAILED",
        "TasksFailedToStart",
    }
)
_LIMIT = re.compile(r"\s*(\d+)\s*/\s*(\S+)\s*")


class RateLimit(_Strict):
    """At most `count` automatic rollbacks within any `window`."""

    count: int = Field(ge=1)
    window: PositiveDuration

    def __str__(self) -> str:
        return f"{self.count}/{format_duration(self.window)}"


def _parse_limit(value: object) -> object:
    if not isinstance(value, str):
        return value
    match = _LIMIT.fullmatch(value)
    if match is None:
        raise ValueError(f"{value!r} is not a limit like 1/1h (at most COUNT rollbacks per WINDOW)")
    try:
        window = parse_duration(match.group(2))
    except ValueError:
        raise ValueError(f"{value!r}: the window must be a duration such as 10m or 1h") from None
    return {"count": int(match.group(1)), "window": window}


Limit = Annotated[RateLimit, BeforeValidator(_parse_limit)]


class AutoRollbackLimits(_Strict):
    """Per target: how many automatic rollbacks in a window. Per context (cluster or AWS region): how many trip
    the breaker, after which every automatic rollback there is a plain card until `/rollback auto resume`."""

    per_target: Limit = RateLimit(count=1, window=timedelta(hours=1))
    per_context: Limit = RateLimit(count=3, window=timedelta(minutes=10))


class AutoRollbackSettings(_Strict):
    """One target's opt-in: the incidents that start a countdown, its length, and the approvals it then needs."""

    on: tuple[str, ...]
    countdown: PositiveDuration = timedelta(minutes=2)
    # 0: the rollback runs when the countdown ends; N: it is requested then and waits for N approvals.
    approvals: int = Field(default=0, ge=0, description="must be ≥ 0")

    @model_validator(mode="before")
    @classmethod
    def _yaml_on_key(cls, value: object) -> object:
        # YAML 1.1 (PyYAML, hence the catalog loader) reads a bare `on:` key as the boolean true.
        if isinstance(value, dict) and True in value and "on" not in value:
            value = {("on" if key is True else key): item for key, item in value.items()}
        return value

    @field_validator("on")
    @classmethod
    def _words(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("list at least one incident reason or source (alert, pipeline)")
        for word in value:
            if not word or word != word.strip() or " " in word:
                raise ValueError(f"{word!r} is not a reason word (one word, as the card's metadata shows it)")
            near = _case_twin(word)
            if near is not None:
                raise ValueError(f"{word!r}: reasons are case-sensitive — did you mean {near}?")
        if len(set(value)) != len(value):
            raise ValueError("lists a word twice")
        return value

    def selects(self, reason: str, source_word: str | None) -> bool:
        """Whether an incident with this reason, reported by this source (`alert`, `pipeline`), is listed."""
        return reason in self.on or (source_word is not None and source_word in self.on)


def _case_twin(word: str) -> str | None:
    """The known reason or source `word` equals but for case (a typo that would silently never match)."""
    if word in KNOWN_REASONS or word in SOURCE_WORDS:
        return None
    twins = [known for known in (*sorted(KNOWN_REASONS), *sorted(SOURCE_WORDS)) if known.lower() == word.lower()]
    return " or ".join(twins) if twins else None


def auto_rollback_problems(
    name: str, settings: AutoRollbackSettings, *, has_channel: bool, approvers: int, has_groups: bool
) -> list[str]:
    """What keeps one target's automatic rollback from ever working, as `path: problem` lines."""
    path = f"targets.{name}.auto_rollback"
    problems: list[str] = []
    if not has_channel:
        problems.append(
            f"{path}: the countdown runs on the incident card, and no channel is set — "
            f"add targets.{name}.detect.channel or defaults.detect.channel"
        )
    if settings.approvals and not has_groups and approvers < settings.approvals:
        problems.append(
            f"{path}.approvals: {settings.approvals} approvals needed but only {approvers} approvers listed"
        )
    return problems


def dump_limits(limits: AutoRollbackLimits) -> dict[str, Any]:
    return {"per_target": str(limits.per_target), "per_context": str(limits.per_context)}
