"""Batch rollbacks through the signed Slack driver: `/rollback storefront` → one request message → one ✅ →
a Kubernetes, a Helm and an ECS target rolled back → one progress message, a final line per member."""

from __future__ import annotations

from sandbox.slack.seed import ALICE, BOB, INCIDENT
from tests.e2e_slack.conftest import (
    request_messages,
    request_rollback,
    thread_texts,
    wait_for_phase,
    wait_for_thread_line,
)
from tests.e2e_slack.test_commands import _reply_to
from tests.fakes.memory_backend import RolloutScript

MEMBERS = ["bootcamp", "workshop", "payload-api"]


def test_a_group_rolls_back_three_backends_with_one_approval(slack, fake_slack, bot, backend) -> None:
    request = request_rollback(slack, fake_slack, bot, "storefront --reason 'bad base image'")
    shown = request.message.all_text()
    for name in MEMBERS:
        assert name in shown
    assert shown.count("revision 2 → 1") == 3
    payload = request.message.metadata["event_payload"]
    assert payload["batch"] is True
    assert payload["targets"] == MEMBERS

    slack.reaction_added(BOB, "white_check_mark", INCIDENT, request.ts)

    final = wait_for_phase(fake_slack, request, "succeeded")
    members = final.metadata["event_payload"]["members"]
    assert [(m["target"], m["phase"], m["from_revision"], m["to_revision"]) for m in members] == [
        (name, "succeeded", 2, 1) for name in MEMBERS
    ]
    for name in MEMBERS:
        target = bot.flow.catalog.get(name)
        assert backend.rollbacks_applied(target) == 1
        assert bot.store.lock_holder(target.lock_key) is None
    thread = wait_for_thread_line(fake_slack, request, "all 3 targets rolled back")
    for name in MEMBERS:
        assert sum(line.startswith(f"✅ {name}: rolled back to revision 1") for line in thread) == 1, thread
    assert sum("Batch rollout" in line for line in thread) == 1
    assert len(request_messages(fake_slack)) == 1
    fake_slack.assert_no_errors()


def test_a_failing_member_is_reported_while_the_others_roll_back(slack, fake_slack, bot, backend) -> None:
    backend.script(bot.flow.catalog.get("payload-api"), RolloutScript(steps=2, outcome="fail", reason="tasks stopped"))
    request = request_rollback(slack, fake_slack, bot, "bootcamp workshop payload-api")

    slack.reaction_added(BOB, "white_check_mark", INCIDENT, request.ts)

    final = wait_for_phase(fake_slack, request, "failed")
    phases = [m["phase"] for m in final.metadata["event_payload"]["members"]]
    assert phases == ["succeeded", "succeeded", "failed"]
    thread = wait_for_thread_line(fake_slack, request, "not rolled back: payload-api")
    assert any(line.startswith("❌ payload-api: rollback failed: tasks stopped") for line in thread), thread
    assert backend.rollbacks_applied(bot.flow.catalog.get("workshop")) == 1
    assert thread_texts(fake_slack, request)


def test_a_busy_member_starts_nothing_and_names_its_holder(slack, fake_slack, bot) -> None:
    holder = request_rollback(slack, fake_slack, bot, "payload-api", user=BOB)

    slack.slash_command("storefront", user=ALICE, channel=INCIDENT)

    reply = _reply_to(fake_slack, ALICE, "Nothing was started")
    assert f"payload-api is locked by `{holder.operation.id}`" in reply[-1]
    assert "<@U0BOB>" in reply[-1]
    assert len(request_messages(fake_slack)) == 1
    assert bot.store.lock_holder(bot.flow.catalog.get("workshop").lock_key) is None


def test_explicit_revision_in_a_batch_is_refused(slack, fake_slack, bot) -> None:
    slack.slash_command("storefront 1", user=ALICE, channel=INCIDENT)

    _reply_to(fake_slack, ALICE, "a batch rolls every target back to its previous revision")
    assert request_messages(fake_slack) == []
