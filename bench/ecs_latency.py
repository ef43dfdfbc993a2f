"""How late does the ECS backend report a finished rollback, next to boto3's `services_stable` waiter?

Same run, same rollout: moto + the rollout driver tick in the background (real time); the backend rolls
`myservice` back from 4 to 3 and watches with its adaptive poll (1 s at first, at most 5 s); meanwhile a thread
runs boto3's stock `services_stable` waiter (15 s between polls) on the same service. The driver stamps the
moment it marks the deployment COMPLETED; both observers are measured from that stamp.

A second scenario repeats it with the target failing and ECS's circuit breaker rolling back by itself: the
waiter still answers "stable", the backend answers FAILED with the reason.

    .venv/bin/python bench/ecs_latency.py [--ticks 1.0,1.9,2.7,3.6] [--desired 4]

One run per tick length, so the rollouts end at different points of the waiter's 15-second cycle.

Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import structlog

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.backends.aws_ecs import EcsBackend
from bot.core.catalog import EcsTarget, SlackUserId, Target, TargetName
from bot.core.catalog_approvals import ApprovalPolicy
from bot.core.operations import OperationId
from bot.core.rollouts import RolloutPhase
from sandbox.aws import FAIL, AwsWorld
from sandbox.aws.scenarios import myservice_revisions, seed_service
from sandbox.aws.testing import sandbox_env

TARGET = Target(
    name=TargetName("myservice"),
    spec=EcsTarget(cluster="default", service="myservice", region="us-east-1"),
    policy=ApprovalPolicy(approvers=(SlackUserId("U0AAA"),)),
)


def one_run(world: AwsWorld, tick: float, desired: int, failing: bool, index: int) -> dict[str, Any]:
    world.reset()
    ecs = world.client("ecs")
    seed_service(ecs, cluster="default", service="myservice", revisions=myservice_revisions(), desired=desired)
    if failing:
        world.driver.plan_task_definition("myservice:3", FAIL)
    backend = EcsBackend()
    plan = backend.plan_rollback(TARGET, None, {})
    waiter_result: dict[str, Any] = {}

    def run_waiter() -> None:
        waiter = world.client("ecs").get_waiter("services_stable")  # stock config: 15 s delay, 40 attempts
        try:
            waiter.wait(cluster="default", services=["myservice"])
            waiter_result["verdict"] = "stable"
        except Exception as exc:  # the benchmark reports whatever the waiter says
            waiter_result["verdict"] = f"error: {exc}"
        waiter_result["at"] = time.time()

    started = time.time()
    backend.roll_back(TARGET, plan, OperationId(f"op-bench-{index}"))
    world.driver.run_in_background(tick)
    waiter_thread = threading.Thread(target=run_waiter, daemon=True)
    waiter_thread.start()
    statuses = list(backend.watch_rollout(TARGET, plan, timedelta(minutes=2)))
    backend_at = time.time()
    waiter_thread.join(timeout=120)
    world.driver.stop_background()

    completions = [c for c in world.driver.completions if c.at >= started]
    completed_at = completions[-1].at if completions else None
    final = statuses[-1]

    def after(moment: float | None) -> float | None:
        return round(moment - completed_at, 3) if moment is not None and completed_at is not None else None

    return {
        "scenario": "circuit-breaker-rollback" if failing else "rollback-completes",
        "driver_tick_s": tick,
        "completed_task_definition": completions[-1].task_definition.rsplit("/", 1)[-1] if completions else None,
        "rollout_seconds": round(completed_at - started, 3) if completed_at else None,
        "backend_verdict": final.phase.value,
        "backend_reason": final.reason,
        "backend_after_completed_s": after(backend_at),
        "waiter_verdict": waiter_result.get("verdict"),
        "waiter_after_completed_s": after(waiter_result.get("at")),
        "backend_progress_updates": len(statuses),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", default="1.0,1.9,2.7,3.6", help="seconds between driver steps, one run each")
    parser.add_argument("--desired", type=int, default=4)
    args = parser.parse_args()
    # Log lines go to stderr so that stdout is one JSON document.
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))

    with AwsWorld() as world:
        os.environ.update(sandbox_env(world.url))
        ticks = [float(t) for t in args.ticks.split(",")]
        runs = [one_run(world, tick, args.desired, failing=False, index=i) for i, tick in enumerate(ticks)]
        trap = one_run(world, ticks[0], args.desired, failing=True, index=len(ticks))

    backend = [r["backend_after_completed_s"] for r in runs if r["backend_after_completed_s"] is not None]
    waiter = [r["waiter_after_completed_s"] for r in runs if r["waiter_after_completed_s"] is not None]
    print(
        json.dumps(
            {
                "what": "seconds from the driver marking the rollback COMPLETED to each observer's final answer",
                "driver_ticks_s": ticks,
                "desired_count": args.desired,
                "backend_median_s": statistics.median(backend) if backend else None,
                "services_stable_waiter_median_s": statistics.median(waiter) if waiter else None,
                "runs": runs,
                "circuit_breaker_trap": trap,
                "backend_succeeded_every_run": all(r["backend_verdict"] == RolloutPhase.SUCCEEDED.value for r in runs),
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
