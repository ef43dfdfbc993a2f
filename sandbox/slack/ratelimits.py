"""Token-bucket rate limiting the way Slack documents it (slack.md §5.2, §7.3).

Each Web API method belongs to a tier with a per-minute budget per (team, method); ``chat.postMessage`` is
"special": about one message per second per channel, with short bursts tolerated. A rejected call gets HTTP 429
and an integer ``Retry-After``. Time comes from the fake's clock; ``scale`` speeds refills up so a test can
exercise throttling without waiting minutes (``scale=60`` turns "per minute" into "per second").
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Literal

from sandbox.slack.seed import Clock

RateLimitMode = Literal["off", "strict"]

# Calls per minute per tier (docs.slack.dev/apis/web-api/rate-limits: "1+", "20+", "50+", "100+").
TIER_PER_MINUTE: dict[str, float] = {"tier1": 1, "tier2": 20, "tier3": 50, "tier4": 100}
# chat.postMessage: ~1 message/second/channel; Slack tolerates short bursts, we allow three.
POST_MESSAGE_PER_SECOND = 1.0
POST_MESSAGE_BURST = 3


@dataclass
class _Bucket:
    capacity: float
    refill_per_second: float
    tokens: float
    updated_at: float

    def take(self, now: float) -> float:
        """Consume one token; return 0 on success, else the seconds until one is available."""
        elapsed = max(0.0, now - self.updated_at)
        self.tokens = min(self.capacity, self.tokens + elapsed * self.refill_per_second)
        self.updated_at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.refill_per_second


class RateLimiter:
    """Decides whether a call may proceed; returns the ``Retry-After`` seconds when it may not."""

    def __init__(self, clock: Clock, mode: RateLimitMode = "off", scale: float = 1.0) -> None:
        if scale <= 0:
            raise ValueError("scale must be positive")
        self.mode: RateLimitMode = mode
        self.scale = scale
        self._clock = clock
        self._buckets: dict[tuple[str, ...], _Bucket] = {}
        self._lock = threading.Lock()
        self.tier_per_minute = dict(TIER_PER_MINUTE)

    def reset(self) -> None:
        with self._lock:
            self._buckets.clear()

    def check(self, team_id: str, method: str, tier: str | None, channel: str | None) -> int | None:
        """Return None when allowed, else an integer Retry-After (≥ 1 s, as Slack never sends 0)."""
        if self.mode == "off":
            return None
        now = self._clock.now()
        with self._lock:
            if method == "chat.postMessage" and channel:
                wait = self._bucket(
                    ("channel", team_id, channel), POST_MESSAGE_BURST, POST_MESSAGE_PER_SECOND, now
                ).take(now)
            elif tier in self.tier_per_minute:
                per_minute = self.tier_per_minute[tier]
                wait = self._bucket(("method", team_id, method), per_minute, per_minute / 60.0, now).take(now)
            else:
                return None
        if wait <= 0:
            return None
        return max(1, math.ceil(wait))

    def _bucket(self, key: tuple[str, ...], capacity: float, per_second: float, now: float) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(capacity, per_second * self.scale, capacity, now)
            self._buckets[key] = bucket
        return bucket
