"""The load bench, trimmed: ten services broken at once, ten `/rollback`s within a second, three real replicas,
the fake Slack enforcing Slack's limits ten times faster. The full-size bench is `make bench-load`."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bench.load import run
from sandbox.redis_server import RedisServerUnavailable

pytestmark = pytest.mark.slow

TARGETS = 10


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    try:
        result = run(TARGETS, scale=10.0, spread=1.0, scenarios=["separate"])
    except RedisServerUnavailable as exc:
        pytest.skip(f"needs redis-server: {exc}")
    # What `bench/load.py` prints: the report must survive JSON as it is.
    return dict(json.loads(json.dumps(result)))


def test_every_request_is_posted_approved_and_finished_with_nothing_bounced_or_lost(report) -> None:
    figures = report["separate"]
    assert "error" not in figures, figures.get("error")
    assert figures["requests_not_acked"] == 0
    assert figures["requests_bounced"] == 0
    assert figures["writes_lost"] == 0, figures["writes_lost_detail"]
    assert len(figures["request_post_times_s"]) == TARGETS
    assert len(figures["final_line_times_s"]) == TARGETS
    assert figures["replica_tracebacks"] == 0


def test_the_report_has_its_figures_against_slacks_limits(report) -> None:
    figures = report["separate"]
    # Nothing can beat the channel's limit: the floors are lower bounds of what was measured.
    assert figures["requests_posted_s"] >= figures["requests_floor_s"] > 0
    assert figures["final_lines_posted_s"] >= figures["final_floor_s"] >= figures["final_floor_two_posts_s"] > 0
    latency = figures["approval_to_first_write_ms"]
    assert len(latency["samples"]) == TARGETS
    assert 0 < latency["p50"] <= latency["p99"] <= latency["max"]
    assert figures["slack_calls"] == sum(figures["slack_calls_by_method"].values())
    assert figures["slack_calls_by_method"]["chat.postMessage"] >= 2 * TARGETS
    assert figures["redis_commands_per_operation"] > 0
    assert figures["bot_cpu_seconds_per_operation"] > 0
    assert sorted(figures["peak_rss_mib_by_replica"]) == ["r1", "r2", "r3"]
    assert all(rss > 0 for rss in figures["peak_rss_mib_by_replica"].values())
