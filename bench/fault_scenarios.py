"""`python -m bench.fault_scenarios [--quick] [--seed N] [names…]`: the fault campaign's scenarios, as JSON.

Every scenario is a `scenario_<name>(quick, seed) -> dict` of figures (operations, completed, doubled, lost,
stale writes, busy refusals, wall time). `SCENARIOS` maps names to them, for a runner to register; run alone,
this module runs the ones named (default: all) and prints one JSON document. `--quick` is the trimmed,
deterministic size the test suite runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import time
from collections.abc import Callable
from typing import Any

from bench.faultlib.api_faults import scenario_kube_faults, scenario_slack_storm
from bench.faultlib.process_faults import scenario_sigkill, scenario_sigstop, scenario_triple_delivery
from bench.faultlib.redis_faults import scenario_redis_restart, scenario_sentinel_failover
from bot.logging import configure_logging

Scenario = Callable[[bool, int], dict[str, Any]]

SCENARIOS: dict[str, Scenario] = {
    "triple_delivery": scenario_triple_delivery,
    "sigkill": scenario_sigkill,
    "sigstop": scenario_sigstop,
    "redis_restart": scenario_redis_restart,
    "sentinel_failover": scenario_sentinel_failover,
    "kube_faults": scenario_kube_faults,
    "slack_storm": scenario_slack_storm,
}

__all__ = [
    "SCENARIOS",
    "scenario_kube_faults",
    "scenario_redis_restart",
    "scenario_sentinel_failover",
    "scenario_sigkill",
    "scenario_sigstop",
    "scenario_slack_storm",
    "scenario_triple_delivery",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", metavar="scenario", help=f"any of: {', '.join(SCENARIOS)}")
    parser.add_argument("--quick", action="store_true", help="the trimmed size the test suite runs")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    # An in-process bot (kube_faults) logs through structlog, to stdout by default: keep stdout the JSON report.
    configure_logging("WARNING", stream=sys.stderr)
    started = time.monotonic()
    report: dict[str, Any] = {
        "command": " ".join(["python", "-m", "bench.fault_scenarios", *(argv if argv is not None else sys.argv[1:])]),
        "quick": args.quick,
        "seed": args.seed,
        "python": platform.python_version(),
        "scenarios": {},
    }
    for name in args.names or list(SCENARIOS):
        try:
            report["scenarios"][name] = SCENARIOS[name](args.quick, args.seed)
        except Exception as exc:  # one scenario failing must not hide the figures of the others
            report["scenarios"][name] = {"error": f"{type(exc).__name__}: {exc}"}
        print(f"{name}: done", file=sys.stderr, flush=True)
    report["wall_seconds"] = round(time.monotonic() - started, 2)
    print(json.dumps(report, indent=2))
    return 1 if any("error" in figures for figures in report["scenarios"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
