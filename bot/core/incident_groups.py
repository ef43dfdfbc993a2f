"""Mass failures: more than five incidents opening in one channel within two minutes become one group.

A group is one summary card that speaks for its member incidents, with one "Roll back all N" button that makes
one batch request. Everything here is pure: `place_incident` decides, from the incident about to get a card,
the channel's recent incidents and the channel's open group, whether the incident stands alone (its own card),
forms a group (the threshold is crossed), joins the open group, or is in it already. `advance` moves a group
along, exactly like `incidents.advance` does for one incident: the next record with `version + 1`, effects as
data; the store compares-and-sets on `version`, so of two replicas (or two clicks) only one transition wins.

    OPEN ──(Roll back all: a batch request exists)──▶ ROLLING_BACK ──(every member resolved)──▶ RESOLVED
     ▲  └───────────────(every member resolved, however)────────────────────────────────────────▶ RESOLVED
     └──(the batch was rejected, expired, cancelled or failed: the card says why, the button is back)┘

A group accepts new members while it is OPEN, nobody has asked for its rollback, and its latest member joined
less than `MASS_WINDOW` ago; later incidents get their own card again (or form a new group). Members are kept
as snapshots (`GroupMember`) refreshed from the incidents by `members_changed`, so the card renders from the
group alone; member incidents carry `group_id`, which is how the automatic rollback knows to stay away.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final, NewType

from pydantic import BaseModel, ConfigDict

from bot.core.catalog import ChannelId, SlackUserId
from bot.core.effects import TellUser
from bot.core.incidents import CARD_REFRESH_INTERVAL, Incident, IncidentId, IncidentState, Resolution
from bot.core.operations import MessageRef, OperationId, Phase
from bot.core.rollouts import RevisionNumber

GroupId = NewType("GroupId", str)

# More than this many incidents opening in one channel within MASS_WINDOW is a mass failure (issue #13).
MASS_THRESHOLD: Final = 5
MASS_WINDOW: Final = timedelta(minutes=2)
# The Slack message metadata event type of summary cards, fixed by contract.
GROUP_EVENT_TYPE: Final = "rollbot_incident_group"


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GroupState(StrEnum):
    OPEN = "open"
    ROLLING_BACK = "rolling_back"
    RESOLVED = "resolved"


class GroupMember(_Frozen):
    """What the summary card shows of one member incident (refreshed from the incident by `members_changed`)."""

    incident_id: IncidentId
    label: str
    reason: str
    revision: str
    # The tag of the failed revision's new image(s), when the failure came with one: the visible shared cause.
    image_tag: str | None = None
    state: IncidentState = IncidentState.OPEN
    resolution: Resolution | None = None
    # The revision the batch would return it to; None when a click could not roll it back (see `rollback_to`).
    rollback_to: RevisionNumber | None = None
    opened_at: datetime


class IncidentGroup(_Frozen):
    id: GroupId
    version: int = 1
    channel: ChannelId
    state: GroupState = GroupState.OPEN
    members: tuple[GroupMember, ...]
    opened_at: datetime
    updated_at: datetime
    last_joined_at: datetime
    resolved_at: datetime | None = None
    card: MessageRef | None = None
    is_card_stale: bool = False
    card_refreshed_at: datetime | None = None
    rollback_requested_by: SlackUserId | None = None
    operation_id: OperationId | None = None
    # The last thing that went wrong with the batch, shown on the card until the next one.
    note: str | None = None

    @property
    def incident_ids(self) -> tuple[IncidentId, ...]:
        return tuple(member.incident_id for member in self.members)

    @property
    def to_roll_back(self) -> tuple[GroupMember, ...]:
        """The members one click would roll back: open, with a known-good revision, rollable from a card."""
        return tuple(m for m in self.members if m.state is IncidentState.OPEN and m.rollback_to is not None)

    @property
    def has_button(self) -> bool:
        return (
            self.state is GroupState.OPEN
            and self.rollback_requested_by is None
            and self.operation_id is None
            and bool(self.to_roll_back)
        )

    def accepts(self, now: datetime) -> bool:
        """Whether an incident opening now joins this group (instead of getting its own card)."""
        return (
            self.state is GroupState.OPEN
            and self.rollback_requested_by is None
            and self.operation_id is None
            and now - self.last_joined_at < MASS_WINDOW
        )

    def metadata_payload(self) -> dict[str, object]:
        """The `rollbot_incident_group` metadata every version of the summary card carries (contract)."""
        return {"group_id": self.id, "incident_ids": list(self.incident_ids), "state": self.state.value}


# --- where an incident's card goes ------------------------------------------------------------------------------


@dataclass(frozen=True)
class StandAlone:
    """Not a mass failure (yet): the incident posts its own card."""


@dataclass(frozen=True)
class FormGroup:
    """The threshold is crossed: these incidents (oldest first, the new one included) become one group."""

    incidents: tuple[Incident, ...]


@dataclass(frozen=True)
class JoinGroup:
    group: IncidentGroup


@dataclass(frozen=True)
class AlreadyGrouped:
    """The incident is a member already (a sweep, a second thread, a replica resuming after a crash)."""

    group_id: GroupId


Placement = StandAlone | FormGroup | JoinGroup | AlreadyGrouped


def place_incident(
    incident: Incident, recent: Sequence[Incident], open_group: IncidentGroup | None, now: datetime
) -> Placement:
    """Where `incident`'s card goes. `recent`: the live incidents (any channel; filtered here); `open_group`:
    the channel's latest group, if any. Pure."""
    if incident.group_id is not None:
        return AlreadyGrouped(GroupId(incident.group_id))
    if open_group is not None and open_group.channel == incident.channel:
        if incident.id in open_group.incident_ids and open_group.state is not GroupState.RESOLVED:
            return AlreadyGrouped(open_group.id)  # not marked yet (a crash between the two writes), or failing again
        if open_group.accepts(now):
            return JoinGroup(open_group)
    candidates = {
        other.id: other
        for other in recent
        if other.channel == incident.channel
        and other.state is not IncidentState.RESOLVED
        and other.group_id is None
        and now - other.opened_at < MASS_WINDOW
    }
    candidates[incident.id] = incident
    if len(candidates) <= MASS_THRESHOLD:
        return StandAlone()
    return FormGroup(tuple(sorted(candidates.values(), key=lambda i: (i.opened_at, i.id))))


# --- effects and events -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PostGroupCard:
    """Post the summary card; the flow records where with `GroupCardPosted`."""


@dataclass(frozen=True)
class UpdateGroupCard:
    """Re-render the summary card in place, when `should_refresh` allows (else the sweep does it later)."""


@dataclass(frozen=True)
class RequestGroupRollback:
    """Start one batch request for these members, with the clicker as requester."""

    requester: SlackUserId
    members: tuple[GroupMember, ...]


GroupEffect = PostGroupCard | UpdateGroupCard | RequestGroupRollback | TellUser


@dataclass(frozen=True)
class GroupCardPosted:
    card: MessageRef


@dataclass(frozen=True)
class GroupCardRefreshed:
    pass


@dataclass(frozen=True)
class Joined:
    incident: Incident


@dataclass(frozen=True)
class MembersSeen:
    """The member incidents as the store has them now (the sweep's look; missing ones are left as they were)."""

    incidents: tuple[Incident, ...]


@dataclass(frozen=True)
class GroupRollbackClicked:
    user: SlackUserId


@dataclass(frozen=True)
class GroupRollbackStarted:
    operation_id: OperationId


@dataclass(frozen=True)
class GroupRollbackNotStarted:
    reason: str


@dataclass(frozen=True)
class GroupOperationFinished:
    operation_id: OperationId
    phase: Phase
    outcome: str | None = None


GroupEvent = (
    GroupCardPosted
    | GroupCardRefreshed
    | Joined
    | MembersSeen
    | GroupRollbackClicked
    | GroupRollbackStarted
    | GroupRollbackNotStarted
    | GroupOperationFinished
)


@dataclass(frozen=True)
class GroupTransition:
    group: IncidentGroup
    effects: tuple[GroupEffect, ...] = ()
    changed: bool = False


# --- the lifecycle ----------------------------------------------------------------------------------------------


def member_of(incident: Incident) -> GroupMember:
    """The summary card's view of an incident."""
    can_roll_back = (
        incident.state is IncidentState.OPEN
        and incident.operation_id is None
        and incident.no_button_reason is None
        and not incident.is_ecs_rolling_back
        and not incident.signal.is_stuck
    )
    return GroupMember(
        incident_id=incident.id,
        label=incident.target_label,
        reason=incident.signal.reason,
        revision=incident.revision,
        image_tag=_new_image_tag(incident),
        state=incident.state,
        resolution=incident.resolution,
        rollback_to=incident.last_good.revision if can_roll_back and incident.last_good else None,
        opened_at=incident.opened_at,
    )


def form_group(group_id: GroupId, incidents: Sequence[Incident], now: datetime) -> GroupTransition:
    members = tuple(member_of(incident) for incident in incidents)
    group = IncidentGroup(
        id=group_id,
        channel=incidents[0].channel,
        members=members,
        opened_at=now,
        updated_at=now,
        last_joined_at=now,
        card_refreshed_at=now,
    )
    return GroupTransition(group, (PostGroupCard(),), True)


def should_refresh(group: IncidentGroup, now: datetime) -> bool:
    """The summary card may be edited now: it has changes, and its last edit is at least 10 s old."""
    if not group.is_card_stale or group.card is None:
        return False
    return group.card_refreshed_at is None or now - group.card_refreshed_at >= CARD_REFRESH_INTERVAL


def advance(group: IncidentGroup, event: GroupEvent, now: datetime) -> GroupTransition:
    """Decide what `event` means for `group` at `now`. Pure; never raises for a well-formed event."""
    match event:
        case GroupCardPosted():
            if group.card == event.card:
                return GroupTransition(group)
            return GroupTransition(_next(group, now, card=event.card, card_refreshed_at=now), changed=True)
        case GroupCardRefreshed():
            if not group.is_card_stale:
                return GroupTransition(group)
            return GroupTransition(_next(group, now, is_card_stale=False, card_refreshed_at=now), changed=True)
        case Joined():
            if event.incident.id in group.incident_ids:
                return GroupTransition(group)
            members = (*group.members, member_of(event.incident))
            return _stale(_next(group, now, members=members, last_joined_at=now))
        case MembersSeen():
            return _on_members_seen(group, event.incidents, now)
        case GroupRollbackClicked():
            return _on_click(group, event.user, now)
        case GroupRollbackStarted():
            if group.operation_id == event.operation_id or group.state is GroupState.RESOLVED:
                return GroupTransition(group)
            return _stale(_next(group, now, operation_id=event.operation_id, note=None, state=GroupState.ROLLING_BACK))
        case GroupRollbackNotStarted():
            if group.operation_id is not None:
                return GroupTransition(group)
            return _stale(_next(group, now, rollback_requested_by=None, note=event.reason))
        case GroupOperationFinished():
            if group.operation_id != event.operation_id or not event.phase.is_terminal:
                return GroupTransition(group)
            if event.phase is Phase.SUCCEEDED:
                return GroupTransition(group)  # the members resolve; `MembersSeen` then resolves the group
            note = f"`{event.operation_id}` {event.phase.value}" + (f": {event.outcome}" if event.outcome else "")
            update = {"operation_id": None, "rollback_requested_by": None, "note": note}
            return _stale(_settled(_next(group, now, **update), now))
    return GroupTransition(group)  # pragma: no cover - every event is matched above


def _on_members_seen(group: IncidentGroup, incidents: Sequence[Incident], now: datetime) -> GroupTransition:
    seen = {incident.id: member_of(incident) for incident in incidents}
    members = tuple(
        seen[m.incident_id].model_copy(update={"opened_at": m.opened_at}) if m.incident_id in seen else m
        for m in group.members
    )
    if members == group.members:
        return GroupTransition(group)
    return _stale(_settled(_next(group, now, members=members), now))


def _on_click(group: IncidentGroup, user: SlackUserId, now: datetime) -> GroupTransition:
    if group.state is GroupState.RESOLVED:
        return GroupTransition(group, (TellUser(user, "This mass failure is over; no rollback needed."),))
    if group.operation_id is not None:
        text = f"A rollback of all of them is already requested: `{group.operation_id}` — approve it in its thread."
        return GroupTransition(group, (TellUser(user, text),))
    if group.rollback_requested_by is not None:
        text = f"<@{group.rollback_requested_by}> already asked to roll them all back; it is being requested."
        return GroupTransition(group, (TellUser(user, text),))
    members = group.to_roll_back
    if not members:
        return GroupTransition(group, (TellUser(user, "None of these incidents can be rolled back from here."),))
    new = _next(group, now, rollback_requested_by=user, is_card_stale=True)
    return GroupTransition(new, (RequestGroupRollback(user, members), UpdateGroupCard()), True)


def _settled(group: IncidentGroup, now: datetime) -> IncidentGroup:
    """The group's state from its members: RESOLVED once every member is, else rolling back or open."""
    if all(member.state is IncidentState.RESOLVED for member in group.members):
        if group.state is GroupState.RESOLVED:
            return group
        return group.model_copy(update={"state": GroupState.RESOLVED, "resolved_at": now})
    state = GroupState.ROLLING_BACK if group.operation_id is not None else GroupState.OPEN
    return group.model_copy(update={"state": state, "resolved_at": None})


def _next(group: IncidentGroup, now: datetime, **update: object) -> IncidentGroup:
    return group.model_copy(update={**update, "version": group.version + 1, "updated_at": now})


def _stale(group: IncidentGroup) -> GroupTransition:
    return GroupTransition(group.model_copy(update={"is_card_stale": True}), (UpdateGroupCard(),), True)


# --- shared causes -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cause:
    """A visible shared cause and the members that share it; `label` is None for the members that share none."""

    label: str | None
    members: tuple[GroupMember, ...]


def shared_causes(members: Sequence[GroupMember]) -> tuple[Cause, ...]:
    """Members grouped by the cause they visibly share: the same new image tag first, then the same reason.

    A cause needs at least two members; the rest come last, under no label. Largest causes first.
    """
    causes: list[Cause] = []
    left = list(members)
    for label_of in (_tag_label, _reason_label):
        counts = Counter(label for label in map(label_of, left) if label is not None)
        for label, count in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
            if count < 2:
                continue
            causes.append(Cause(label, tuple(m for m in left if label_of(m) == label)))
            left = [m for m in left if label_of(m) != label]
    if left:
        causes.append(Cause(None, tuple(left)))
    return tuple(causes)


def _tag_label(member: GroupMember) -> str | None:
    return f"new image tag `{member.image_tag}`" if member.image_tag else None


def _reason_label(member: GroupMember) -> str:
    return member.reason


def _new_image_tag(incident: Incident) -> str | None:
    """The tag of the image(s) the failed revision brought (those that differ from the last good revision)."""
    good = {image.container: image.image for image in incident.last_good.images} if incident.last_good else {}
    new = [image.image for image in incident.signal.images if good.get(image.container) != image.image]
    tags = {_tag(image) for image in new}
    tags.discard(None)
    return tags.pop() if len(tags) == 1 else None


def _tag(image: str) -> str | None:
    if "@" in image:
        return image.rsplit("@", 1)[1][:19]  # sha256:0123456789ab: enough to tell digests apart on a card
    name = image.rsplit("/", 1)[-1]
    return name.rsplit(":", 1)[1] if ":" in name else None
