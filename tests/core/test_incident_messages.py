"""The incident card, its thread lines, `/rollback incidents` and the verification lines, as Slack receives them."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.core import messages
from bot.core.catalog import BackendKind
from bot.core.detection import ReasonCount, Verification, VerificationState
from bot.core.incidents import (
    CardPosted,
    HealthyAgain,
    Incident,
    IncidentId,
    OperationFinished,
    RollbackClicked,
    RollbackStarted,
    WorkloadRef,
    advance,
)
from bot.core.operations import MessageRef, OperationId, Phase
from bot.core.rollouts import ContainerImage
from bot.core.slack_limits import MAX_BLOCKS, MAX_BLOCKS_JSON, MAX_SECTION_TEXT, MAX_TEXT
from tests.core.factories import ALICE, T0
from tests.core.incident_factories import CARD_CHANNEL, incident, signal

CARD = MessageRef(channel=CARD_CHANNEL, ts="1700000000.000100")
OP = OperationId("op-7")


def all_text(message: messages.ChatMessage) -> str:
    return message.text + json.dumps(message.blocks, ensure_ascii=False)


def buttons(message: messages.ChatMessage) -> list[dict[str, Any]]:
    return [
        element
        for block in message.blocks
        if block["type"] == "actions"
        for element in block["elements"]
        if element["type"] == "button"
    ]


def posted() -> Incident:
    return advance(incident(), CardPosted(CARD), T0).incident


def test_an_open_card_says_what_failed_since_when_and_offers_the_rollback() -> None:
    card = messages.incident_card(posted(), T0 + timedelta(minutes=3))
    text = all_text(card)
    assert ":rotating_light: Failing · *web* · ImagePullBackOff since 2026-11-22 14:37 UTC (3m00s)" in text
    assert "`deploy/web -n shop` · kubernetes · sandbox" in text
    assert "*Failed revision:* 3" in text
    assert "web `registry.example/web:1.9` → `registry.example/web:2.0-typo`" in text
    assert "*Last good revision:* 2" in text
    assert "3 × ImagePullBackOff" in text
    (button,) = buttons(card)
    assert button["action_id"] == "rollbot_incident_rollback"
    assert button["value"] == "inc-1"
    assert button["text"]["text"] == "Roll back to revision 2"


def test_every_card_version_carries_the_incident_metadata() -> None:
    card = messages.incident_card(posted(), T0)
    assert card.metadata is not None
    assert card.metadata["event_type"] == "rollbot_incident"
    assert card.metadata["event_payload"]["incident_id"] == "inc-1"
    assert card.metadata["event_payload"]["state"] == "open"


def test_after_a_click_the_button_is_gone_and_the_card_names_the_operation() -> None:
    clicked = advance(posted(), RollbackClicked(ALICE), T0).incident
    assert buttons(messages.incident_card(clicked, T0)) == []
    started = advance(clicked, RollbackStarted(OP), T0).incident
    card = messages.incident_card(started, T0 + timedelta(seconds=30))
    assert ":arrows_counterclockwise: Rollback requested" in card.blocks[0]["text"]["text"]
    assert "`op-7`" in card.blocks[0]["text"]["text"]
    assert card.metadata is not None
    assert card.metadata["event_payload"]["operation_id"] == "op-7"


def test_a_resolved_card_says_how_it_ended_and_how_long_it_lasted_without_a_button() -> None:
    started = advance(advance(posted(), RollbackClicked(ALICE), T0).incident, RollbackStarted(OP), T0).incident
    done = advance(started, OperationFinished(OP, Phase.SUCCEEDED), T0 + timedelta(minutes=12, seconds=30)).incident
    card = messages.incident_card(done, T0 + timedelta(hours=1))
    assert card.blocks[0]["text"]["text"] == (
        ":large_green_circle: Resolved · *web* · ImagePullBackOff: rolled back by `op-7` · lasted 12m30s"
    )
    assert buttons(card) == []
    assert card.metadata is not None
    assert card.metadata["event_payload"]["resolution"] == "rolled_back"


def test_a_recovered_card_says_so() -> None:
    done = advance(posted(), HealthyAgain("3"), T0 + timedelta(minutes=5)).incident
    assert "recovered by itself · lasted 5m00s" in messages.incident_card(done, T0).blocks[0]["text"]["text"]


def test_ecs_rolling_back_by_itself_is_said_with_no_button_and_reported_as_a_failed_deployment() -> None:
    ecs = WorkloadRef(backend=BackendKind.ECS, location="us-east-1", kind="EcsService", namespace="prod", name="api")
    sig = signal(reason="FAILED", revision="ecs-svc/222", is_rolling_back_by_itself=True, images=())
    current = incident(target="api", workload=ecs, sig=sig)
    card = messages.incident_card(current, T0)
    assert "ECS is rolling it back by itself" in all_text(card)
    assert buttons(card) == []
    done = advance(current, HealthyAgain("ecs-svc/333"), T0 + timedelta(minutes=3)).incident
    assert "deployment failed, then rolled back" in all_text(messages.incident_card(done, T0))


def test_a_stuck_helm_release_card_says_how_to_get_out() -> None:
    helm = WorkloadRef(backend=BackendKind.HELM, location="sandbox", kind="HelmRelease", namespace="shop", name="web")
    stuck = incident(workload=helm, sig=signal(reason="pending-upgrade", revision="6", is_stuck=True, images=()))
    text = all_text(messages.incident_card(stuck, T0 + timedelta(minutes=11)))
    assert ":warning: Stuck" in text
    assert "another operation (install/upgrade/rollback) is in progress" in text
    assert "but it still allows a rollback" in text
    assert "kubectl delete secret sh.helm.release.v1.web.v6 -n shop" in text
    (button,) = buttons(messages.incident_card(stuck, T0))
    assert button["text"]["text"] == f"Roll back to revision {stuck.last_good.revision}"  # type: ignore[union-attr]


def test_a_workload_outside_the_catalog_says_why_there_is_no_button() -> None:
    outside = incident(target=None, no_button_reason="namespace `shop` is not open to ad-hoc rollbacks")
    card = messages.incident_card(outside, T0)
    assert buttons(card) == []
    assert "No rollback button: namespace `shop` is not open to ad-hoc rollbacks" in all_text(card)
    assert "*deploy/web -n shop*" in card.blocks[0]["text"]["text"]


def test_backend_strings_are_escaped_on_the_card() -> None:
    sig = signal(
        reason="<!channel>", messages=("<@U0AAA> & <!here>",), images=(ContainerImage(container="w<", image="a>b"),)
    )
    text = all_text(messages.incident_card(incident(sig=sig), T0))
    assert "<!channel>" not in text
    assert "<!here>" not in text
    assert "&lt;!channel&gt;" in text
    assert "&lt;@U0AAA&gt; &amp; &lt;!here&gt;" in text


def test_a_card_note_tells_why_the_last_rollback_did_not_happen() -> None:
    started = advance(advance(posted(), RollbackClicked(ALICE), T0).incident, RollbackStarted(OP), T0).incident
    failed = advance(started, OperationFinished(OP, Phase.REJECTED, "rejected by <@U0BBB>"), T0).incident
    card = messages.incident_card(failed, T0)
    assert ":warning: `op-7` rejected: rejected by <@U0BBB>" in all_text(card)
    assert len(buttons(card)) == 1


@settings(deadline=None)
@given(
    count=st.integers(1, 5000),
    messages_seen=st.lists(st.text(min_size=1, max_size=400), min_size=0, max_size=3),
    reasons=st.lists(st.text(min_size=1, max_size=60), min_size=1, max_size=8, unique=True),
)
def test_any_card_stays_within_slacks_limits(count: int, messages_seen: list[str], reasons: list[str]) -> None:
    sig = signal(
        reason=reasons[0],
        counts=tuple(ReasonCount(reason=reason, count=count) for reason in reasons),
        messages=tuple(dict.fromkeys(messages_seen)),
    )
    card = messages.incident_card(incident(sig=sig), T0)
    assert len(card.text) <= MAX_TEXT
    assert len(card.blocks) <= MAX_BLOCKS
    assert len(json.dumps(card.blocks)) <= MAX_BLOCKS_JSON
    for block in card.blocks:
        if block["type"] == "section":
            assert len(block["text"]["text"]) <= MAX_SECTION_TEXT
    quoted = [line for block in card.blocks if block["type"] == "section" for line in block["text"]["text"].split("\n")]
    assert sum(line.startswith(("&gt; ", "> ")) for line in quoted) <= 3


def test_thread_lines_keep_mentions_but_escape_the_rest() -> None:
    assert messages.incident_thread_line("rollback requested as `op-7` by <@U0AAA>") == (
        "rollback requested as `op-7` by <@U0AAA>"
    )
    assert messages.incident_thread_line("now <!channel>") == "now &lt;!channel&gt;"


def test_the_incidents_list_links_each_open_card_and_skips_resolved_ones() -> None:
    first = posted()
    second = incident(target="api").model_copy(
        update={"id": IncidentId("inc-2"), "opened_at": T0 + timedelta(minutes=1)}
    )
    done = advance(posted(), HealthyAgain("3"), T0).incident.model_copy(update={"id": IncidentId("inc-3")})
    listing = messages.incidents_list(
        [first, second, done],
        T0 + timedelta(minutes=5),
        {IncidentId("inc-1"): "https://example.slack.com/archives/C0WEB/p1"},
    )
    assert listing.text.splitlines() == [
        "*Open incidents (2)*",
        "• *api*: ImagePullBackOff on revision 3, open for 4m00s · `inc-2`",
        "• <https://example.slack.com/archives/C0WEB/p1|web>: ImagePullBackOff on revision 3, open for 5m00s · `inc-1`",
    ]


def test_the_incidents_list_without_permalinks_points_at_the_channel() -> None:
    listing = messages.incidents_list([posted()], T0)
    assert "*web* (in <#C0WEB>)" in listing.text


def test_no_open_incidents_is_said_plainly() -> None:
    assert messages.incidents_list([], T0).text == "No open incidents."


def test_a_long_incidents_list_is_cut_saying_how_many_more() -> None:
    many = [incident().model_copy(update={"id": IncidentId(f"inc-{n}")}) for n in range(25)]
    listing = messages.incidents_list(many, T0)
    assert listing.text.splitlines()[-1] == "…and 5 more"


def test_verification_lines() -> None:
    healthy = Verification(state=VerificationState.HEALTHY, elapsed=timedelta(minutes=2))
    assert messages.verification_line(healthy) == ":large_green_circle: healthy for 2m"
    failing = Verification(state=VerificationState.FAILING, signal=signal(reason="CrashLoopBackOff"))
    assert messages.verification_line(failing) == (
        ":red_circle: failing again: CrashLoopBackOff (3 × CrashLoopBackOff) since 2026-11-22 14:37 UTC"
    )
    timed_out = Verification(state=VerificationState.FAILING, elapsed=timedelta(minutes=12), summary="1/3 updated")
    assert messages.verification_line(timed_out) == (
        ":red_circle: failing again: still not healthy 12m after the rollback (1/3 updated)"
    )
    pending = Verification(state=VerificationState.PENDING, summary="3/3 updated, 2/3 available")
    assert messages.verification_line(pending) == ":hourglass_flowing_sand: verifying: 3/3 updated, 2/3 available"


def test_the_card_names_a_revision_rollbot_made_and_a_reopened_incident() -> None:
    sig = signal(made_by_operation="op-3")
    reopened = incident(sig=sig, reopened=2)
    text = all_text(messages.incident_card(reopened, T0))
    assert "*Failed revision:* 3 (made by rollbot's `op-3`)" in text
    assert "*Reopened* 2× (failing again within 30 minutes)" in text


def test_images_are_listed_as_they_are_when_no_good_revision_is_known() -> None:
    text = all_text(messages.incident_card(incident(last_good=None), T0))
    assert "*Images:* web `registry.example/web:2.0-typo`" in text
    assert "Last good revision" not in text


def test_no_image_line_when_the_images_did_not_change() -> None:
    same = signal(images=(ContainerImage(container="web", image="registry.example/web:1.9"),))
    assert "*Images:*" not in all_text(messages.incident_card(incident(sig=same), T0))


def test_the_incidents_list_says_when_a_rollback_is_requested() -> None:
    started = advance(advance(posted(), RollbackClicked(ALICE), T0).incident, RollbackStarted(OP), T0).incident
    assert "rollback requested for 1m00s" in messages.incidents_list([started], T0 + timedelta(minutes=1)).text
