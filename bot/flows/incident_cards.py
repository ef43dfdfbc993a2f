"""An incident's Slack side: its card posted once, edited in place at most once per 10 s, the lines in its thread
and the private answers about it, for `bot.flows.incidents`.

A new card is posted once per process: the sweep and the watcher thread both post missing cards, so the one that
claims the incident first posts it. Right before the post, a mass failure's summary may speak for the incident
instead, and the automatic-rollback policy decides (the card then shows its countdown). The context lease's
fencing token is checked right before the post: Slack has no fencing of its own.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, Protocol

from bot.core.catalog import SlackUserId
from bot.core.errors import BotError, FencedOut
from bot.core.incidents import CardPosted, CardRefreshed, Incident, IncidentEvent, IncidentId, should_refresh
from bot.core.messages import plain
from bot.core.messages.incidents import incident_card, incident_thread_line
from bot.core.outbound import Priority
from bot.ports import Chat, Clock, ContextFence, IncidentMetrics, IncidentStore

log = logging.getLogger("rollbot.flows.incidents")


class AutoPolicy(Protocol):
    """The automatic-rollback flow (bot.flows.auto_rollback), as the incident flow calls it."""

    def consider(self, incident: Incident) -> Incident: ...


class IncidentCards:
    """Thread-safe: watcher threads, the tick, the sweeper and the card-posting pool call it concurrently."""

    def __init__(
        self,
        *,
        store: IncidentStore,
        chat: Chat,
        clock: Clock,
        metrics: IncidentMetrics,
        record: Callable[[IncidentId, IncidentEvent, ContextFence | None], object],
        guarded: Callable[[Callable[[], object]], None],
        summarised: Callable[[Incident, ContextFence | None], bool],
        auto: Callable[[], AutoPolicy | None],
        post_cards: Callable[[Callable[[], None]], object] | None,
    ) -> None:
        """`record` writes an event to the incident (the flow's compare-and-set); `post_cards` runs the posting of
        a new card (at once when None); `summarised` and `auto` are asked right before a new card is posted."""
        self._store = store
        self._chat = chat
        self._clock = clock
        self._metrics = metrics
        self._record = record
        self._guarded = guarded
        self._summarised = summarised
        self._auto = auto
        self._post_cards = post_cards
        self._mutex = threading.Lock()
        # Incidents whose card this process is posting right now: the sweep and the watcher thread both post
        # missing cards, and without this both would post one for the same new incident.
        self._posting: set[IncidentId] = set()

    def post_new(self, incident: Incident, fence: ContextFence | None) -> None:
        if self._post_cards is None:
            self._post_card(incident, fence)
            return
        # Off this thread (the watcher's, or the sweep's); claimed now, so the sweep does not queue it twice
        # while it waits its turn. A card that fails to post is posted by a later sweep.
        with self._mutex:
            if incident.id in self._posting:
                return
            self._posting.add(incident.id)

        def post() -> None:
            try:
                self._guarded(lambda: self._post_claimed(incident, fence))
            finally:
                with self._mutex:
                    self._posting.discard(incident.id)

        self._post_cards(post)

    def _post_card(self, incident: Incident, fence: ContextFence | None) -> None:
        with self._mutex:
            if incident.id in self._posting:
                return  # the other thread is posting it
            self._posting.add(incident.id)
        try:
            self._post_claimed(incident, fence)
        finally:
            with self._mutex:
                self._posting.discard(incident.id)

    def _post_claimed(self, incident: Incident, fence: ContextFence | None) -> None:
        current = self._store.get(incident.id)
        if current is None or current.card is not None:
            return  # posted meanwhile
        if self._summarised(current, fence):
            return  # a mass failure: its summary card speaks for it (bot/flows/incident_groups.py)
        auto = self._auto()
        if auto is not None:  # the policy decides before the first card, which then shows its countdown
            current = auto.consider(current)
        self._post_new_card(current, fence)

    def _post_new_card(self, incident: Incident, fence: ContextFence | None) -> None:
        # Slack has no fencing: check the token right before the post, so a replica that lost the context
        # (paused past its lease) does not post a second card for an incident its successor posts.
        if fence is not None and not self._store.holds(fence):
            raise FencedOut(f"lost the watch lease {fence.lease}")
        now = self._clock.now()
        # Asked again at the last moment (after any wait for Slack's budget): a replica whose watch lease lapsed
        # while its card waited must not post a second card next to the new holder's.
        still_holds = None if fence is None else (lambda: self._store.holds(fence))
        ref = self._chat.post(
            incident.channel, incident_card(incident, now), priority=Priority.URGENT, still_current=still_holds
        )
        backend = incident.workload.backend.value
        if self._metrics.incident_opened(backend, incident.signal.reason, incident.id):
            self._metrics.detection_latency(backend, max(0.0, (now - incident.signal.since).total_seconds()))
        self._record(incident.id, CardPosted(ref), fence)

    def refresh(self, incident_id: IncidentId) -> None:
        incident = self._store.get(incident_id)
        now = self._clock.now()
        if incident is None or incident.card is None or not should_refresh(incident, now):
            return  # not yet: the sweep edits it once the 10 s are up
        self._chat.update(incident.card, incident_card(incident, now), priority=Priority.PROGRESS)
        self._record(incident_id, CardRefreshed(), None)

    def post_in_thread(self, incident: Incident, text: str) -> None:
        line = plain(incident_thread_line(text))
        self._quietly(self._chat.post, incident.channel, line, incident.card)

    def tell(self, incident: Incident, user: SlackUserId, text: str) -> None:
        self._quietly(self._chat.post_ephemeral, incident.channel, user, plain(text))

    @staticmethod
    def _quietly(work: Callable[..., object], *args: Any) -> None:
        try:
            work(*args)
        except BotError:
            log.warning("a Slack call about an incident failed", exc_info=True)
