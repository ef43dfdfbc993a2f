"""Batch rollbacks through the flow: one request, one approval, every lock or none, members in parallel, and
the truth at the end — on the in-memory store and the scripted backend (Kubernetes, Helm and ECS members)."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest

from bot.core.catalog import parse_catalog
from bot.core.operations import Operation, Phase
from bot.flows.batch_requests import BATCH_CONCURRENCY
from tests.fakes.memory_backend import RolloutScript
from tests.flows.conftest import APPROVER, CHANNEL, GROUP_MEMBER, OTHER_APPROVER, REQUESTER, World

BATCH_CATALOG = {
    "defaults": {
        "approvals": {"required": 1, "approvers": [REQUESTER, APPROVER, OTHER_APPROVER], "approver_groups": ["S0SRE"]}
    },
    "targets": {
        "bootcamp": {"backend": "kubernetes", "kind": "Deployment", "name": "bootcamp", "namespace": "shop"},
        "workshop": {"backend": "helm", "release": "workshop", "kube_context": "sandbox"},
        "api": {"backend": "ecs", "cluster": "shop", "service": "api"},
        "payments": {
            "backend": "ecs",
            "service": "payments",
            "approvals": {
                "required": 2,
                "approvers": [APPROVER, OTHER_APPROVER],
                "approver_groups": [],
                "expires_after": "5m",
            },
        },
    },
    "groups": {"shop": ["bootcamp", "workshop", "api"], "money": ["api", "payments"]},
}
SHOP = ("bootcamp", "workshop", "api")


@pytest.fixture
def batch_world(world: World) -> World:
    catalog = parse_catalog(BATCH_CATALOG)
    for name in catalog.names:
        world.backend.arrange(catalog.get(name), revisions=2, script=RolloutScript(steps=3))
    world.catalog = catalog
    world.flow = world.make_flow(catalog=catalog)
    return world


def request(world: World, text: str = "shop", user=REQUESTER) -> Operation:
    operation = world.flow.handle_command(text, user, CHANNEL, world.reply)
    assert operation is not None, [m.text for m in world.replies]
    stored = world.store.get(operation.id)
    assert stored is not None
    return stored


def approve(world: World, operation: Operation, user=APPROVER) -> Operation:
    assert operation.request_message is not None
    world.chat.react(operation.request_message, user, "white_check_mark")
    world.flow.handle_reaction(operation.request_message, user, "white_check_mark", added=True)
    stored = world.store.get(operation.id)
    assert stored is not None
    return stored


def lock_holders(world: World, names=SHOP) -> list[str | None]:
    holders = [world.store.lock_holder(world.catalog.get(name).lock_key) for name in names]
    return [holder.operation_id if holder else None for holder in holders]


def test_a_group_makes_one_request_listing_every_member_with_its_revisions(batch_world: World) -> None:
    operation = request(batch_world)

    assert [member.name for member in operation.members] == list(SHOP)
    assert len([p for p in batch_world.chat.posts if p.thread is None]) == 1
    shown = batch_world.chat.current(operation.request_message)
    for name in SHOP:
        assert f"*{name}*" in str(shown.blocks)
    assert str(shown.blocks).count("revision 2 → 1") == 3
    assert "ghcr.io" in str(shown.blocks) or "image" in str(shown.blocks)  # each member's preview
    payload = shown.metadata["event_payload"]
    assert payload["batch"] is True
    assert payload["targets"] == list(SHOP)
    assert payload["members"] == [
        {"target": name, "phase": "awaiting_approval", "from_revision": 2, "to_revision": 1} for name in SHOP
    ]
    assert lock_holders(batch_world) == [operation.id] * 3
    assert "batch shop (3 targets)" in batch_world.replies[-1].text


def test_one_approval_rolls_back_kubernetes_helm_and_ecs_members(batch_world: World) -> None:
    operation = approve(batch_world, request(batch_world))

    assert operation.phase is Phase.SUCCEEDED
    assert [member.phase for member in operation.members] == [Phase.SUCCEEDED] * 3
    for name in SHOP:
        assert batch_world.backend.rollbacks_applied(batch_world.catalog.get(name)) == 1
    thread = batch_world.chat.thread(operation.request_message)
    for name in SHOP:
        assert sum(line.startswith(f"✅ {name}: rolled back to revision 1") for line in thread) == 1
    assert sum("Batch rollout" in line for line in thread) == 1  # one progress message, edited in place
    assert any(line.startswith("✅ all 3 targets rolled back") for line in thread)
    payload = batch_world.chat.current(operation.request_message).metadata["event_payload"]
    assert payload["phase"] == "succeeded"
    assert [member["phase"] for member in payload["members"]] == ["succeeded"] * 3
    assert lock_holders(batch_world) == [None, None, None]


def test_targets_named_one_by_one_make_the_same_kind_of_batch(batch_world: World) -> None:
    operation = approve(batch_world, request(batch_world, "bootcamp workshop api --reason 'bad base image'"))

    assert operation.target.name == "bootcamp+workshop+api"
    assert operation.reason == "bad base image"
    assert operation.phase is Phase.SUCCEEDED


def test_one_busy_member_starts_nothing_and_the_answer_names_its_holder(batch_world: World) -> None:
    holder = request(batch_world, "api", user=APPROVER)
    posts_before = len(batch_world.chat.posts)

    assert batch_world.flow.handle_command("shop", REQUESTER, CHANNEL, batch_world.reply) is None

    answer = batch_world.replies[-1].text
    assert "Nothing was started" in answer
    assert f"api is locked by `{holder.id}` requested by <@{APPROVER}>" in answer
    assert "bootcamp" not in answer
    assert len(batch_world.chat.posts) == posts_before
    assert lock_holders(batch_world) == [None, None, holder.id]


def test_one_failing_member_lets_the_others_finish_and_the_batch_tells_the_truth(batch_world: World) -> None:
    api = batch_world.catalog.get("api")
    batch_world.backend.script(api, RolloutScript(steps=2, outcome="fail", reason="tasks failed health checks"))

    operation = approve(batch_world, request(batch_world))

    assert operation.phase is Phase.FAILED
    phases = {member.name: member.phase for member in operation.members}
    assert phases == {"bootcamp": Phase.SUCCEEDED, "workshop": Phase.SUCCEEDED, "api": Phase.FAILED}
    assert "tasks failed health checks" in (operation.member("api").outcome or "")
    thread = batch_world.chat.thread(operation.request_message)
    assert any(line.startswith("✅ bootcamp: rolled back") for line in thread)
    assert any(line.startswith("✅ workshop: rolled back") for line in thread)
    assert any(line.startswith("❌ api: rollback failed: tasks failed health checks") for line in thread)
    summary = "2 of 3 rolled back (bootcamp, workshop); not rolled back: api"
    assert any(summary in line for line in thread)
    payload = batch_world.chat.current(operation.request_message).metadata["event_payload"]
    assert payload["phase"] == "failed"
    assert [m["phase"] for m in payload["members"]] == ["succeeded", "succeeded", "failed"]
    assert lock_holders(batch_world) == [None, None, None]


def test_a_member_the_backend_refuses_fails_alone(batch_world: World) -> None:
    workshop = batch_world.catalog.get("workshop")
    operation = request(batch_world)
    batch_world.backend.deploy(workshop)  # someone deployed since the plan: the backend refuses to roll back

    operation = approve(batch_world, operation)

    assert operation.phase is Phase.FAILED
    assert [member.phase for member in operation.members] == [Phase.SUCCEEDED, Phase.FAILED, Phase.SUCCEEDED]
    assert batch_world.backend.rollbacks_applied(workshop) == 0


def test_a_dry_run_batch_previews_every_member_and_locks_nothing(batch_world: World) -> None:
    operation = request(batch_world, "shop --dry-run")

    assert operation.phase is Phase.PREVIEW
    assert [member.phase for member in operation.members] == [Phase.PREVIEW] * 3
    preview = batch_world.replies[-1]
    for name in SHOP:
        assert f"*{name}*" in str(preview.blocks)
    assert batch_world.chat.posts == []
    assert lock_holders(batch_world) == [None, None, None]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("shop 1", "a batch rolls every target back to its previous revision — drop `1`"),
        ("bootcamp workshop 1", "a batch rolls every target back to its previous revision — drop `1`"),
        ("bootcamp workshop --to-revision=1", "a batch rolls every target back to its previous revision — drop `1`"),
    ],
    ids=["group", "names", "flag"],
)
def test_an_explicit_revision_in_a_batch_is_refused_clearly(batch_world: World, text: str, expected: str) -> None:
    assert batch_world.flow.handle_command(text, REQUESTER, CHANNEL, batch_world.reply) is None

    assert expected in batch_world.replies[-1].text
    assert batch_world.chat.posts == []
    assert lock_holders(batch_world) == [None, None, None]


def test_the_strictest_policy_of_the_members_guards_the_batch(batch_world: World) -> None:
    operation = request(batch_world, "money")
    policy = operation.target.policy
    assert policy.required == 2
    assert set(policy.approvers) == {APPROVER, OTHER_APPROVER}
    assert policy.approver_groups == ()
    assert operation.expires_at - operation.created_at == timedelta(minutes=5)  # the shortest expiry

    operation = approve(batch_world, operation, GROUP_MEMBER)  # allowed for api, not for payments
    assert operation.approvals == ()
    assert any("not an approver" in text for text in batch_world.chat.told(GROUP_MEMBER))
    operation = approve(batch_world, operation, APPROVER)
    assert operation.phase is Phase.AWAITING_APPROVAL
    operation = approve(batch_world, operation, OTHER_APPROVER)
    assert operation.phase is Phase.SUCCEEDED


def test_a_rejected_batch_runs_nothing_and_frees_every_target(batch_world: World) -> None:
    operation = request(batch_world)
    batch_world.flow.handle_reaction(operation.request_message, APPROVER, "x", added=True)

    operation = batch_world.store.get(operation.id)
    assert operation.phase is Phase.REJECTED
    assert [member.phase for member in operation.members] == [Phase.REJECTED] * 3
    assert lock_holders(batch_world) == [None, None, None]
    assert all(batch_world.backend.roll_back_calls(batch_world.catalog.get(name)) == 0 for name in SHOP)


def test_a_replica_shutting_down_mid_batch_starts_no_more_members_and_hands_the_batch_over(world: World) -> None:
    # More members than run at once: some are still waiting for a worker when the replica is told to stop.
    names = [f"svc-{n}" for n in range(BATCH_CONCURRENCY + 2)]
    catalog = parse_catalog(
        {
            "defaults": {"approvals": {"required": 1, "approvers": [REQUESTER, APPROVER]}},
            "targets": {
                name: {"backend": "kubernetes", "kind": "Deployment", "name": name, "namespace": "shop"}
                for name in names
            },
            "groups": {"fleet": names},
        }
    )
    for name in names:
        world.backend.arrange(catalog.get(name), revisions=2, script=RolloutScript(steps=3, hold=True))
    flow = world.make_flow(catalog=catalog)
    world.flow, world.catalog = flow, catalog
    operation = request(world, "fleet")
    running = threading.Thread(target=approve, args=(world, operation))
    running.start()
    first_wave = [catalog.get(name) for name in names[:BATCH_CONCURRENCY]]
    deadline = time.monotonic() + 10
    while not all(world.backend.roll_back_calls(target) for target in first_wave):
        assert time.monotonic() < deadline, "the first members never started"
        time.sleep(0.01)

    flow.stop()
    running.join(timeout=10)

    assert not running.is_alive()
    queued = [catalog.get(name) for name in names[BATCH_CONCURRENCY:]]
    assert [world.backend.roll_back_calls(target) for target in queued] == [0, 0]
    handed_over = world.store.get(operation.id)
    assert handed_over is not None
    assert handed_over.phase is Phase.ROLLING_BACK
    assert handed_over.lease_until is not None
    assert handed_over.lease_until <= world.clock.now()  # another replica may take it over at once
    assert any("restarting" in line for line in world.chat.thread(operation.request_message))

    for name in names:
        world.backend.release(catalog.get(name))
    world.make_flow(replica_id="replica-b", catalog=catalog).sweep()

    finished = world.store.get(operation.id)
    assert finished is not None
    assert finished.phase is Phase.SUCCEEDED
    assert finished.executor == "replica-b"
    assert [world.backend.rollbacks_applied(catalog.get(name)) for name in names] == [1] * len(names)
