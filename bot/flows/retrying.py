"""The flow's retry policies, in one place, on tenacity with the flow's injected sleep.

Every policy retries only what is worth retrying (`TemporaryError` and its kinds) and re-raises the last error
when it gives up, so the caller decides what a give-up means (fail the operation, log a side effect). The sleep
is injected, so flow tests run without waiting.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Final

from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt, wait_none

from bot.core.errors import ChatUnavailable, ConcurrentUpdate, TemporaryError

Sleep = Callable[[float], None]

# How often a compare-and-set may be lost before we give up; each loss means someone else made progress.
MAX_CAS_ATTEMPTS: Final = 8
# Transient backend errors while calling roll_back are retried this many times before the operation fails.
MAX_ROLL_BACK_ATTEMPTS: Final = 3
# A rollout watch interrupted by temporary errors (API server restarting…) is resumed this many times.
MAX_WATCH_ATTEMPTS: Final = 5
# Chat calls that follow a committed state change are tried this often when Slack is briefly unavailable
# (429s are already waited out inside the adapter), backing off from 0.5 s to at most this long between tries
# (about 20 s in all); what still fails is owed and made good by the sweeper.
CHAT_ATTEMPTS: Final = 7
MAX_CHAT_RETRY_DELAY: Final = timedelta(seconds=5)
# The first pause of a backend retry; it doubles with every attempt, and a longer hint from the error wins.
BACKEND_FIRST_DELAY: Final = 0.5


def compare_and_set(sleep: Sleep) -> Retrying:
    """Lost compare-and-sets: re-read and decide again at once, a bounded number of times."""
    return Retrying(
        retry=retry_if_exception_type(ConcurrentUpdate),
        stop=stop_after_attempt(MAX_CAS_ATTEMPTS),
        wait=wait_none(),
        sleep=sleep,
        reraise=True,
    )


def backend_calls(sleep: Sleep, attempts: int) -> Retrying:
    """A backend briefly unavailable: exponential back-off from 0.5 s, or longer when the error asks for it."""
    return Retrying(
        retry=retry_if_exception_type(TemporaryError),
        stop=stop_after_attempt(attempts),
        wait=_doubling_or_hint,
        sleep=sleep,
        reraise=True,
    )


def chat_calls(sleep: Sleep) -> Retrying:
    """Slack briefly unavailable after a committed change: a few tries, so the line is not lost."""
    return Retrying(
        retry=retry_if_exception_type(ChatUnavailable),
        stop=stop_after_attempt(CHAT_ATTEMPTS),
        wait=_hint_capped,
        sleep=sleep,
        reraise=True,
    )


def _hint(state: RetryCallState) -> float:
    error = state.outcome.exception() if state.outcome is not None else None
    return float(error.delay.total_seconds()) if isinstance(error, TemporaryError) else 0.0


def _doubling_or_hint(state: RetryCallState) -> float:
    doubled: float = BACKEND_FIRST_DELAY * 2 ** (state.attempt_number - 1)
    return max(doubled, _hint(state))


def _hint_capped(state: RetryCallState) -> float:
    return min(_doubling_or_hint(state), MAX_CHAT_RETRY_DELAY.total_seconds())
