"""ECS seed 002 through Slack: from the driver marking the rollback COMPLETED to the bot's final message.

Prints JSON. Each run plays `/rollback myservice 3` in the ECS demo world (moto + rollout driver, fake Slack,
private Redis, the real bot), approves it, and measures from the driver's COMPLETED stamp to (a) the moment the
request message's metadata says `succeeded` and (b) boto3's stock `services_stable` waiter, started at approval on
the same service. One run per driver tick, so rollouts end at different points of the waiter's 15-second cycle.

    .venv/bin/python bench/ecs_slack_latency.py [--ticks 1.0,2.7]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import subprocess
import sys
import threading
import time
from typing import Any

from sandbox.aws.demo import EcsDemo
from sandbox.slack.seed import ALICE, BOB


def one_run(tick: float) -> dict[str, Any]:
    moments: dict[str, float] = {}
    with contextlib.redirect_stdout(io.StringIO()), EcsDemo() as demo:
        demo.aws.driver.stop_background()
        demo.aws.driver.run_in_background(tick)

        def on_slack(change: Any) -> None:
            payload = ((change.message.metadata if change.message else None) or {}).get("event_payload") or {}
            if "bot_final" not in moments and payload.get("phase") == "succeeded":
                moments["bot_final"] = time.time()

        demo.slack.subscribe(on_slack)
        demo.type_command(ALICE, "myservice 3")
        request = demo.request_message("myservice")
        demo.react(BOB, request)
        approved = time.time()

        def run_waiter() -> None:
            ecs = demo.aws.client("ecs")
            # Start once ECS accepted the rollback (PRIMARY on :3); before that the service is "stable" on :4.
            while not ecs.describe_services(cluster="default", services=["myservice"])["services"][0][
                "taskDefinition"
            ].endswith(":3"):
                time.sleep(0.05)
            waiter = ecs.get_waiter("services_stable")  # stock: 15 s between polls
            waiter.wait(cluster="default", services=["myservice"])
            moments["waiter"] = time.time()

        waiter_thread = threading.Thread(target=run_waiter, daemon=True)
        waiter_thread.start()
        demo.final_phase(request)
        waiter_thread.join(timeout=120)
        completions = [c for c in demo.aws.driver.completions if c.at >= approved]
        completed = completions[-1].at
    return {
        "driver_tick_s": tick,
        "rollout_s": round(completed - approved, 3),
        "bot_final_message_after_completed_s": round(moments["bot_final"] - completed, 3),
        "services_stable_after_completed_s": round(moments["waiter"] - completed, 3) if "waiter" in moments else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", default="1.0,2.7")
    parser.add_argument("--one", type=float, help="play one run with this tick and print it (used per process)")
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(one_run(args.one)))
        return
    # moto keeps its state per process, so every run gets a fresh process.
    ticks = [float(t) for t in args.ticks.split(",")]
    runs = [
        json.loads(
            subprocess.run([sys.executable, __file__, "--one", str(tick)], capture_output=True, text=True, check=True)
            .stdout.strip()
            .splitlines()[-1]
        )
        for tick in ticks
    ]
    bot = [r["bot_final_message_after_completed_s"] for r in runs]
    waiter = [
        r["services_stable_after_completed_s"] for r in runs if r["services_stable_after_completed_s"] is not None
    ]
    print(
        json.dumps(
            {
                "what": "seconds from the driver marking COMPLETED to the bot's final Slack message / the waiter",
                "bot_median_s": statistics.median(bot),
                "services_stable_median_s": statistics.median(waiter) if waiter else None,
                "runs": runs,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
