"""Seed 004 rollback: how soon after the rollout completes does the thread say so, next to kubectl rollout status.

Prints JSON. One run: kubesim + fake Slack + a private redis-server + the real bot (as in the demo). After the
approval, `kubectl rollout status` is started against the same rollout; kubesim's store tells the exact moment
the Deployment became complete (by kubectl's own rule), the fake Slack the moment of the final thread update.
Usage: python bench/k8s_rollback_latency.py [--runs N]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import subprocess
import threading
import time
from typing import Any

from bot.backends import kubernetes_interpret as rules
from bot.core.catalog import WorkloadKind
from sandbox.demo.scenarios import break_bootcamp
from sandbox.demo.world import DemoWorld
from sandbox.slack.seed import ALICE, BOB

DEPLOYMENTS = ("apps", "v1", "deployments")


def one_run() -> dict[str, float]:
    quiet = io.StringIO()
    with contextlib.redirect_stdout(quiet), DemoWorld(pod_ready_seconds=0.5) as world:
        break_bootcamp(world)

        moments: dict[str, float] = {}
        approved = threading.Event()

        def on_change(event: str, resource: tuple[str, str, str], obj: dict[str, Any]) -> None:
            if resource != DEPLOYMENTS or not approved.is_set() or "complete" in moments:
                return
            if obj["metadata"]["name"] == "kubernetes-bootcamp":
                image = obj["spec"]["template"]["spec"]["containers"][0]["image"]
                if image.endswith(":v2") and rules.rollout_verdict(obj, WorkloadKind.DEPLOYMENT).is_done:
                    moments["complete"] = time.monotonic()

        def on_slack(change: Any) -> None:
            payload = ((change.message.metadata if change.message else None) or {}).get("event_payload") or {}
            if "bot_final" not in moments and payload.get("phase") == "succeeded":
                moments["bot_final"] = time.monotonic()

        world.kubesim.store.add_listener(on_change)
        world.slack.subscribe(on_slack)
        world.type_command(ALICE, "bootcamp")
        request = world.request_message("bootcamp")
        approved.set()
        world.react(BOB, request)
        moments["approved"] = time.monotonic()
        # kubectl rollout status on the same rollout, started as soon as the rollback is under way.
        kubectl = subprocess.Popen(
            [world.binary("kubectl"), "rollout", "status", "deployment/kubernetes-bootcamp", "--timeout=120s"],
            env=world.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        def wait_for_kubectl() -> None:
            kubectl.wait(timeout=120)
            moments["kubectl_exit"] = time.monotonic()

        waiter = threading.Thread(target=wait_for_kubectl)
        waiter.start()
        world.final_phase(request)
        waiter.join(timeout=120)
    return {
        "approval_to_final_s": moments["bot_final"] - moments["approved"],
        "complete_to_bot_final_ms": (moments["bot_final"] - moments["complete"]) * 1000,
        "complete_to_kubectl_exit_ms": (moments["kubectl_exit"] - moments["complete"]) * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    runs = [one_run() for _ in range(parser.parse_args().runs)]
    summary = {
        key: {
            "median": round(statistics.median(run[key] for run in runs), 3),
            "max": round(max(run[key] for run in runs), 3),
        }
        for key in runs[0]
    }
    print(json.dumps({"scenario": "seed 004 bootcamp v10 -> v2", "runs": len(runs), "summary": summary}, indent=2))


if __name__ == "__main__":
    main()
