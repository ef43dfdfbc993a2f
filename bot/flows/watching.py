"""One watcher per context: replicas compete for a fenced lease per watched context; the holder watches it.

Every replica runs `ContextWatching`: for each scope of the watch plan it renews the lease it holds (every
`renew_every`) or tries to take the lease nobody holds. Taking one starts that scope's `FailureWatcher` in a
thread; the watcher lists before it reports changes, so the new holder judges from a complete picture (its rule
memory starts empty: at worst a signal is delayed by its hold time, never invented). A refused renewal, a
watcher that gives up, or `stop()` ends the watcher and drops the context's memory. A holder that dies stops
renewing; its lease lapses after `ttl` and another replica takes it at its next attempt, so a context is
watched again within `ttl + renew_every` (15 s + 5 s by default).

Every sighting is handed to the incident flow with the lease's fencing token; the store refuses a write with a
stale token, so a paused ex-holder cannot open or change incidents once someone else watches its context.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Final

from bot.core.catalog import BackendKind, WatchScope
from bot.core.detection import Sighting
from bot.core.errors import BotError, FencedOut
from bot.core.watch_plan import lease_name
from bot.flows.incidents import IncidentFlow
from bot.ports import ContextFence, ContextLeases, FailureWatcher

log = logging.getLogger("rollbot.flows.watching")

# The holder renews this often; the others try to take a free lease just as often.
DEFAULT_RENEW_EVERY: Final = timedelta(seconds=5)
# A lease not renewed for this long lapses: with the renewal above, takeover within 20 s of a holder's death.
DEFAULT_LEASE_TTL: Final = timedelta(seconds=15)
# How often time-held rules and pending verifications are judged again without a new sighting.
DEFAULT_TICK_EVERY: Final = timedelta(seconds=1)


@dataclass
class _Holding:
    fence: ContextFence
    stop: threading.Event
    thread: threading.Thread


class ContextWatching:
    def __init__(
        self,
        *,
        scopes: Sequence[WatchScope],
        watchers: Mapping[BackendKind, FailureWatcher],
        leases: ContextLeases,
        incidents: IncidentFlow,
        replica_id: str,
        ttl: timedelta = DEFAULT_LEASE_TTL,
        renew_every: timedelta = DEFAULT_RENEW_EVERY,
        tick_every: timedelta = DEFAULT_TICK_EVERY,
    ) -> None:
        self._scopes = [scope for scope in scopes if scope.backend in watchers]
        self._watchers = watchers
        self._leases = leases
        self._incidents = incidents
        self._replica = replica_id
        self._ttl = ttl
        self._renew_every = renew_every
        self._tick_every = tick_every
        self._held: dict[str, _Holding] = {}
        self._mutex = threading.Lock()
        self._stopping = threading.Event()
        self._loops: list[threading.Thread] = []

    def start(self) -> ContextWatching:
        # Two threads: the incident tick and sweep may wait on Redis or Slack under load; the lease renewals
        # must not wait with them, or a busy holder loses its contexts (and relists) for nothing.
        self._loops = [
            threading.Thread(target=self._compete_forever, name="rollbot-contexts", daemon=True),
            threading.Thread(target=self._tick_forever, name="rollbot-incident-tick", daemon=True),
        ]
        for loop in self._loops:
            loop.start()
        return self

    def stop(self) -> None:
        """Stop watching and give every context back at once, so another replica takes it without waiting."""
        self._stopping.set()
        for loop in self._loops:
            loop.join(timeout=5)
        with self._mutex:
            names = list(self._held)
        for name in names:
            self._drop(name, release=True)

    def held(self) -> list[str]:
        with self._mutex:
            return sorted(self._held)

    def compete(self) -> None:
        """One round: renew what this replica holds, try to take what nobody holds."""
        for scope in self._scopes:
            name = lease_name(scope)
            with self._mutex:
                holding = self._held.get(name)
            if holding is not None:
                if not holding.thread.is_alive():
                    self._drop(name, release=True)  # its watcher gave up: let someone else try
                elif not self._leases.renew(holding.fence, self._replica, self._ttl):
                    log.warning("lost a watch lease", extra={"lease": name})
                    self._drop(name, release=False)
                continue
            fence = self._leases.acquire(name, self._replica, self._ttl)
            if fence is not None:
                self._take(scope, fence)

    def _take(self, scope: WatchScope, fence: ContextFence) -> None:
        stop = threading.Event()
        self._incidents.context_taken(fence)
        thread = threading.Thread(
            target=self._watch, args=(scope, fence, stop), name=f"watch-{fence.lease}", daemon=True
        )
        with self._mutex:
            self._held[fence.lease] = _Holding(fence, stop, thread)
        log.info("watching a context", extra={"lease": fence.lease, "token": fence.token})
        thread.start()

    def _watch(self, scope: WatchScope, fence: ContextFence, stop: threading.Event) -> None:
        def report(sighting: Sighting) -> None:
            if stop.is_set():
                return
            try:
                self._incidents.on_sighting(sighting, scope.backend, fence)
            except FencedOut:
                stop.set()  # someone else watches this context now
            except Exception:  # one object's trouble must not end the watch of a whole context
                log.exception("handling a sighting failed", extra={"lease": fence.lease})

        try:
            self._watchers[scope.backend].watch(scope, report, stop)
        except BotError:
            log.exception("a watcher gave up", extra={"lease": fence.lease})

    def _drop(self, name: str, *, release: bool) -> None:
        with self._mutex:
            holding = self._held.pop(name, None)
        if holding is None:
            return
        holding.stop.set()
        self._incidents.context_lost(name)
        if release:
            try:
                self._leases.release(holding.fence, self._replica)
            except BotError:
                log.warning("could not release a watch lease; it lapses by itself", extra={"lease": name})

    def _compete_forever(self) -> None:
        while not self._stopping.is_set():
            try:
                self.compete()
            except BotError:
                log.warning("competing for watch leases failed; next round tries again", exc_info=True)
            self._stopping.wait(self._renew_every.total_seconds())

    def _tick_forever(self) -> None:
        while not self._stopping.is_set():
            try:
                self._incidents.tick()
                self._incidents.sweep()
            except Exception:
                log.exception("incident tick failed")
            self._stopping.wait(self._tick_every.total_seconds())


__all__ = ["DEFAULT_LEASE_TTL", "DEFAULT_RENEW_EVERY", "ContextWatching"]
