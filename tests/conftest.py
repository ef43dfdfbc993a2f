"""Fixtures every test directory may use: a real redis-server, a manual clock and the in-memory store."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
import redis

from sandbox.redis_server import DATABASES, RedisServer, RedisServerUnavailable
from tests._policy import (  # pytest finds the run's honesty rules by their hook names in this conftest
    missing_tool,
    pytest_collection_modifyitems,  # noqa: F401
    pytest_configure,  # noqa: F401
    pytest_sessionfinish,  # noqa: F401
    pytest_terminal_summary,  # noqa: F401
    pytest_testnodedown,  # noqa: F401
)
from tests.fakes.clock import ManualClock
from tests.fakes.memory_store import InMemoryOperationStore

_databases = itertools.cycle(range(DATABASES))


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server per test session, on a unix socket in a temporary directory."""
    try:
        server = RedisServer().start()
    except RedisServerUnavailable as exc:
        unavailable = str(exc)
    else:
        yield server
        server.stop()
        return
    # Outside the except block, so the report shows the one clear line, not a chained traceback.
    missing_tool("redis-server", unavailable)


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """`unix://…?db=N`, a database of its own for this test, emptied before it starts."""
    url = redis_server.url(next(_databases))
    with redis.Redis.from_url(url) as client:
        client.flushdb()
    return url


@pytest.fixture
def manual_clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def memory_store(manual_clock: ManualClock) -> InMemoryOperationStore:
    return InMemoryOperationStore(manual_clock)
