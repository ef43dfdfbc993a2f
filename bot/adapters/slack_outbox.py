"""The outbound budget: one scheduler per workspace for every Slack Web API call the chat adapter makes.

Slack limits what an app may send (slack.md §5): `chat.postMessage` about one message per second per channel
(short bursts tolerated), `chat.update` / `reactions.*` Tier 3 (≈ 50 a minute for the workspace),
`chat.postEphemeral` Tier 4 (≈ 100 a minute). Going over earns HTTP 429 and a `Retry-After`. Rather than send
and get bounced, every call first waits for a token of its buckets here, in priority order:

    URGENT    request messages, approval outcomes, final lines      never dropped, never overtaken
    NORMAL    answers to one person, unhealthy / event thread lines  never dropped
    PROGRESS  progress refreshes                                     coalesced, kept off a bucket's last tokens

Two parts: `OutboundSchedule` decides (pure: time is an argument, so unit tests use a fake clock), and
`SlackOutbox` blocks the calling thread until its call may go, sends it from that thread, and on a 429 pauses
the call's buckets for Retry-After and queues the call again in its old place instead of failing it.

No thread ever waits for another thread's work, only for tokens that time refills, so the pools cannot
deadlock: a PROGRESS call waiting forever holds no lock and no token an URGENT call needs, and an URGENT call
is granted ahead of it on any bucket they share. (Only the first in line of each bucket watches the clock; the
others are woken by whoever grants, replaces or withdraws the call ahead of them.) A PROGRESS update of a
message gives way to a newer update of the same message (the older call returns None), and gives up after
`progress_patience` (returns None too): the rollout thread then observes again and offers a newer one, so
progress slows down instead of failing.

Budgets are per replica: `replicas` divides them (every replica shares the workspace's budget), and a 429 —
from a neighbour's traffic, or a limit Slack tightened — pauses the bucket for Retry-After on top of that.
`scale` multiplies every rate (tests run Slack's minute in a second, as the fake Slack's `scale` does).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType
from typing import Final, Protocol, TypeVar

from bot.core.outbound import Priority

# Calls per minute per method for the workspace (Slack's tiers, slack.md §5.2); a method not listed is unpaced.
TIER_PER_MINUTE: Final[Mapping[str, float]] = MappingProxyType(
    {
        "chat.update": 50,
        "reactions.add": 50,
        "reactions.get": 50,
        "chat.postEphemeral": 100,
        "users.info": 100,
        "usergroups.users.list": 20,
    }
)
POST_METHOD: Final = "chat.postMessage"
# chat.postMessage: about one message per second per channel, with a short burst tolerated.
POSTS_PER_SECOND: Final = 1.0
POST_BURST: Final = 3.0
# PROGRESS never takes a bucket's last fifth: under pressure the tokens left go to what people act on.
PROGRESS_RESERVE: Final = 0.2
# Methods without a tier here (auth.test…) are called rarely: a bucket this large never holds them back.
UNPACED_PER_SECOND: Final = 1000.0
# How long a progress update may wait for budget before it is skipped (a newer one follows within seconds).
DEFAULT_PROGRESS_PATIENCE: Final = 2.0

T = TypeVar("T")


@dataclass(frozen=True)
class Budget:
    """What this replica may send: Slack's published limits, divided among `replicas`, sped up by `scale`."""

    tier_per_minute: Mapping[str, float] = field(default_factory=lambda: TIER_PER_MINUTE)
    posts_per_second: float = POSTS_PER_SECOND
    post_burst: float = POST_BURST
    replicas: int = 1
    scale: float = 1.0

    def __post_init__(self) -> None:
        if self.replicas < 1 or self.scale <= 0:
            raise ValueError("a Slack budget needs replicas >= 1 and scale > 0")

    def bucket_for(self, key: BucketKey) -> _Bucket:
        if key[0] == "channel":
            rate, burst = self.posts_per_second, self.post_burst
        elif key[1] in self.tier_per_minute:
            per_minute = self.tier_per_minute[key[1]]
            rate, burst = per_minute / 60.0, per_minute
        else:  # not paced, but a 429 still pauses it
            return _Bucket(capacity=UNPACED_PER_SECOND, per_second=UNPACED_PER_SECOND)
        return _Bucket(capacity=max(1.0, burst / self.replicas), per_second=rate * self.scale / self.replicas)


BucketKey = tuple[str, str]


@dataclass
class _Bucket:
    capacity: float
    per_second: float
    tokens: float = -1.0  # full on first use
    updated_at: float | None = None
    paused_until: float = 0.0

    def refill(self, now: float) -> None:
        if self.updated_at is None or self.tokens < 0:
            self.tokens = self.capacity
        else:
            self.tokens = min(self.capacity, self.tokens + max(0.0, now - self.updated_at) * self.per_second)
        self.updated_at = now

    def seconds_until_token(self, now: float, reserve: float) -> float:
        """0 when a call may take a token now; `reserve` is the share of capacity that must stay behind."""
        self.refill(now)
        needed = 1.0 + reserve * self.capacity if reserve else 1.0
        needed = min(needed, self.capacity)
        shortfall = max(0.0, needed - self.tokens) / self.per_second
        return max(shortfall, self.paused_until - now, 0.0)


class TicketState(Enum):
    WAITING = "waiting"
    GRANTED = "granted"
    SUPERSEDED = "superseded"  # a newer update of the same message took its place
    WITHDRAWN = "withdrawn"  # a progress update that waited longer than its patience


@dataclass(eq=False)
class Ticket:
    """One call waiting for (or holding) its turn."""

    seq: int
    method: str
    priority: Priority
    buckets: tuple[BucketKey, ...]
    coalesce_key: Hashable | None
    submitted_at: float
    state: TicketState = TicketState.WAITING

    @property
    def order(self) -> tuple[int, int]:
        return (int(self.priority), self.seq)


@dataclass
class OutboundSchedule:
    """Who may call Slack next. Pure bookkeeping: no threads, no clock reads (`now` is always an argument)."""

    budget: Budget = field(default_factory=Budget)
    _buckets: dict[BucketKey, _Bucket] = field(default_factory=dict)
    _waiting: list[Ticket] = field(default_factory=list)
    _seq: itertools.count[int] = field(default_factory=itertools.count)

    def submit(
        self,
        method: str,
        priority: Priority,
        now: float,
        *,
        channel: str | None = None,
        coalesce_key: Hashable | None = None,
    ) -> tuple[Ticket, list[Ticket]]:
        """Queue a call; returns its ticket and the waiting PROGRESS updates of the same message it replaces.

        The newest update takes the place in line of the oldest one it replaces, so a message refreshed often
        is not pushed back each time. URGENT and NORMAL tickets are never replaced.
        """
        seq = next(self._seq)
        replaced: list[Ticket] = []
        if coalesce_key is not None:
            replaced = [t for t in self._waiting if t.coalesce_key == coalesce_key and t.priority is Priority.PROGRESS]
            for old in replaced:
                old.state = TicketState.SUPERSEDED
                self._waiting.remove(old)
                seq = min(seq, old.seq)
        ticket = Ticket(seq, method, priority, self._keys(method, channel), coalesce_key, now)
        self._waiting.append(ticket)
        return ticket, replaced

    def grant(self, now: float) -> list[Ticket]:
        """Grant every waiting call whose buckets have a token, best first; a call never overtakes a better one
        waiting on a bucket they share."""
        granted: list[Ticket] = []
        blocked: set[BucketKey] = set()
        for ticket in sorted(self._waiting, key=lambda t: t.order):
            if blocked.intersection(ticket.buckets) or self._wait_of(ticket, now) > 0:
                blocked.update(ticket.buckets)
                continue
            for key in ticket.buckets:
                self._bucket(key).tokens -= 1.0
            ticket.state = TicketState.GRANTED
            self._waiting.remove(ticket)
            granted.append(ticket)
        return granted

    def next_grant_in(self, now: float) -> float | None:
        """Seconds until some waiting call might be granted (None when nothing waits)."""
        if not self._waiting:
            return None
        return min(self._wait_of(ticket, now) for ticket in self._waiting)

    def estimated_wait(self, ticket: Ticket, now: float) -> float:
        """Roughly how long `ticket` will wait: its buckets' pauses, or one refill per call ahead of it."""
        worst = 0.0
        for key in ticket.buckets:
            bucket = self._bucket(key)
            bucket.refill(now)
            ahead = sum(1 for t in self._waiting if key in t.buckets and t.order < ticket.order)
            refill = max(0.0, ahead + 1.0 - bucket.tokens) / bucket.per_second
            worst = max(worst, bucket.paused_until - now, refill)
        return worst

    def pause(self, ticket: Ticket, retry_after: float, now: float) -> None:
        """Slack answered 429: nothing more goes through the ticket's buckets for Retry-After."""
        for key in ticket.buckets:
            bucket = self._bucket(key)
            bucket.refill(now)
            bucket.tokens = 0.0
            bucket.paused_until = max(bucket.paused_until, now + retry_after)

    def requeue(self, ticket: Ticket) -> None:
        """A call Slack bounced waits again, in its old place in line (its sequence number is kept)."""
        ticket.state = TicketState.WAITING
        self._waiting.append(ticket)

    def withdraw(self, ticket: Ticket) -> bool:
        """Take a waiting ticket out of line (a progress update that lost patience); False if already granted."""
        if ticket.state is not TicketState.WAITING:
            return False
        ticket.state = TicketState.WITHDRAWN
        self._waiting.remove(ticket)
        return True

    def waiting(self) -> list[Ticket]:
        return sorted(self._waiting, key=lambda t: t.order)

    def firsts_in_line(self) -> set[Ticket]:
        """The best waiting call of each bucket: only these can be granted next (`grant` never lets a call
        overtake a better one on a bucket they share), so only these need to watch the clock."""
        best: dict[BucketKey, Ticket] = {}
        for ticket in self._waiting:
            for key in ticket.buckets:
                held = best.get(key)
                if held is None or ticket.order < held.order:
                    best[key] = ticket
        return set(best.values())

    def wait_of(self, ticket: Ticket, now: float) -> float:
        """Seconds until `ticket`'s buckets have a token for it (0: now, if nothing better waits)."""
        return self._wait_of(ticket, now)

    def _wait_of(self, ticket: Ticket, now: float) -> float:
        reserve = PROGRESS_RESERVE if ticket.priority is Priority.PROGRESS else 0.0
        return max((self._bucket(key).seconds_until_token(now, reserve) for key in ticket.buckets), default=0.0)

    def _keys(self, method: str, channel: str | None) -> tuple[BucketKey, ...]:
        if method == POST_METHOD:
            return (("channel", channel),) if channel else (("method", method),)
        return (("method", method),)

    def _bucket(self, key: BucketKey) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = self.budget.bucket_for(key)
        return bucket


class OutboxObserver(Protocol):
    """Where the outbox reports its queue (implemented by PrometheusMetrics)."""

    def slack_calls_queued(self, priority: str, delta: int) -> None: ...

    def slack_calls_in_flight(self, priority: str, delta: int) -> None: ...

    def slack_progress_coalesced(self) -> None: ...


class SlackOutbox:
    """Blocks each caller until its call fits the budget, then sends it from the caller's thread.

    `rate_limited(exc)` says whether an exception is Slack's 429 and how long to wait (None otherwise).

    Each waiting caller sleeps on its own condition. Only the first in line of each bucket sleeps with a timeout
    (until its bucket refills); the others sleep until they are granted, replaced, or become first in line. So
    a hundred queued reports cost a wake-up per grant, not a hundred.
    """

    def __init__(
        self,
        budget: Budget | None = None,
        *,
        rate_limited: Callable[[BaseException], float | None],
        observer: OutboxObserver | None = None,
        progress_patience: float = DEFAULT_PROGRESS_PATIENCE,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._schedule = OutboundSchedule(budget if budget is not None else Budget())
        self._rate_limited = rate_limited
        self._observer = observer
        self._patience = progress_patience
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._wakers: dict[Ticket, threading.Condition] = {}

    def call(
        self,
        method: str,
        send: Callable[[], T],
        *,
        priority: Priority,
        channel: str | None = None,
        coalesce_key: Hashable | None = None,
        retry_rate_limits: bool = True,
        on_queued: Callable[[float], None] | None = None,
    ) -> T | None:
        """Send when the budget allows; None when a newer update replaced this one or progress lost patience.

        A 429 pauses the method's buckets and the call waits its turn again; with `retry_rate_limits=False`
        (reads that have a cached answer to fall back on) the 429 is raised to the caller after the pause is noted.
        `on_queued(seconds)` is told the estimated wait when the call cannot go at once.
        """
        with self._lock:
            firsts = self._schedule.firsts_in_line()
            ticket, replaced = self._schedule.submit(
                method, priority, self._monotonic(), channel=channel, coalesce_key=coalesce_key
            )
            self._wakers[ticket] = threading.Condition(self._lock)
            self._count_queued(ticket, +1)
            for old in replaced:
                self._count_queued(old, -1)
                if self._observer is not None:
                    self._observer.slack_progress_coalesced()
            self._wake(replaced)  # the replaced callers return None at once
            self._pump(firsts)
            estimate = (
                None
                if ticket.state is TicketState.GRANTED
                else self._schedule.estimated_wait(ticket, self._monotonic())
            )
        if estimate is not None and on_queued is not None:
            on_queued(estimate)
        try:
            while True:
                if not self._wait_for_turn(ticket):
                    return None
                try:
                    return send()
                except Exception as exc:
                    wait = self._rate_limited(exc)
                    if wait is None:
                        raise
                    with self._lock:
                        now = self._monotonic()
                        self._schedule.pause(ticket, wait, now)
                        if retry_rate_limits:
                            self._schedule.requeue(ticket)
                            self._count_queued(ticket, +1)
                    if not retry_rate_limits:
                        raise
                finally:
                    self._count_in_flight(ticket, -1)
        finally:
            with self._lock:
                self._wakers.pop(ticket, None)

    def waiting(self) -> list[Ticket]:
        with self._lock:
            return self._schedule.waiting()

    def _wait_for_turn(self, ticket: Ticket) -> bool:
        """True once granted (counted in flight); False when replaced or withdrawn."""
        # Only an update can give up: a newer one will follow. A post (the first progress message) must be sent.
        is_update = ticket.priority is Priority.PROGRESS and ticket.coalesce_key is not None
        deadline = ticket.submitted_at + self._patience if is_update else None
        with self._lock:
            waker = self._wakers[ticket]
            while ticket.state is TicketState.WAITING:
                now = self._monotonic()
                if deadline is not None and now >= deadline:
                    firsts = self._schedule.firsts_in_line()
                    if self._schedule.withdraw(ticket):
                        self._count_queued(ticket, -1)
                        if self._observer is not None:
                            self._observer.slack_progress_coalesced()
                        self._wake(self._schedule.firsts_in_line() - firsts)
                        return False
                pause: float | None = None
                if ticket in self._schedule.firsts_in_line():
                    pause = max(self._schedule.wait_of(ticket, now), 0.001)
                if deadline is not None:
                    pause = min(pause if pause is not None else deadline - now, deadline - now)
                waker.wait(timeout=max(pause, 0.001) if pause is not None else None)
                self._pump()
            if ticket.state is not TicketState.GRANTED:
                return False
            self._count_queued(ticket, -1)
            self._count_in_flight(ticket, +1)
            return True

    def _pump(self, firsts: set[Ticket] | None = None) -> None:
        """Grant what may go now; wake the granted callers and whoever became first in line of a bucket."""
        before = self._schedule.firsts_in_line() if firsts is None else firsts
        granted = self._schedule.grant(self._monotonic())
        self._wake(granted)
        self._wake(self._schedule.firsts_in_line() - before)

    def _wake(self, tickets: Iterable[Ticket]) -> None:
        for ticket in tickets:
            waker = self._wakers.get(ticket)
            if waker is not None:
                waker.notify()

    def _count_queued(self, ticket: Ticket, delta: int) -> None:
        if self._observer is not None:
            self._observer.slack_calls_queued(ticket.priority.name.lower(), delta)

    def _count_in_flight(self, ticket: Ticket, delta: int) -> None:
        if self._observer is not None:
            self._observer.slack_calls_in_flight(ticket.priority.name.lower(), delta)
