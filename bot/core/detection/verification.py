"""Verifying a rollback: after it succeeded, is the target healthy for `healthy_for`, or failing again?

The caller keeps judging the rolled-back target with the ordinary rules (fresh `Observations` from the moment
the rollback succeeded) and asks `verify_rollback` each time. A rollback is `healthy` once the rules say HEALTHY
(which already means healthy for `healthy_for`), `failing` as soon as a rule holds (the signal opens a new
incident), and `pending` otherwise, but not forever: a target that is neither after `healthy_for +
stall_after` is reported failing, because "still waiting" is not an answer people can act on.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from bot.core.catalog import DetectSettings
from bot.core.detection.verdicts import Health, Signal, Verdict


class VerificationState(StrEnum):
    PENDING = "pending"
    HEALTHY = "healthy"
    FAILING = "failing"


class Verification(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    state: VerificationState
    signal: Signal | None = None
    # How long it has been healthy (for "healthy for 2m"), or how long we waited in vain.
    elapsed: timedelta = timedelta(0)
    summary: str = ""

    @property
    def is_finished(self) -> bool:
        return self.state is not VerificationState.PENDING


def verify_rollback(verdict: Verdict, succeeded_at: datetime, now: datetime, settings: DetectSettings) -> Verification:
    elapsed = now - succeeded_at
    if verdict.is_failing:
        return Verification(
            state=VerificationState.FAILING, signal=verdict.signal, elapsed=elapsed, summary=verdict.summary
        )
    if verdict.health is Health.HEALTHY:
        return Verification(state=VerificationState.HEALTHY, elapsed=settings.healthy_for, summary=verdict.summary)
    if elapsed >= settings.healthy_for + settings.stall_after:
        return Verification(state=VerificationState.FAILING, elapsed=elapsed, summary=verdict.summary)
    return Verification(state=VerificationState.PENDING, elapsed=elapsed, summary=verdict.summary)
