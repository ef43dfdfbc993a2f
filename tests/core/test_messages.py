"""Chat text and Block Kit layouts: exact where people read them, escaped, and inside Slack's limits."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.core import messages
from bot.core.catalog import parse_catalog
from bot.core.operations import Approval, MessageRef, Phase
from bot.core.rollouts import (
    BackendOption,
    Change,
    ContainerImage,
    Revision,
    RevisionNumber,
    RollbackPlan,
    RolloutPhase,
    RolloutStatus,
    TargetStatus,
    UnhealthyUnit,
)
from bot.core.thread_digest import Digest, ProblemCount
from tests.fakes.operations import APPROVER, REQUESTER, make_operation, make_target

NOW = datetime(2026, 11, 22, 14, 2, tzinfo=UTC)


def _all_text(message: messages.ChatMessage) -> str:
    return message.text + json.dumps(message.blocks, ensure_ascii=False)


def _within_limits(message: messages.ChatMessage) -> None:
    assert len(message.text) <= messages.MAX_TEXT
    assert len(message.blocks) <= messages.MAX_BLOCKS
    for block in message.blocks:
        if block["type"] == "section":
            assert len(block["text"]["text"]) <= messages.MAX_SECTION_TEXT
        if block["type"] == "context":
            assert len(block["elements"]) <= 10
    block_ids = [block["block_id"] for block in message.blocks if "block_id" in block]
    assert len(block_ids) == len(set(block_ids))


@pytest.mark.parametrize("phase", list(Phase), ids=[phase.value for phase in Phase])
def test_every_request_message_carries_the_operation_metadata(phase: Phase) -> None:
    operation = make_operation(phase=phase)
    message = messages.request_message(operation)
    assert message.metadata == {
        "event_type": "rollbot_operation",
        "event_payload": {
            "operation_id": operation.id,
            "phase": phase.value,
            "target": "workshop",
            "backend": "helm",
            "from_revision": 3,
            "to_revision": 2,
            "source": "user",
        },
    }
    _within_limits(message)


def test_the_request_message_shows_what_will_change_and_who_may_approve() -> None:
    operation = make_operation(approvals=(Approval(user=APPROVER, at=NOW),), target=make_target(required=2))
    text = _all_text(messages.request_message(operation))
    assert "helm release default/workshop (context sandbox)" in text
    assert "revision 3 → 2" in text
    assert "`ghcr.io/acme/workshop:1.3.0` → `ghcr.io/acme/workshop:1.2.0`" in text
    assert "chart workshop-0.2.0" in text
    assert "approvals 1/2 (<@U0BBB>)" in text
    assert f"(not <@{REQUESTER}>)" in text
    assert "expires 2026-11-22 14:17 UTC" in text
    assert "500s after deploy" in text


def test_buttons_are_offered_only_while_awaiting_approval() -> None:
    awaiting = messages.request_message(make_operation(phase=Phase.AWAITING_APPROVAL))
    actions = [block for block in awaiting.blocks if block["type"] == "actions"]
    assert [element["action_id"] for element in actions[0]["elements"]] == ["rollbot_approve", "rollbot_reject"]
    assert all(element["value"] for element in actions[0]["elements"])
    for phase in set(Phase) - {Phase.AWAITING_APPROVAL}:
        assert not any(
            block["type"] == "actions" for block in messages.request_message(make_operation(phase=phase)).blocks
        )


@pytest.mark.parametrize(
    ("phase", "badge"),
    [
        (Phase.SUCCEEDED, "Rolled back"),
        (Phase.FAILED, "Rollback failed"),
        (Phase.REJECTED, "Rejected"),
        (Phase.EXPIRED, "Expired"),
        (Phase.CANCELLED, "Cancelled"),
        (Phase.ROLLING_BACK, "Rolling back"),
        (Phase.PREVIEW, "Dry run"),
    ],
    ids=lambda value: str(value),
)
def test_the_phase_badge_says_where_the_operation_is(phase: Phase, badge: str) -> None:
    operation = make_operation(
        phase=phase,
        decided_by=APPROVER,
        outcome="rolled back to revision 2",
        executor="replica-a",
        started_at=NOW,
        finished_at=NOW + timedelta(seconds=75),
        last_status=RolloutStatus(phase=RolloutPhase.PROGRESSING, summary="2/3 pods updated"),
    )
    text = _all_text(messages.request_message(operation))
    assert badge in text
    if phase in {Phase.SUCCEEDED, Phase.FAILED}:
        assert "took 1m15s" in text
        assert "lock released" in text
    if phase is Phase.ROLLING_BACK:
        assert "2/3 pods updated" in text
        assert "locked by" in text
    if phase is Phase.REJECTED:
        assert "by <@U0BBB>" in text


def test_user_and_backend_strings_are_escaped() -> None:
    plan = RollbackPlan(
        from_revision=RevisionNumber(3),
        to_revision=RevisionNumber(2),
        changes=(Change(scope="container <web>", field="env A&B", before="<!channel>", after=None),),
        notes=("<https://evil|click>",),
    )
    text = _all_text(messages.request_message(make_operation(plan=plan, reason="<!here> deploy broke & more")))
    assert "<!channel>" not in text
    assert "<!here>" not in text
    assert "&lt;!here&gt; deploy broke &amp; more" in text
    assert "container &lt;web&gt;" in text
    assert "_(none)_" in text
    assert "&lt;https://evil|click&gt;" in text


def test_mentions_survive_escaping_in_user_errors_but_broadcasts_do_not() -> None:
    text = messages.user_error("ask in <#C0OPS> or <@U0BOB> or <!subteam^S0SRE>, not <!channel>").text
    assert "<#C0OPS>" in text
    assert "<@U0BOB>" in text
    assert "<!subteam^S0SRE>" in text
    assert "&lt;!channel&gt;" in text


def test_a_huge_preview_is_summarised_inside_the_limits() -> None:
    changes = tuple(
        Change(scope=f"container c{n}", field="image", before="a" * 300, after="b" * 300) for n in range(500)
    )
    plan = RollbackPlan(from_revision=RevisionNumber(3), to_revision=RevisionNumber(2), changes=changes)
    message = messages.request_message(make_operation(plan=plan, reason="x" * 500))
    _within_limits(message)
    assert "more changes" in _all_text(message) or "…" in _all_text(message)


@settings(max_examples=60, deadline=None)
@given(reason=st.text(max_size=600), before=st.text(max_size=400), summary=st.text(max_size=400))
def test_any_strings_stay_inside_the_limits_and_never_open_a_tag(reason: str, before: str, summary: str) -> None:
    plan = RollbackPlan(
        from_revision=RevisionNumber(3),
        to_revision=RevisionNumber(2),
        changes=(Change(scope="container web", field="image", before=before, after="x"),),
    )
    operation = make_operation(plan=plan, reason=reason)
    status = RolloutStatus(phase=RolloutPhase.PROGRESSING, summary=summary)
    for message in (messages.request_message(operation), messages.progress_message(operation, status)):
        _within_limits(message)
        for block in message.blocks:
            if block["type"] == "section":
                assert "<!" not in block["text"]["text"].replace("<!subteam^", "")


def test_progress_shows_counts_and_unhealthy_units() -> None:
    operation = make_operation(phase=Phase.ROLLING_BACK)
    status = RolloutStatus(
        phase=RolloutPhase.PROGRESSING,
        summary="2/3 pods updated",
        ready=2,
        desired=3,
        updated=2,
        unhealthy=(UnhealthyUnit(name="web-1", reason="CrashLoopBackOff", message="exit 1"),),
    )
    message = messages.progress_message(operation, status)
    text = _all_text(message)
    assert "ready 2/3 · updated 2/3" in text
    assert "`web-1` CrashLoopBackOff: exit 1" in text
    assert message.metadata is not None
    done = messages.progress_message(operation, RolloutStatus(phase=RolloutPhase.SUCCEEDED, summary="all ready"))
    assert ":large_green_circle:" in done.text
    failed = messages.progress_message(
        operation, RolloutStatus(phase=RolloutPhase.FAILED, summary="gave up", desired=3)
    )
    assert "ready ?/3" in failed.text


def test_thread_lines_carry_the_metadata() -> None:
    operation = make_operation(phase=Phase.ROLLING_BACK)
    unit = UnhealthyUnit(name="web-0", reason="OOMKilled")
    for message in (
        messages.thread_line(operation, "✅ approved"),
        messages.digest_line(operation, Digest(problems=(ProblemCount(reason=unit.reason, count=3),))),
        messages.closing_notes_line(operation, ("web:3 was not deregistered",)),
        messages.takeover_line(operation),
        messages.handover_line(operation),
    ):
        assert message.metadata is not None
        assert message.metadata["event_payload"]["operation_id"] == operation.id


def test_history_is_newest_first_with_the_current_revision_marked() -> None:
    target = make_target()
    revisions = [
        Revision(
            number=RevisionNumber(n),
            images=(ContainerImage(container="web", image=f"img:{n}"),),
            deployed_at=NOW - timedelta(hours=20 - n),
            status="deployed" if n == 20 else "superseded",
            is_current=n == 20,
            change_cause=f"deploy {n}" if n % 2 else None,
        )
        for n in range(1, 21)
    ]
    message = messages.history_message(target, revisions)
    text = _all_text(message)
    assert text.index("img:20") < text.index("img:19")
    assert "▶   20" in text
    assert "img:5" not in text  # only the newest 15
    assert "5 older revisions not shown" in text
    _within_limits(message)
    assert "(no revisions)" in _all_text(messages.history_message(target, []))


def test_status_lists_images_details_unhealthy_units_and_the_lock() -> None:
    status = TargetStatus(
        revision=RevisionNumber(4),
        summary="2/3 ready",
        images=(ContainerImage(container="web", image="img:4"),),
        details=("paused: no",),
        unhealthy=(UnhealthyUnit(name="web-2", reason="Pending"),),
        is_healthy=False,
    )
    text = messages.status_message(make_target(), status, messages.lock_line("op-1", "U0AAA", NOW)).text
    assert ":red_circle:" in text
    assert "at revision 4: 2/3 ready" in text
    assert "`web`: `img:4`" in text
    assert "paused: no" in text
    assert "`web-2` Pending" in text
    assert "locked by `op-1` requested by <@U0AAA> at 2026-11-22 14:02 UTC" in text
    healthy = messages.status_message(make_target(), TargetStatus(revision=None, summary="gone")).text
    assert "no revision" in healthy


def test_help_lists_targets_usage_and_backend_flags() -> None:
    catalog = parse_catalog(
        {
            "defaults": {"approvals": {"approvers": ["U0AAA"]}},
            "targets": {
                "workshop": {"backend": "helm", "release": "workshop", "description": "the <demo> app"},
                "myservice": {"backend": "ecs", "service": "myservice", "region": "ap-northeast-1"},
            },
        }
    )
    option = BackendOption(name="deregister", help="deregister the bad task definition")
    text = _all_text(messages.help_message(catalog, "/rollback", [("ecs", option)]))
    assert "`workshop`: helm release default/workshop the &lt;demo&gt; app" in text
    assert "`myservice`: ECS service default/myservice (ap-northeast-1)" in text
    assert "`--deregister` (ecs)" in text
    assert "/rollback history <target>" in text
    empty = parse_catalog({})
    assert "no targets configured" in _all_text(messages.help_message(empty, "/rb"))


def test_short_replies_read_as_sentences() -> None:
    target = make_target()
    operation = make_operation()
    assert messages.already_at_revision(target, 3).text.endswith("is already at revision 3; nothing to roll back.")
    assert "Revisions that exist: 1, 2, 3." in messages.revision_not_found(target, 9, [1, 2, 3]).text
    assert "has no that revision" not in messages.revision_not_found(target, None, []).text
    assert "none" in messages.revision_not_found(target, None, []).text
    inactive = messages.revision_not_found(target, 2, [1, 3], "myservice:2 is INACTIVE (deregistered)")
    assert "myservice:2 is INACTIVE (deregistered)" in inactive.text
    assert "Revisions that exist: 1, 3." in inactive.text
    busy = messages.target_busy(target, "op-9", "U0AAA", NOW).text
    assert busy == ":lock: workshop is locked by `op-9` requested by <@U0AAA> at 2026-11-22 14:02 UTC."
    assert messages.target_busy("bootcamp", "op-9", "U0AAA", NOW).text.startswith(":lock: bootcamp")
    assert messages.internal_error_text("op-1") == "Internal error, reference op-1"
    assert "Working on `/rollback workshop 1`" in messages.command_received("/rollback", " workshop 1 ").text
    assert messages.command_received("/rollback", "").text == "Working on `/rollback`…"
    assert "Usage" in messages.usage_error("bad", "/rollback").text
    assert operation.id in messages.request_posted(operation).text
    assert operation.id in messages.cancel_done(operation).text
    assert "op-x" in messages.operation_not_found("op-x").text
    assert messages.try_again("helm release default/workshop cannot be reached").text.endswith("try again in a minute.")
    assert messages.not_allowed("nope <!channel>").text == ":no_entry: nope &lt;!channel&gt;"


@pytest.mark.parametrize(
    ("seconds", "shown"), [(5, "5s"), (75, "1m15s"), (3725, "1h02m"), (-3, "0s")], ids=["s", "m", "h", "negative"]
)
def test_elapsed_times_are_compact(seconds: int, shown: str) -> None:
    assert messages.format_elapsed(timedelta(seconds=seconds)) == shown


def test_targets_show_their_coordinates() -> None:
    assert messages.target_coordinates(make_target(backend="kubernetes")) == "deployment/workshop in default"
    assert messages.target_coordinates(make_target(backend="ecs")) == "ECS service default/workshop (ap-northeast-1)"


def test_approvers_text_without_anyone_configured_says_so() -> None:
    operation = make_operation(target=make_target(approvers=(), approver_groups=("S0SRE",), allow_self_approval=True))
    assert messages.approvers_text(operation) == "<!subteam^S0SRE>"
    nobody = make_operation(target=make_target(approvers=(), approver_groups=()))
    assert messages.approvers_text(nobody).startswith("nobody")


def test_a_plan_without_changes_says_so() -> None:
    plan = RollbackPlan(from_revision=RevisionNumber(3), to_revision=RevisionNumber(2))
    operation = make_operation(plan=plan, phase=Phase.SUCCEEDED)
    assert "no differences reported" in _all_text(messages.request_message(operation))


def test_message_refs_are_not_part_of_the_text() -> None:
    operation = make_operation(request_message=MessageRef(channel="C0INCIDENT", ts="1.2"))
    assert "1.2" not in messages.request_message(operation).text


def crashing(index: int) -> UnhealthyUnit:
    return UnhealthyUnit(
        name=f"web-7d9c-{index:05d}",
        reason="CrashLoopBackOff",
        message=f"back-off 40s restarting failed container=web pod=web-7d9c-{index:05d}",
    )


def test_a_rollout_of_fifty_pods_ends_with_its_stuck_pods_counted_per_reason_never_listed() -> None:
    stuck = [crashing(i) for i in range(38)] + [
        UnhealthyUnit(name="web-7d9c-pull1", reason="ImagePullBackOff", message="Back-off pulling image web:v10"),
        UnhealthyUnit(name="web-7d9c-pull2", reason="ImagePullBackOff"),
        UnhealthyUnit(name="web-7d9c-oom01", reason="OOMKilled"),
        UnhealthyUnit(name="web-7d9c-pend1", reason="Unschedulable", message="0/3 nodes are available"),
        UnhealthyUnit(name="web-7d9c-pend2", reason="ContainerCreating"),
    ]

    text = messages.stuck_pods_text(stuck)

    assert text == (
        "38 pods CrashLoopBackOff (back-off 40s restarting failed container=web pod=web-7d9c-00000); "
        "2 pods ImagePullBackOff (Back-off pulling image web:v10); "
        "pod web-7d9c-oom01 OOMKilled; "
        "2 pods for 2 more reasons"
    )


def test_one_other_reason_is_counted_in_the_singular_and_long_pod_messages_are_cut() -> None:
    stuck = [
        *(crashing(i) for i in range(3)),
        UnhealthyUnit(name="a", reason="ErrImagePull", message="x" * 500),
        UnhealthyUnit(name="b", reason="ErrImagePull"),
        UnhealthyUnit(name="c", reason="OOMKilled"),
        UnhealthyUnit(name="d", reason="Evicted"),
    ]

    text = messages.stuck_pods_text(stuck)

    assert text.endswith("; 1 pod for 1 more reason")
    assert "2 pods ErrImagePull (" + "x" * 119 + "…)" in text
