"""The `rollbot` command: `rollbot serve` runs the bot, `rollbot check-config` validates a catalog file.

Exit codes: 0 fine, 2 the configuration is wrong (operators script on this), 1 anything unexpected.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from bot.settings import CatalogFileError, Settings, load_catalog_file

EXIT_OK = 0
EXIT_CONFIG = 2
EXIT_FAILURE = 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rollbot", description="Slack ChatOps rollbacks with approvals.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="run the bot (HTTP mode, or Socket Mode when SLACK_APP_TOKEN is set)")
    check = commands.add_parser("check-config", help="validate the YAML catalog and print every problem")
    check.add_argument("path", nargs="?", type=Path, help="catalog file (default: $ROLLBOT_CONFIG)")
    args = parser.parse_args(argv)
    if args.command == "check-config":
        return check_config(args.path)
    return serve()


def check_config(path: Path | None) -> int:
    if path is None:
        path = Settings().config_path
    if path is None:
        print("rollbot check-config: no PATH given and ROLLBOT_CONFIG is not set", file=sys.stderr)
        return EXIT_CONFIG
    try:
        catalog = load_catalog_file(path)
    except CatalogFileError as exc:
        print(f"{path}: {len(exc.problems)} problem(s)", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_CONFIG
    backends = sorted({spec.backend.value for spec in catalog.targets.values()})
    print(
        f"{path}: OK, {len(catalog.targets)} target(s) ({', '.join(catalog.names) or 'none'}); backends: "
        f"{', '.join(backends) or 'none'}"
    )
    return EXIT_OK


def serve() -> int:
    from bot.app import build_app  # the wiring pulls in every vendor library; check-config does not need it
    from bot.logging import configure_logging

    settings = Settings()
    problems = settings.serve_problems()
    if problems:
        for problem in problems:
            print(f"rollbot serve: {problem}", file=sys.stderr)
        return EXIT_CONFIG
    configure_logging(
        settings.log_level,
        secrets=[
            secret.get_secret_value()
            for secret in (settings.slack_bot_token, settings.slack_signing_secret, settings.slack_app_token)
            if secret is not None
        ],
    )
    try:
        rollbot = build_app(settings)
    except CatalogFileError as exc:
        for problem in exc.problems:
            print(f"rollbot serve: {exc.path}: {problem}", file=sys.stderr)
        return EXIT_CONFIG
    except ValueError as exc:  # settings the adapters refuse
        print(f"rollbot serve: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except Exception as exc:  # Slack or Redis unreachable at start-up (Bolt calls auth.test while being built)
        logging.getLogger("rollbot.cli").exception("rollbot could not start")
        print(f"rollbot serve: cannot start: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    stopping = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    rollbot.start()
    try:
        stopping.wait()
    finally:
        rollbot.stop()
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
