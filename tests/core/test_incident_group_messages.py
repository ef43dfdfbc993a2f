"""The mass-failure summary card: contract metadata and button, rows by shared cause, escaping, every state."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from bot.core.incident_groups import (
    GroupId,
    GroupOperationFinished,
    GroupRollbackClicked,
    GroupRollbackStarted,
    IncidentGroup,
    MembersSeen,
    advance,
    form_group,
)
from bot.core.incidents import Incident, IncidentId, IncidentState, Resolution, WorkloadRef
from bot.core.messages.incident_groups import GROUP_ROLLBACK_ACTION, group_card
from bot.core.operations import OperationId, Phase
from bot.core.rollouts import ContainerImage
from tests.core.factories import ALICE, T0
from tests.core.incident_factories import WEB, incident, signal

OP = OperationId("op-9")


def member(n: int, **fields: object) -> Incident:
    workload = WorkloadRef(**{**WEB.model_dump(), "name": f"app-{n}"})
    sig = signal(images=(ContainerImage(container="web", image=f"registry.example/app-{n}:v10"),))
    return incident(target=f"app-{n}", workload=workload, sig=sig).model_copy(
        update={"id": IncidentId(f"inc-{n}"), **fields}
    )


def six(**fields: object) -> IncidentGroup:
    return form_group(GroupId("grp-1"), [member(n, **fields) for n in range(1, 7)], T0).group


def buttons(blocks: tuple[dict[str, Any], ...]) -> list[dict[str, Any]]:
    return [e for b in blocks if b.get("type") == "actions" for e in b.get("elements", [])]


def text_of(blocks: tuple[dict[str, Any], ...]) -> str:
    return "\n".join(b["text"]["text"] for b in blocks if b.get("type") == "section")


def test_an_open_summary_lists_the_members_under_their_shared_image_tag_with_one_button() -> None:
    card = group_card(six(), T0 + timedelta(minutes=1))
    assert card.metadata == {
        "event_type": "rollbot_incident_group",
        "event_payload": {
            "group_id": "grp-1",
            "incident_ids": ["inc-1", "inc-2", "inc-3", "inc-4", "inc-5", "inc-6"],
            "state": "open",
        },
    }
    (button,) = buttons(card.blocks)
    assert (button["action_id"], button["value"], button["text"]["text"]) == (
        GROUP_ROLLBACK_ACTION,
        "grp-1",
        "Roll back all 6",
    )
    text = text_of(card.blocks)
    assert "*new image tag `v10`* (6)" in text
    assert "*app-3*: ImagePullBackOff on revision 3 · back to 2" in text
    assert card.text == "Mass failure: 6 incidents are failing (grp-1)"


def test_backend_words_are_escaped_on_the_summary() -> None:
    card = group_card(six(signal=signal(reason="<!channel> & co", images=())), T0)
    assert "&lt;!channel&gt; &amp; co" in text_of(card.blocks)
    assert "<!channel>" not in text_of(card.blocks)


def test_a_requested_rollback_takes_the_button_away_and_says_by_whom() -> None:
    clicked = advance(six(), GroupRollbackClicked(ALICE), T0).group
    started = advance(clicked, GroupRollbackStarted(OP), T0).group
    card = group_card(started, T0)
    assert buttons(card.blocks) == []
    assert f"requested as `op-9` by <@{ALICE}>" in str(card.blocks)
    rejected = advance(started, GroupOperationFinished(OP, Phase.REJECTED), T0).group
    again = group_card(rejected, T0)
    assert len(buttons(again.blocks)) == 1
    assert "`op-9` rejected" in str(again.blocks)


def test_a_resolved_summary_says_how_long_it_lasted_and_offers_nothing() -> None:
    ended = tuple(member(n, state=IncidentState.RESOLVED, resolution=Resolution.ROLLED_BACK) for n in range(1, 7))
    done = advance(six(), MembersSeen(ended), T0 + timedelta(minutes=4)).group
    card = group_card(done, T0 + timedelta(minutes=5))
    assert card.metadata["event_payload"]["state"] == "resolved"  # type: ignore[index]
    assert buttons(card.blocks) == []
    assert "Mass failure resolved · 6 incidents · lasted 4m" in text_of(card.blocks)
    assert card.text == "Mass failure resolved: 6 incidents (6 rolled back)"
