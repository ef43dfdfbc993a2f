"""The mass-failure flow: one summary card for a burst of incidents in one channel, rolled back as one batch.

The incident flow asks `summarises(incident, fence)` right before it would post an incident's card (its one
hook). The pure `place_incident` decides; this flow stores the decision (compare-and-set on the channel's latest
group for a new group, on `version` otherwise, with retries), marks the member incidents (`JoinedGroup`, which
takes their own button away and, once the summary exists, links their card to it), and posts or edits the
summary card. The threshold-crossing incident and every later one post no card of their own; the five that
crossed it first keep theirs, edited in place to link to the summary.

Posting the summary is claimed in Redis first (one replica posts it, whichever holds the incident's watch lease;
the claim lapses if that replica dies, and the sweep of any replica posts it then); edits follow the cards'
rule of at most one per 10 s, the last one made by `sweep`, which also reads the members again, so the card
follows them as they resolve. The button makes one batch request through the rollback flow (the batch's
approval rules: the strictest policy of its members) with the clicker as requester; the group's
compare-and-set makes a double click one request. When the batch ends, each member incident hears how its own
member ended.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Final, Protocol

from bot.core.batches import member_outcome
from bot.core.catalog import Catalog, ChannelId, SlackUserId, Target
from bot.core.effects import TellUser
from bot.core.errors import BotError, ConcurrentUpdate, FencedOut, UserError
from bot.core.incident_groups import (
    AlreadyGrouped,
    FormGroup,
    GroupCardPosted,
    GroupCardRefreshed,
    GroupEvent,
    GroupId,
    GroupOperationFinished,
    GroupRollbackClicked,
    GroupRollbackNotStarted,
    GroupRollbackStarted,
    GroupState,
    GroupTransition,
    IncidentGroup,
    JoinGroup,
    MembersSeen,
    Placement,
    PostGroupCard,
    RequestGroupRollback,
    StandAlone,
    UpdateGroupCard,
    advance,
    form_group,
    place_incident,
    should_refresh,
)
from bot.core.incident_groups import Joined as GroupJoined
from bot.core.incidents import (
    Incident,
    IncidentEvent,
    IncidentId,
    JoinedGroup,
    OperationFinished,
    RollbackStarted,
)
from bot.core.messages import plain
from bot.core.messages.incident_groups import group_card
from bot.core.operations import MessageRef, Operation
from bot.core.outbound import Priority
from bot.core.rollouts import RevisionNumber
from bot.core.watch_plan import incident_target
from bot.flows.retrying import Sleep, compare_and_set
from bot.ports import Chat, Clock, ContextFence, IncidentGroupStore, IncidentMetrics, IncidentStore, OperationStore

log = logging.getLogger("rollbot.flows.incident_groups")

# How long one replica may take to post a summary card before another one may try (it died meanwhile).
CARD_CLAIM_TTL: Final = timedelta(seconds=30)


class GroupRollbacks(Protocol):
    """The rollback flow as this flow needs it: one batch request for a group's members."""

    def request_for_incident_group(
        self,
        members: Sequence[tuple[Target, RevisionNumber]],
        user: SlackUserId,
        channel: ChannelId,
        group_id: str,
    ) -> Operation | None: ...


MemberEvents = Callable[[IncidentId, IncidentEvent], Incident | None]


class MassFailures:
    """Thread-safe: watcher threads, webhooks, Slack listeners and the sweeper call it concurrently."""

    def __init__(
        self,
        *,
        groups: IncidentGroupStore,
        incidents: IncidentStore,
        operations: OperationStore,
        chat: Chat,
        clock: Clock,
        catalog: Catalog,
        metrics: IncidentMetrics,
        new_group_id: Callable[[], GroupId],
        replica_id: str,
        sleep: Sleep,
    ) -> None:
        self._groups = groups
        self._incidents = incidents
        self._operations = operations
        self._chat = chat
        self._clock = clock
        self._catalog = catalog
        self._metrics = metrics
        self._new_id = new_group_id
        self._replica = replica_id
        self._sleep = sleep
        self._rollbacks: GroupRollbacks | None = None
        self._member_events: MemberEvents = lambda incident_id, event: None

    def attach(self, rollbacks: GroupRollbacks, member_events: MemberEvents) -> None:
        """The batch request path, and how to tell a member incident something (the incident flow's writes)."""
        self._rollbacks = rollbacks
        self._member_events = member_events

    # --- the incident flow's hook -------------------------------------------------------------------------------

    def summarises(self, incident: Incident, fence: ContextFence | None) -> bool:
        """Whether a summary card speaks for `incident` (then it posts no card of its own). Idempotent."""
        if incident.is_grouped:
            return True
        group: IncidentGroup | None = None
        transition: GroupTransition | None = None
        placement: Placement = StandAlone()
        for attempt in compare_and_set(self._sleep):
            with attempt:
                now = self._clock.now()
                latest = self._groups.latest_in(incident.channel)
                placement = place_incident(incident, self._incidents.live(), latest, now)
                match placement:
                    case StandAlone():
                        return False
                    case AlreadyGrouped(group_id=group_id):
                        group, transition = self._groups.get(group_id), None
                    case JoinGroup(group=joined):
                        transition = advance(joined, GroupJoined(incident), now)
                        self._groups.replace(transition.group, joined.version)
                        group = transition.group
                    case FormGroup(incidents=members):
                        transition = form_group(self._new_id(), members, now)
                        self._groups.create(transition.group, replaces=latest.id if latest else None)
                        group = transition.group
                        log.info("mass failure", extra={"group_id": group.id, "incidents": len(members)})
        if group is None:
            return False  # the group expired meanwhile: the incident stands alone
        self._count_opened(placement, incident)
        marked = (incident.id,) if isinstance(placement, JoinGroup) else group.incident_ids
        self._mark(marked, group.id, None)  # at once, before any Slack call: no own button, no automatic rollback
        if transition is not None:
            self._apply(transition, fence)  # the summary card first (posting it links every member to it)
        card = (self._groups.get(group.id) or group).card
        if card is not None:
            self._mark(marked, group.id, card)
        return True

    # --- people and operations -------------------------------------------------------------------------------

    def on_click(self, group_id: GroupId, user: SlackUserId) -> None:
        """The summary card's button: one batch request however many clicks; the others are told which exists."""
        if self._groups.get(group_id) is not None:
            self._write(group_id, GroupRollbackClicked(user))

    def on_operation_finished(self, operation: Operation) -> None:
        """Every operation that reaches a terminal phase: a group's batch tells each member how it ended."""
        if not operation.is_batch or operation.incident_id is None:
            return
        group = self._groups.get(GroupId(operation.incident_id))
        if group is None:
            return
        for incident_id in group.incident_ids:
            incident = self._incidents.get(incident_id)
            if incident is None or incident.operation_id != operation.id:
                continue
            name = incident_target(self._catalog, incident.target, incident.workload).name
            phase, outcome = member_outcome(operation, name)
            self._member_events(incident_id, OperationFinished(operation.id, phase, outcome))
        self._write(group.id, GroupOperationFinished(operation.id, operation.phase, operation.outcome))
        self._look_at_members(group.id)

    # --- the sweep: members read again, cards never posted, edits not allowed earlier, batches ended unseen -------

    def sweep(self) -> int:
        done = 0
        for group in self._groups.live():
            if group.operation_id is not None and group.state is not GroupState.RESOLVED:
                operation = self._operations.get(group.operation_id)
                if operation is not None and operation.phase.is_terminal:
                    self._guarded(lambda op=operation: self.on_operation_finished(op))  # type: ignore[misc]
                    done += 1
            if group.state is not GroupState.RESOLVED:
                self._guarded(lambda g=group: self._look_at_members(g.id))  # type: ignore[misc]
            if group.card is None and group.state is not GroupState.RESOLVED:
                self._guarded(lambda g=group: self._post_card(g.id, None))  # type: ignore[misc]
                done += 1
            self._guarded(lambda g=group: self._refresh(g.id))  # type: ignore[misc]
        return done

    # --- writing and applying ----------------------------------------------------------------------------------

    def _write(self, group_id: GroupId, event: GroupEvent) -> IncidentGroup | None:
        transition: GroupTransition | None = None
        for attempt in compare_and_set(self._sleep):
            with attempt:
                current = self._groups.get(group_id)
                if current is None:
                    return None
                transition = advance(current, event, self._clock.now())
                if transition.changed:
                    self._groups.replace(transition.group, current.version)
        assert transition is not None  # tenacity re-raises the last error otherwise
        self._apply(transition, None)
        return transition.group

    def _apply(self, transition: GroupTransition, fence: ContextFence | None) -> None:
        group = transition.group
        for effect in transition.effects:
            match effect:
                case PostGroupCard():
                    self._post_card(group.id, fence)
                case UpdateGroupCard():
                    self._refresh(group.id)
                case RequestGroupRollback():
                    self._request_rollback(group, effect)
                case TellUser():
                    self._quietly(self._chat.post_ephemeral, group.channel, effect.user, plain(effect.text))

    def _mark(self, incident_ids: Sequence[IncidentId], group_id: GroupId, card: MessageRef | None) -> None:
        """These members carry the group, and the summary card they link to once it is posted."""
        for incident_id in incident_ids:
            self._member_events(incident_id, JoinedGroup(group_id, card))

    def _look_at_members(self, group_id: GroupId) -> None:
        group = self._groups.get(group_id)
        if group is None or group.state is GroupState.RESOLVED:
            return
        incidents = tuple(i for i in map(self._incidents.get, group.incident_ids) if i is not None)
        self._write(group_id, MembersSeen(incidents))

    def _post_card(self, group_id: GroupId, fence: ContextFence | None) -> None:
        group = self._groups.get(group_id)
        if group is None or group.card is not None:
            return
        # Slack has no fencing: a replica that lost the watch lease of the incident that formed the group must
        # not post; and of the replicas that may, the claim lets one post (it lapses if that one dies).
        if fence is not None and not self._incidents.holds(fence):
            raise FencedOut(f"lost the watch lease {fence.lease}")
        if not self._groups.claim_card(group.id, self._replica, CARD_CLAIM_TTL):
            return
        still_holds = None if fence is None else (lambda: self._incidents.holds(fence))
        now = self._clock.now()
        ref = self._chat.post(
            group.channel, group_card(group, now), priority=Priority.URGENT, still_current=still_holds
        )
        posted = self._write(group.id, GroupCardPosted(ref))
        if posted is not None:
            self._mark(posted.incident_ids, posted.id, ref)
            self._refresh(posted.id)  # members that joined while the card was on its way

    def _refresh(self, group_id: GroupId) -> None:
        group = self._groups.get(group_id)
        now = self._clock.now()
        if group is None or group.card is None or not should_refresh(group, now):
            return  # not yet: the sweep edits it once the 10 s are up
        self._chat.update(group.card, group_card(group, now), priority=Priority.PROGRESS)
        self._write(group_id, GroupCardRefreshed())

    def _request_rollback(self, group: IncidentGroup, effect: RequestGroupRollback) -> None:
        reason: str | None = None
        operation: Operation | None = None
        members: list[tuple[Target, RevisionNumber]] = []
        try:
            if self._rollbacks is None:
                raise UserError("rollbacks are not wired in this process")
            for member in effect.members:
                incident = self._incidents.get(member.incident_id)
                if incident is None or member.rollback_to is None:
                    continue
                target = incident_target(self._catalog, incident.target, incident.workload)
                members.append((target, member.rollback_to))
            operation = self._rollbacks.request_for_incident_group(members, effect.requester, group.channel, group.id)
        except UserError as exc:
            reason = str(exc)
        if operation is None:
            self._write(group.id, GroupRollbackNotStarted(reason or "the request could not be posted"))
            return
        self._write(group.id, GroupRollbackStarted(operation.id))
        for member in effect.members:
            self._member_events(member.incident_id, RollbackStarted(operation.id))

    # --- small things ------------------------------------------------------------------------------------------

    def _count_opened(self, placement: Placement, incident: Incident) -> None:
        """Incidents shown on the summary count as opened too, detected when they joined (no card of their own):
        the one joining, or, when a group forms, every member that has not posted a card."""
        match placement:
            case FormGroup(incidents=members):
                counted = [member for member in members if member.card is None]
            case JoinGroup():
                counted = [incident]
            case _:
                return
        now = self._clock.now()
        for member in counted:
            backend = member.workload.backend.value
            if self._metrics.incident_opened(backend, member.signal.reason, member.id):
                self._metrics.detection_latency(backend, max(0.0, (now - member.signal.since).total_seconds()))

    @staticmethod
    def _guarded(work: Callable[[], object]) -> None:
        try:
            work()
        except FencedOut:
            log.info("lost a watch lease while posting a summary card; its new holder takes over")
        except ConcurrentUpdate:
            log.info("a summary card's group kept changing under this replica; the next sweep looks again")
        except Exception:  # one group's trouble must not stop the others
            log.exception("mass-failure work failed")

    @staticmethod
    def _quietly(work: Callable[..., object], *args: object) -> None:
        try:
            work(*args)
        except BotError:
            log.warning("a Slack call about a mass failure failed", exc_info=True)


__all__ = ["MassFailures"]
