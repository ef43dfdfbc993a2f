"""`python -m sandbox.aws --port 5058 [--tick 0.5] [--scenario myservice]`: moto + driver for the demo."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from sandbox.aws import scenarios
from sandbox.aws.driver import RolloutDriver
from sandbox.aws.server import DriverApp, ServerThread, sandbox_client


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.aws", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5058)
    parser.add_argument("--tick", type=float, default=0.5, help="seconds between driver ticks (0 = manual ticks)")
    parser.add_argument("--scenario", choices=["myservice"], default=None)
    parser.add_argument("--region", default="us-east-1")
    args = parser.parse_args(argv)

    driver = RolloutDriver().install()
    server = ServerThread(DriverApp(driver), args.host, args.port).start()
    if args.scenario == "myservice":
        scenarios.seed_myservice(
            sandbox_client("ecs", server.url, args.region),
            sandbox_client("application-autoscaling", server.url, args.region),
        )
    if args.tick > 0:
        driver.run_in_background(args.tick)
    print(f"aws sandbox on {server.url} (control API {server.url}/_driver/)", flush=True)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    driver.stop_background()
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
