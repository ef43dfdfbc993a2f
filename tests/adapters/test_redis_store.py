"""RedisOperationStore beyond the shared contract: replicas, outages, restarts, lost replies, the key layout.

The shared behaviour lives in tests/contracts/test_operation_store.py; these are the things only a real
server over real connections can show.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.retry import Retry

from bot.adapters.redis_inbox import RedisInbox
from bot.adapters.redis_store import RedisOperationStore, tagged_prefix
from bot.core.errors import ConcurrentUpdate, StoreUnavailable, TargetBusy
from bot.core.operations import MessageRef, OperationId, Phase
from bot.ports import LockInfo
from sandbox.redis_server import RedisServer
from tests.contracts.test_operation_store import race
from tests.fakes.clock import ManualClock
from tests.fakes.operations import APPROVER, CHANNEL, REQUESTER, advanced, make_operation, make_target

LOCK_TTL = timedelta(minutes=15)
# A decode_responses client for looking at keys as an operator would; redis-py types every reply as a union.
RawRedis = Any
Replica = Callable[..., RedisOperationStore]
LossyStore = tuple[RedisOperationStore, "ReplyDroppingProxy"]
REQUEST = MessageRef(channel=CHANNEL, ts="1700000000.000100")


@pytest.fixture
def replica(redis_url: str, manual_clock: ManualClock) -> Iterator[Replica]:
    """Builds stores that share one Redis database, each with its own client (as separate bot replicas do)."""
    stores: list[RedisOperationStore] = []

    def build(key_prefix: str = "rollbot:") -> RedisOperationStore:
        store = RedisOperationStore.from_url(redis_url, manual_clock, key_prefix=key_prefix)
        stores.append(store)
        return store

    yield build
    for store in stores:
        store.close()


@pytest.fixture
def raw(redis_url: str) -> Iterator[RawRedis]:
    with redis.Redis.from_url(redis_url, decode_responses=True) as client:
        yield client


# --- replicas --------------------------------------------------------------------------------------------------


def test_replicas_racing_to_approve_one_version_have_exactly_one_winner(replica: Replica) -> None:
    replicas = [replica() for _ in range(6)]
    operation = make_operation()
    replicas[0].create(operation, LOCK_TTL)
    approved = advanced(operation, phase=Phase.APPROVED)

    outcomes = race(lambda store: store.replace(approved, expected_version=1, actor=APPROVER), replicas)

    assert sum(outcome is None for outcome in outcomes) == 1
    assert all(isinstance(o, ConcurrentUpdate) for o in outcomes if o is not None)
    assert [entry.phase for entry in replicas[1].audit(operation.id)] == ["awaiting_approval", "approved"]


def test_replicas_racing_to_request_one_target_let_one_through(replica: Replica) -> None:
    replicas = [replica() for _ in range(6)]
    requests = [make_operation() for _ in replicas]

    outcomes = race(lambda pair: pair[0].create(pair[1], LOCK_TTL), list(zip(replicas, requests, strict=True)))

    winners = [request for request, outcome in zip(requests, outcomes, strict=True) if outcome is None]
    assert len(winners) == 1
    assert all(isinstance(o, TargetBusy) and winners[0].id in str(o) for o in outcomes if o is not None)
    assert [op.id for op in replicas[0].in_flight()] == [winners[0].id]


def test_records_survive_a_restart_of_the_bot(replica: Replica) -> None:
    before = replica()
    operation = make_operation()
    before.create(operation, LOCK_TTL)
    before.link_message(operation.id, REQUEST)
    rolling = advanced(advanced(operation, phase=Phase.APPROVED), phase=Phase.ROLLING_BACK)
    before.replace(advanced(operation, phase=Phase.APPROVED), expected_version=1, actor=APPROVER)
    before.replace(rolling, expected_version=2)
    before.first_delivery("event:Ev1", timedelta(hours=1))
    before.close()

    after = replica()

    assert after.get(operation.id) == rolling
    assert after.find_by_message(REQUEST) == rolling
    assert list(after.in_flight()) == [rolling]
    assert after.lock_holder(operation.target.lock_key) == LockInfo(
        operation_id=operation.id, requester=REQUESTER, since=operation.created_at
    )
    assert [entry.version for entry in after.audit(operation.id)] == [1, 2, 3]
    assert after.first_delivery("event:Ev1", timedelta(hours=1)) is False


def test_key_prefixes_keep_two_bots_on_one_redis_apart(replica: Replica) -> None:
    production, staging = replica(key_prefix="rollbot:"), replica(key_prefix="rollbot-staging:")
    operation = make_operation()
    production.create(operation, LOCK_TTL)

    staging.create(make_operation(), LOCK_TTL)  # same target name, other bot: no lock conflict

    assert staging.get(operation.id) is None
    assert len(production.in_flight()) == 1


# --- what operators see in Redis -------------------------------------------------------------------------------


def test_lock_carries_a_ttl_so_a_stuck_operation_cannot_hold_a_target_forever(replica: Replica, raw: RawRedis) -> None:
    operation = make_operation(id=OperationId("op-1a2b"))
    replica().create(operation, timedelta(seconds=30))

    key = f"rollbot:{{rollbot}}:lock:{operation.target.lock_key}"
    assert 0 < raw.pttl(key) <= 30_000
    assert json.loads(raw.get(key)) == {
        "operation_id": "op-1a2b",
        "requester": "U0AAA",
        "since": operation.created_at.isoformat().replace("+00:00", "Z"),
    }


def test_every_write_lands_in_the_global_audit_stream(replica: Replica, raw: RawRedis) -> None:
    store = replica()
    operation = make_operation()
    store.create(operation, LOCK_TTL)
    store.replace(advanced(operation, phase=Phase.REJECTED), expected_version=1, actor=APPROVER, note="❌")

    entries = raw.xrange("rollbot:{rollbot}:audit")

    assert [(fields["phase"], fields.get("actor"), fields.get("note")) for _, fields in entries] == [
        ("awaiting_approval", "U0AAA", None),
        ("rejected", "U0BBB", "❌"),
    ]
    assert {fields["target"] for _, fields in entries} == {operation.target.lock_key}
    assert [fields for _, fields in raw.xrange(f"rollbot:{{rollbot}}:audit:{operation.id}")] == [f for _, f in entries]
    assert json.loads(raw.get(f"rollbot:{{rollbot}}:op:{operation.id}"))["phase"] == "rejected"
    assert raw.zrange("rollbot:{rollbot}:in-flight", 0, -1) == []


# --- outages ---------------------------------------------------------------------------------------------------


def _calls(store: RedisOperationStore) -> dict[str, Callable[[], object]]:
    operation = make_operation()
    return {
        "create": lambda: store.create(operation, LOCK_TTL),
        "get": lambda: store.get(operation.id),
        "replace": lambda: store.replace(advanced(operation), expected_version=1),
        "link_message": lambda: store.link_message(operation.id, REQUEST),
        "find_by_message": lambda: store.find_by_message(REQUEST),
        "lock_holder": lambda: store.lock_holder(operation.target.lock_key),
        "refresh_lock": lambda: store.refresh_lock(operation, LOCK_TTL),
        "in_flight": store.in_flight,
        "first_delivery": lambda: store.first_delivery("event:Ev1", timedelta(hours=1)),
        "is_delivered": lambda: store.is_delivered("event:Ev1"),
        "audit": lambda: store.audit(operation.id),
    }


CALLS = [
    "create",
    "get",
    "replace",
    "link_message",
    "find_by_message",
    "lock_holder",
    "refresh_lock",
    "in_flight",
    "first_delivery",
    "is_delivered",
    "audit",
]


@pytest.mark.parametrize("call", CALLS)
def test_unreachable_redis_raises_store_unavailable_not_a_redis_error(
    tmp_path: Path, manual_clock: ManualClock, call: str
) -> None:
    client = redis.Redis(unix_socket_path=str(tmp_path / "nobody-listens.sock"), retry=Retry(NoBackoff(), 0))
    store = RedisOperationStore(client, manual_clock)

    with pytest.raises(StoreUnavailable) as unavailable:
        _calls(store)[call]()

    assert isinstance(unavailable.value.__cause__, redis.ConnectionError)
    assert store.is_reachable() is False
    store.close()


def test_redis_going_away_under_a_running_store_is_reported_not_raised(manual_clock: ManualClock) -> None:
    with RedisServer() as server:
        store = RedisOperationStore(
            redis.Redis.from_url(server.url(), retry=Retry(NoBackoff(), 1)),
            manual_clock,
            probe_timeout=timedelta(milliseconds=200),
        )
        operation = make_operation()
        store.create(operation, LOCK_TTL)
        assert store.is_reachable() is True

        server.stop()

        assert store.is_reachable() is False
        with pytest.raises(StoreUnavailable):
            store.get(operation.id)
        store.close()


# --- lost replies ----------------------------------------------------------------------------------------------


class ReplyDroppingProxy:
    """A unix-socket proxy in front of Redis that, once armed, forwards a command but drops its reply.

    That is a lost reply as the client sees it: the server ran the command, the connection broke before the
    answer arrived, and redis-py resends the command on a new connection.
    """

    def __init__(self, upstream: Path, path: Path) -> None:
        self.path = path
        self._upstream = upstream
        self._armed_marker: bytes | None = None
        self.dropped = 0
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(path))
        self._listener.listen()
        threading.Thread(target=self._accept, daemon=True).start()

    def drop_next_reply_to(self, marker: bytes) -> None:
        self._armed_marker = marker

    def close(self) -> None:
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            server.connect(str(self._upstream))
            doomed = threading.Event()
            threading.Thread(target=self._requests, args=(client, server, doomed), daemon=True).start()
            threading.Thread(target=self._replies, args=(server, client, doomed), daemon=True).start()

    def _requests(self, client: socket.socket, server: socket.socket, doomed: threading.Event) -> None:
        while chunk := _receive(client):
            if self._armed_marker is not None and self._armed_marker in chunk:
                self._armed_marker = None
                doomed.set()
            try:
                server.sendall(chunk)
            except OSError:  # Redis or the test closed its side first: this connection is over
                break
        server.close()

    def _replies(self, server: socket.socket, client: socket.socket, doomed: threading.Event) -> None:
        while chunk := _receive(server):
            if doomed.is_set():
                self.dropped += 1
                client.shutdown(socket.SHUT_RDWR)
                client.close()
                return
            try:
                client.sendall(chunk)
            except OSError:  # the client went away first: this connection is over
                break
        client.close()


def _receive(connection: socket.socket) -> bytes:
    try:
        return connection.recv(65536)
    except OSError:
        return b""


@pytest.fixture
def lossy_store(
    redis_server: RedisServer, redis_url: str, tmp_path: Path, manual_clock: ManualClock
) -> Iterator[LossyStore]:
    proxy = ReplyDroppingProxy(redis_server.socket_path, tmp_path / "proxy.sock")
    client = redis.Redis.from_url(
        redis_url.replace(str(redis_server.socket_path), str(proxy.path)), retry=Retry(NoBackoff(), 2)
    )
    store = RedisOperationStore(client, manual_clock)
    yield store, proxy
    store.close()
    client.close()
    proxy.close()


def test_resent_replace_after_a_lost_reply_counts_once(lossy_store: LossyStore) -> None:
    store, proxy = lossy_store
    warm_up = make_operation(phase=Phase.PREVIEW)  # loads the scripts, so the dropped call really runs
    store.create(warm_up, LOCK_TTL)
    store.replace(advanced(warm_up, phase=Phase.CANCELLED), expected_version=1)
    operation = make_operation()
    store.create(operation, LOCK_TTL)
    approved = advanced(operation, phase=Phase.APPROVED)

    proxy.drop_next_reply_to(b"EVALSHA")
    store.replace(approved, expected_version=1, actor=APPROVER)

    assert proxy.dropped == 1
    assert store.get(operation.id) == approved
    assert [entry.version for entry in store.audit(operation.id)] == [1, 2]


def test_resent_create_after_a_lost_reply_is_not_a_duplicate(lossy_store: LossyStore) -> None:
    store, proxy = lossy_store
    store.create(make_operation(phase=Phase.PREVIEW), LOCK_TTL)  # loads the script
    operation = make_operation()

    proxy.drop_next_reply_to(b"EVALSHA")
    store.create(operation, LOCK_TTL)

    assert proxy.dropped == 1
    assert store.get(operation.id) == operation
    assert len(store.audit(operation.id)) == 1


def test_resent_first_delivery_after_a_lost_reply_is_still_first(lossy_store: LossyStore) -> None:
    store, proxy = lossy_store
    store.first_delivery("event:warm-up", timedelta(hours=1))  # loads the script

    proxy.drop_next_reply_to(b"EVALSHA")
    assert store.first_delivery("event:Ev2", timedelta(hours=1)) is True

    assert proxy.dropped == 1
    assert store.first_delivery("event:Ev2", timedelta(hours=1)) is False


def test_a_refused_refresh_leaves_the_owners_ttl_alone(replica: Replica, raw: RawRedis) -> None:
    store = replica()
    owner = make_operation()
    store.create(owner, timedelta(seconds=30))
    other = make_operation(phase=Phase.PREVIEW)
    store.create(other, LOCK_TTL)
    # A stale in-flight copy of another operation (as after its own lock expired) tries to refresh.
    raw.set(f"rollbot:{{rollbot}}:op:{other.id}", other.model_copy(update={"phase": Phase.APPROVED}).model_dump_json())

    with pytest.raises(TargetBusy):
        store.refresh_lock(other, timedelta(hours=1))

    assert 0 < raw.pttl(f"rollbot:{{rollbot}}:lock:{owner.target.lock_key}") <= 30_000


def test_store_works_with_a_client_that_decodes_responses(redis_url: str, manual_clock: ManualClock) -> None:
    with redis.Redis.from_url(redis_url, decode_responses=True) as client:
        store = RedisOperationStore(client, manual_clock)
        operation = make_operation()
        store.create(operation, LOCK_TTL)
        store.link_message(operation.id, REQUEST)
        store.replace(advanced(operation, phase=Phase.APPROVED), expected_version=1, actor=APPROVER)

        assert store.find_by_message(REQUEST) == advanced(operation, phase=Phase.APPROVED)
        assert [entry.actor for entry in store.audit(operation.id)] == [REQUESTER, APPROVER]
        assert store.first_delivery("event:Ev3", timedelta(minutes=5)) is True
        assert store.is_reachable() is True
        store.close()


# --- fencing after lost replies, retention and the key layout ----------------------------------------------------


def test_resent_fenced_write_after_a_lost_reply_counts_once(lossy_store: LossyStore) -> None:
    store, proxy = lossy_store
    store.create(make_operation(phase=Phase.PREVIEW), LOCK_TTL)  # loads the scripts
    operation = make_operation(phase=Phase.APPROVED)
    store.create(operation, LOCK_TTL)
    claim = advanced(operation, phase=Phase.ROLLING_BACK, fence=1)

    proxy.drop_next_reply_to(b"EVALSHA")
    store.replace(claim, expected_version=1)  # a claim: raises the fence, carries no token
    proxy.drop_next_reply_to(b"EVALSHA")
    store.replace(advanced(claim, phase=Phase.SUCCEEDED), expected_version=2, fence=1)

    assert proxy.dropped == 2
    assert store.get(operation.id) == advanced(claim, phase=Phase.SUCCEEDED)
    assert [entry.version for entry in store.audit(operation.id)] == [1, 2, 3]


def test_finished_operation_keys_carry_the_retention_ttl(
    redis_url: str, manual_clock: ManualClock, raw: RawRedis
) -> None:
    with redis.Redis.from_url(redis_url) as client:
        store = RedisOperationStore(client, manual_clock, retention=timedelta(hours=12))
        finished, ongoing = make_operation(), make_operation(target=make_target("bootcamp"))
        for operation, ts in [(finished, "1.1"), (ongoing, "2.1")]:
            store.create(operation, LOCK_TTL)
            store.link_message(operation.id, MessageRef(channel=CHANNEL, ts=ts))
        store.replace(advanced(finished, phase=Phase.CANCELLED), expected_version=1)
        store.close()

    prefix = "rollbot:{rollbot}:"
    finished_keys = [f"op:{finished.id}", f"audit:{finished.id}", f"links:{finished.id}", f"op-by-msg:{CHANNEL}:1.1"]
    for key in finished_keys:
        assert 11 * 3600_000 < raw.pttl(prefix + key) <= 12 * 3600_000, key
    for key in [f"op:{ongoing.id}", f"audit:{ongoing.id}", f"op-by-msg:{CHANNEL}:2.1", "audit", "in-flight"]:
        assert raw.pttl(prefix + key) == -1, key  # exists, never expires


def test_global_audit_stream_is_capped(redis_url: str, manual_clock: ManualClock, raw: RawRedis) -> None:
    with redis.Redis.from_url(redis_url) as client:
        store = RedisOperationStore(client, manual_clock, audit_max=10)
        for _ in range(250):
            store.create(make_operation(phase=Phase.PREVIEW), LOCK_TTL)
        store.close()

    # MAXLEN ~ trims whole stream nodes (100 entries each), so "about 10" keeps at most one node's worth more.
    assert 10 <= raw.xlen("rollbot:{rollbot}:audit") <= 110


def test_lock_taken_back_by_a_write_gets_the_store_default_ttl(
    redis_url: str, manual_clock: ManualClock, raw: RawRedis
) -> None:
    with redis.Redis.from_url(redis_url) as client:
        store = RedisOperationStore(client, manual_clock, default_lock_ttl=timedelta(seconds=90))
        operation = make_operation()
        store.create(operation, LOCK_TTL)
        raw.delete(f"rollbot:{{rollbot}}:lock:{operation.target.lock_key}")  # as if it had expired

        store.replace(advanced(operation, phase=Phase.APPROVED), expected_version=1)
        store.close()

    assert 80_000 < raw.pttl(f"rollbot:{{rollbot}}:lock:{operation.target.lock_key}") <= 90_000


def test_every_key_lands_in_one_cluster_slot(replica: Replica, raw: RawRedis, manual_clock: ManualClock) -> None:
    store = replica()
    operation = make_operation()
    store.create(operation, LOCK_TTL)
    store.link_message(operation.id, REQUEST)
    store.first_delivery("event:Ev1", timedelta(hours=1))
    inbox = RedisInbox(store.client, manual_clock)
    inbox.park("event:Ev2", "{}", "replica-a")
    inbox.heartbeat("replica-a", timedelta(minutes=1))

    keys = raw.keys("*")

    assert len(keys) == 10
    assert {key_slot(key.encode()) for key in keys} == {key_slot(b"{rollbot}")}


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("rollbot:", "rollbot:{rollbot}:"),
        ("rollbot-staging:", "rollbot-staging:{rollbot-staging}:"),
        ("{rb}:", "{rb}:"),
    ],
    ids=["default", "derived", "already-tagged"],
)
def test_key_prefix_gets_one_hash_tag(prefix: str, expected: str) -> None:
    assert tagged_prefix(prefix) == expected
