"""A vote the store refuses because another operation took the target is answered, never dropped in silence."""

from __future__ import annotations

import redis

from bot.adapters.redis_store import RedisOperationStore
from bot.core.operations import Phase
from tests.flows.conftest import APPROVER, CHANNEL, OTHER_APPROVER, REQUESTER, World


def test_a_vote_on_a_request_whose_lock_was_lost_and_taken_is_answered(world: World, redis_url: str) -> None:
    store = RedisOperationStore.from_url(redis_url, world.clock)
    flow = world.make_flow(store=store)
    first = flow.handle_command("workshop", REQUESTER, CHANNEL, world.reply)
    # Redis lost the lock (a failover to a replica that had not caught up), and someone requested the target.
    with redis.Redis.from_url(redis_url) as client:
        for key in client.scan_iter(match="*lock:*"):
            client.delete(key)
    second = flow.handle_command("workshop", OTHER_APPROVER, CHANNEL, world.reply)
    assert second is not None

    flow.handle_reaction(first.request_message, APPROVER, "white_check_mark", added=True)

    assert store.get(first.id).phase is Phase.AWAITING_APPROVAL
    told = world.chat.told(APPROVER)
    assert len(told) == 1
    assert "not counted" in told[0]
    assert second.id in told[0]
    store.close()
