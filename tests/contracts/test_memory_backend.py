"""The in-memory backend meets the backend contract, so flow tests built on it mean something."""

from __future__ import annotations

import pytest

from bot.core.rollouts import RevisionNumber
from tests.contracts.backend_contract import BackendCase, BackendContract
from tests.fakes.memory_backend import MemoryBackend, MemoryWorld, RedisWorld
from tests.fakes.operations import make_target


class TestMemoryBackend(BackendContract):
    @pytest.fixture
    def backend_case(self) -> BackendCase:
        backend = MemoryBackend(MemoryWorld())
        target = make_target("workshop")
        backend.arrange(target, revisions=2)
        return BackendCase(
            backend=backend,
            target=target,
            good=RevisionNumber(1),
            current=RevisionNumber(2),
            deploy=lambda: backend.deploy(target),
        )


class TestRedisBackedMemoryBackend(BackendContract):
    @pytest.fixture
    def backend_case(self, redis_url: str) -> BackendCase:
        import redis

        client = redis.Redis.from_url(redis_url)
        backend = MemoryBackend(RedisWorld(client))
        target = make_target("workshop")
        backend.arrange(target, revisions=3, current=3)
        return BackendCase(
            backend=backend,
            target=target,
            good=RevisionNumber(2),
            current=RevisionNumber(3),
            deploy=lambda: backend.deploy(target),
        )
