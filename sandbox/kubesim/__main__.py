"""`python -m sandbox.kubesim --port PORT --kubeconfig FILE [--nodes N] [--pod-ready-seconds S] [--registry FILE]`."""

from __future__ import annotations

import argparse
import gc
import logging
import signal
import threading
from types import FrameType

from sandbox.kubesim.cluster import KubeSim


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.kubesim", description="Simulated Kubernetes API server")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0 = any free port)")
    parser.add_argument("--kubeconfig", required=True, help="where to write a kubeconfig (context 'sandbox')")
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--pod-ready-seconds", type=float, default=1.0)
    parser.add_argument("--registry", help="YAML/JSON file describing which images exist (see registry.py)")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")

    registry = None
    if args.registry:
        from sandbox.kubesim.registry import RegistryConfig

        registry = RegistryConfig.load(args.registry)

    sim = KubeSim(port=args.port, nodes=args.nodes, pod_ready_seconds=args.pod_ready_seconds, registry=registry)
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    sim.start()
    # A simulated cluster holds hundreds of thousands of long-lived dicts: with the default thresholds the
    # cyclic collector keeps rescanning them and its pauses dominate watch latency. Freeze what exists at
    # start (modules, bootstrap objects) and collect much less often (10k-Deployment bench: p99 68 -> 26 ms).
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)
    sim.write_kubeconfig(args.kubeconfig)
    print(f"kubesim serving {sim.url} (kubeconfig {args.kubeconfig})", flush=True)
    try:
        # A bounded wait keeps the main thread responsive to signals on every platform.
        while not stop.wait(timeout=0.5):
            pass
    finally:
        sim.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
