"""Paused reconcilers in a real redis-server: one record per reconciler, shared by replicas, kept until resumed."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import redis

from bot.adapters.redis_sync_pauses import RedisSyncPauses
from bot.core.catalog import ChannelId
from bot.core.errors import StoreUnavailable
from bot.core.gitops import ReconcilerKind, ReconcilerRef, SyncPause

PAUSED_AT = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


def pause(name: str, minutes: int = 0) -> SyncPause:
    return SyncPause(
        ref=ReconcilerRef(kind=ReconcilerKind.ARGOCD, namespace="argocd", name=name),
        target=name,
        previous={"spec.syncPolicy.automated": {"prune": True, "selfHeal": True}},
        operation_id="op-1",
        channel=ChannelId("C0INCIDENT"),
        thread_ts="1.000",
        paused_at=PAUSED_AT + timedelta(minutes=minutes),
        remind_at=PAUSED_AT + timedelta(hours=4),
    )


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_url) as connection:
        yield connection


def test_a_pause_reads_back_exactly_from_another_replica(client: redis.Redis) -> None:
    RedisSyncPauses(client, key_prefix="rollbot:").put(pause("shop"))
    other = RedisSyncPauses(client, key_prefix="rollbot:")
    assert other.get("argocd:argocd/shop") == pause("shop")
    assert other.get("argocd:argocd/cart") is None


def test_all_lists_pauses_oldest_first_and_remove_forgets_one(client: redis.Redis) -> None:
    pauses = RedisSyncPauses(client)
    pauses.put(pause("late", minutes=5))
    pauses.put(pause("early"))
    assert [p.target for p in pauses.all()] == ["early", "late"]
    pauses.remove("argocd:argocd/early")
    assert [p.target for p in pauses.all()] == ["late"]


def test_a_record_it_cannot_read_is_skipped_rather_than_breaking_the_sweep(client: redis.Redis) -> None:
    pauses = RedisSyncPauses(client)
    pauses.put(pause("shop"))
    client.hset("rollbot:sync-pauses", "argocd:argocd/old", '{"written": "by an older version"}')
    assert [p.target for p in pauses.all()] == ["shop"]


def test_redis_down_is_a_store_error() -> None:
    unreachable = redis.Redis(unix_socket_path="/nonexistent/redis.sock", socket_connect_timeout=0.2)
    with pytest.raises(StoreUnavailable):
        RedisSyncPauses(unreachable).all()
