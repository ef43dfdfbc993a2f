"""`RedisAutoLedgers` on a real redis-server: compare-and-set per context, the index, and the audit entries."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from bot.adapters.redis_auto import RedisAutoLedgers
from bot.adapters.redis_store import RedisOperationStore
from bot.core.auto_policy import AutoLedger, AutoStart
from bot.core.errors import ConcurrentUpdate
from tests.core.factories import T0
from tests.fakes.clock import ManualClock


@pytest.fixture
def ledgers(redis_url: str, manual_clock: ManualClock) -> Iterator[RedisAutoLedgers]:
    store = RedisOperationStore.from_url(redis_url, manual_clock)
    yield RedisAutoLedgers(store.client)
    store.close()


def test_an_unknown_context_has_an_empty_ledger(ledgers: RedisAutoLedgers) -> None:
    assert ledgers.get("sandbox") == AutoLedger(context="sandbox")
    assert ledgers.contexts() == []


def test_writes_compare_and_set_on_the_version(ledgers: RedisAutoLedgers) -> None:
    start = AutoStart(target="kubernetes:sandbox:default/Deployment/web", incident_id="inc-1", at=T0)
    first = AutoLedger(context="sandbox", version=1, starts=(start,))
    ledgers.replace(first, expected_version=0)
    assert ledgers.get("sandbox") == first
    with pytest.raises(ConcurrentUpdate):
        ledgers.replace(AutoLedger(context="sandbox", version=1), expected_version=0)  # a replica that read v0
    tripped = first.model_copy(update={"version": 2, "tripped_at": T0, "tripped_why": "3 within 10m"})
    ledgers.replace(tripped, expected_version=1)
    assert ledgers.get("sandbox").is_tripped
    ledgers.replace(AutoLedger(context="us-east-1", version=1), expected_version=0)
    assert ledgers.contexts() == ["sandbox", "us-east-1"]


def test_decisions_go_to_the_audit_stream_operations_use(ledgers: RedisAutoLedgers, redis_url: str) -> None:
    ledgers.audit("auto_cancelled", {"incident_id": "inc-1", "actor": "U0ALICE", "source": "pipeline"})
    with redis.Redis.from_url(redis_url, decode_responses=True) as client:
        entries = [fields for _, fields in client.xrange("rollbot:{rollbot}:audit")]
    assert entries == [{"event": "auto_cancelled", "incident_id": "inc-1", "actor": "U0ALICE", "source": "pipeline"}]
