"""Votes whose reaction events never reached the bot are counted from the message itself (reactions.get)."""

from __future__ import annotations

from datetime import timedelta

from bot.core.operations import Phase
from bot.flows import RECONCILE_INTERVAL
from tests.flows.conftest import APPROVER, OUTSIDER, REQUESTER, World
from tests.flows.test_rollback_flow import request


def test_an_approval_whose_event_was_lost_is_counted_by_the_sweeper(world: World) -> None:
    operation = request(world)
    world.chat.react(operation.request_message, APPROVER, "white_check_mark")
    world.clock.advance(RECONCILE_INTERVAL)

    world.flow.sweep()

    stored = world.store.get(operation.id)
    assert stored.phase is Phase.SUCCEEDED
    assert [approval.user for approval in stored.approvals] == [APPROVER]
    assert world.backend.rollbacks_applied(operation.target) == 1


def test_a_recount_tells_nobody_anything_and_ignores_outsiders_and_the_requester(world: World) -> None:
    operation = request(world)
    world.chat.react(operation.request_message, OUTSIDER, "white_check_mark")
    world.chat.react(operation.request_message, REQUESTER, "white_check_mark")
    world.chat.react(operation.request_message, "UBOT", "x")
    world.clock.advance(RECONCILE_INTERVAL)

    world.flow.sweep()

    stored = world.store.get(operation.id)
    assert stored.phase is Phase.AWAITING_APPROVAL
    assert stored.approvals == ()
    assert world.chat.ephemerals == []


def test_a_lost_rejection_rejects(world: World) -> None:
    operation = request(world)
    world.chat.react(operation.request_message, APPROVER, "x")
    world.clock.advance(RECONCILE_INTERVAL)

    world.flow.sweep()

    assert world.store.get(operation.id).phase is Phase.REJECTED


def test_recounts_are_spaced_out(world: World) -> None:
    operation = request(world)
    world.clock.advance(RECONCILE_INTERVAL)
    world.flow.sweep()
    world.chat.react(operation.request_message, APPROVER, "white_check_mark")
    world.clock.advance(timedelta(seconds=1))

    world.flow.sweep()
    assert world.store.get(operation.id).phase is Phase.AWAITING_APPROVAL

    world.clock.advance(RECONCILE_INTERVAL)
    world.flow.sweep()
    assert world.store.get(operation.id).phase is Phase.SUCCEEDED
