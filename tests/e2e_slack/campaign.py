"""Running a scenario of the fault campaign (`bench.fault_scenarios`) once per test module, trimmed (`quick`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from bench.fault_scenarios import SCENARIOS
from sandbox.redis_server import RedisServerUnavailable

SEED = 7


def run_scenario(name: str) -> dict[str, Any]:
    try:
        return SCENARIOS[name](True, SEED)
    except RedisServerUnavailable as exc:
        pytest.skip(f"needs redis-server: {exc}")


def once_per_module(name: str) -> Callable[[], dict[str, Any]]:
    """A module-scoped fixture with the scenario's figures."""

    @pytest.fixture(scope="module")
    def figures() -> dict[str, Any]:
        return run_scenario(name)

    return figures
