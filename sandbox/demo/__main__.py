"""`python -m sandbox.demo [bootcamp|workshop|noticed|myservice|all]`: incidents played end to end, locally.

Everything runs on this machine: kubesim (a simulated Kubernetes API server the real kubectl and helm accept),
the fake Slack with its signed-request driver, a private redis-server, and the real rollbot app in HTTP mode.
The Slack thread is printed as it evolves. No account, cluster or token is needed.
"""

from __future__ import annotations

import argparse
import sys
import time

from sandbox.aws.demo import EcsDemo, play
from sandbox.demo.room import DemoFailed
from sandbox.demo.scenarios import SCENARIOS
from sandbox.demo.world import DemoWorld


def myservice() -> None:
    """Seed 002 on ECS (moto + the rollout driver), in its own world."""
    with EcsDemo() as demo:
        play(demo)


AWS_SCENARIOS = {"myservice": myservice}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.demo", description=__doc__.splitlines()[0])
    parser.add_argument(
        "scenario",
        nargs="?",
        default="bootcamp",
        choices=[*SCENARIOS, *AWS_SCENARIOS, "all"],
        help="which seed incident to play (default: bootcamp, the Deployment of seed 004; all = every seed)",
    )
    parser.add_argument("--pod-ready-seconds", type=float, default=0.5, help="fake kubelet start-up delay")
    args = parser.parse_args(argv)
    names = [*SCENARIOS, *AWS_SCENARIOS] if args.scenario == "all" else [args.scenario]
    started = time.monotonic()
    try:
        kubernetes = [name for name in names if name in SCENARIOS]
        if kubernetes:
            with DemoWorld(pod_ready_seconds=args.pod_ready_seconds) as world:
                for name in kubernetes:
                    SCENARIOS[name](world)
        for name in names:
            if name in AWS_SCENARIOS:
                AWS_SCENARIOS[name]()
    except DemoFailed as exc:
        print(f"\ndemo failed: {exc}", file=sys.stderr)
        return 1
    print(f"\ndemo finished in {time.monotonic() - started:.1f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
