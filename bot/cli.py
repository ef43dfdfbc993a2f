"""The `rollbot` command: `rollbot serve` runs the bot, `rollbot check-config` validates a catalog file,
`rollbot report-deploy` tells a running bot that a pipeline's deploy failed or succeeded.

Exit codes: 0 fine, 2 the configuration is wrong (operators script on this), 1 anything unexpected.

Everything the command prints goes through a `Console`, which redacts it the way the logs are redacted: an error
may quote a URL with its password, a refused argument or an exception's text. Nothing ends in a traceback on
stderr: a failure is one line saying what to fix (the traceback is printed only at ROLLBOT_LOG_LEVEL=DEBUG).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import traceback
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

from pydantic import ValidationError

from bot.core.catalog import Catalog, describe_validation_errors, format_duration
from bot.core.catalog_detect import EcsWatch
from bot.core.errors import StoreUnavailable
from bot.core.watch_plan import lease_name, watch_plan
from bot.logging import Redactor, configure_logging, secrets_from_environment, url_passwords
from bot.settings import CatalogFileError, Settings, load_catalog_file

EXIT_OK = 0
EXIT_CONFIG = 2
EXIT_FAILURE = 1

log = logging.getLogger("rollbot.cli")


class Console:
    """Where the command speaks to the operator: stdout for results, stderr for errors, both redacted."""

    def __init__(self, redactor: Redactor) -> None:
        self.redactor = redactor

    def say(self, text: str) -> None:
        print(self.redactor.text(text))

    def error(self, text: str) -> None:
        print(self.redactor.text(text), file=sys.stderr)


class _ArgumentParser(argparse.ArgumentParser):
    """argparse, whose error line (it quotes the arguments it refused) is redacted like every other."""

    def __init__(self, *args: Any, console: Console, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._console = console

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self._console.error(f"{self.prog}: error: {message}")
        sys.exit(EXIT_CONFIG)


def main(argv: Sequence[str] | None = None) -> int:
    console = Console(Redactor(secrets_from_environment()))
    parser = _ArgumentParser(prog="rollbot", description="Slack ChatOps rollbacks with approvals.", console=console)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "serve", help="run the bot (HTTP mode, or Socket Mode when SLACK_APP_TOKEN is set)", console=console
    )
    check = commands.add_parser(
        "check-config", help="validate the YAML catalog and print every problem", console=console
    )
    check.add_argument("path", nargs="?", type=Path, help="catalog file (default: $ROLLBOT_CONFIG)")
    report = commands.add_parser(
        "report-deploy",
        help="tell the bot a deploy failed or succeeded (signed with $ROLLBOT_WEBHOOK_SECRET, sent to $ROLLBOT_URL)",
        console=console,
    )
    report.add_argument("--target", required=True, help="catalog target name")
    report.add_argument("--status", required=True, choices=["failed", "succeeded"])
    report.add_argument("--revision", help="the revision the pipeline deployed")
    report.add_argument("--url", help="link to the pipeline run (shown on the incident card)")
    report.add_argument("--summary", help="one line on what went wrong")
    args = parser.parse_args(argv)
    try:
        if args.command == "check-config":
            return check_config(args.path, console)
        if args.command == "report-deploy":
            from bot.deploy_report import report_deploy  # no Slack, Redis or cloud client needed

            return report_deploy(args, console)
        return serve(console)
    except Exception as exc:  # a bug: say so in one redacted line rather than a traceback with secrets in it
        console.error(f"rollbot {args.command}: unexpected error: {type(exc).__name__}: {exc}")
        if os.environ.get("ROLLBOT_LOG_LEVEL", "").upper() == "DEBUG":
            console.error(traceback.format_exc())
        else:
            console.error("(set ROLLBOT_LOG_LEVEL=DEBUG to see the traceback)")
        return EXIT_FAILURE


def check_config(path: Path | None, console: Console) -> int:
    if path is None:
        settings = _read_settings("check-config", console)
        if settings is None:
            return EXIT_CONFIG
        path = settings.config_path
    if path is None:
        console.error("rollbot check-config: no PATH given and ROLLBOT_CONFIG is not set")
        return EXIT_CONFIG
    try:
        catalog = load_catalog_file(path)
    except CatalogFileError as exc:
        console.error(f"{path}: {len(exc.problems)} problem(s)")
        for problem in exc.problems:
            console.error(f"  {problem}")
        return EXIT_CONFIG
    backends = sorted({spec.backend.value for spec in catalog.targets.values()})
    console.say(
        f"{path}: OK, {len(catalog.targets)} target(s) ({', '.join(catalog.names) or 'none'}); backends: "
        f"{', '.join(backends) or 'none'}; {gitops_summary(catalog)}; {detection_summary(catalog)}; "
        f"{auto_rollback_summary(catalog)}"
    )
    return EXIT_OK


def gitops_summary(catalog: Catalog) -> str:
    """What a rollback does when Argo CD or Flux would revert it: the default, then the targets that differ."""
    parts = [f"gitops: {catalog.defaults.gitops}"]
    for mode in ("suspend", "warn", "refuse"):
        names = [name for name in catalog.names if catalog.gitops_mode(name) == mode != catalog.defaults.gitops]
        if names:
            parts.append(f"{mode} for {', '.join(names)}")
    if catalog.may_pause_reconcilers:
        parts.append(f"reminders every {format_duration(catalog.defaults.gitops_reminder)}")
    return ", ".join(parts)


def detection_summary(catalog: Catalog) -> str:
    """Where incident cards go and what is watched, so an operator sees at once whether detection is on."""
    if not catalog.is_detection_on:
        return "detection: off (no detect.channel anywhere)"
    channels = {catalog.detect_settings(name).channel for name in catalog.names}
    channels |= {catalog.scope_detect_settings(scope).channel for scope in catalog.watch}
    watched = []
    for scope in watch_plan(catalog):
        where = scope.clusters if isinstance(scope, EcsWatch) else scope.namespaces
        label = "every namespace" if where == ("*",) else ", ".join(where)
        watched.append(f"{lease_name(scope)} ({label})")
    return f"detection: cards to {', '.join(sorted(c for c in channels if c))}; watching {'; '.join(watched)}"


def auto_rollback_summary(catalog: Catalog) -> str:
    """Which targets roll back by themselves, and under which limits (off unless a target opts in)."""
    opted = [name for name in catalog.names if catalog.auto_rollback_for(name) is not None]
    if not opted:
        return "automatic rollback: off"
    limits = catalog.defaults.auto_rollback_limits
    return (
        f"automatic rollback: {', '.join(opted)} (limits {limits.per_target} per target, "
        f"{limits.per_context} per context)"
    )


def serve(console: Console) -> int:
    from bot.app import build_app  # the wiring pulls in every vendor library; check-config does not need it

    settings = _read_settings("serve", console)
    if settings is None:
        return EXIT_CONFIG
    problems = settings.serve_problems()
    if problems:
        for problem in problems:
            console.error(f"rollbot serve: {problem}")
        return EXIT_CONFIG
    try:
        console = Console(start_logging(settings))
    except ValueError as exc:  # an unknown ROLLBOT_LOG_LEVEL
        console.error(f"rollbot serve: ROLLBOT_LOG_LEVEL: {exc}")
        return EXIT_CONFIG
    try:
        rollbot = build_app(settings)
    except CatalogFileError as exc:
        for problem in exc.problems:
            console.error(f"rollbot serve: {exc.path}: {problem}")
        return EXIT_CONFIG
    except ValueError as exc:  # settings the adapters refuse
        console.error(f"rollbot serve: {exc}")
        return EXIT_CONFIG
    except Exception as exc:  # Slack unreachable at start-up (Bolt calls auth.test while being built)
        log.exception("rollbot could not start")
        console.error(f"rollbot serve: cannot start: {type(exc).__name__}: {exc}")
        return EXIT_FAILURE
    # Before start(): a SIGTERM that arrives while it starts serving must still shut down cleanly.
    stopping = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        rollbot.start()  # resumes what is in flight: the first Redis round trip
    except StoreUnavailable as exc:
        rollbot.stop()
        reason = exc.__cause__ if exc.__cause__ is not None else exc
        log.error("rollbot could not start: Redis does not answer", extra={"reason": str(reason)})
        console.error(f"rollbot serve: cannot start: Redis at REDIS_URL={settings.redis_url} does not answer: {reason}")
        return EXIT_FAILURE
    except Exception as exc:  # e.g. the HTTP port is taken
        rollbot.stop()
        log.exception("rollbot could not start")
        console.error(f"rollbot serve: cannot start: {type(exc).__name__}: {exc}")
        return EXIT_FAILURE
    try:
        stopping.wait()
    finally:
        rollbot.stop()
    return EXIT_OK


def start_logging(settings: Settings) -> Redactor:
    """Logging as `rollbot serve` runs it: ROLLBOT_LOG_LEVEL, ROLLBOT_LOG_VENDOR, every configured secret hidden."""
    slack_secrets = (
        settings.slack_bot_token,
        settings.slack_signing_secret,
        settings.slack_app_token,
        settings.webhook_token,
        settings.webhook_secret,
    )
    return configure_logging(
        settings.log_level,
        vendor_debug=settings.log_vendor == "debug",
        secrets=[
            *(secret.get_secret_value() for secret in slack_secrets if secret is not None),
            *url_passwords(settings.redis_url),
            *secrets_from_environment(),
        ],
    )


def _read_settings(command: str, console: Console) -> Settings | None:
    try:
        return Settings()
    except ValidationError as exc:
        for problem in describe_validation_errors(exc):
            console.error(f"rollbot {command}: {problem}")
        return None


if __name__ == "__main__":
    sys.exit(main())
