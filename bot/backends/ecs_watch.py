"""The ECS failure watcher: every service of the scope's clusters in one region, polled, as `Sighting`s.

Implements `bot.ports.FailureWatcher` for `EcsWatch` scopes. ECS has no watch API, so each poll lists the
services of every cluster (`ListServices`, paginated) and describes them in batches of 10 (`DescribeServices`'
own limit), each reduced to an `EcsServiceSnapshot` (deployments, circuit breaker, the newest events). Polls
come every `interval`, and every `fast_interval` while any deployment is IN_PROGRESS, when a failure is
imminent and seconds count.

The first poll, and the first after a poll that needed retries, reports every service (`resync`); after that
a service is reported when its snapshot changed, and on every poll while it is mid-deployment, so the flow's
holds (tasks failing for `failing_for`) mature on time. A service that is no longer listed is reported
`deleted`. boto3's errors are translated into `bot.core.errors` here (`ecs_clients.translating_errors`); a poll
that keeps failing is retried with exponential back-off (tenacity), then the error is raised.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import boto3
import structlog
from botocore.config import Config
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from bot.backends.ecs_clients import translating_errors
from bot.core.catalog_detect import EcsWatch, WatchScope
from bot.core.detection import EcsServiceSnapshot, Sighting
from bot.core.errors import BackendUnavailable, UnknownTarget

if TYPE_CHECKING:
    from mypy_boto3_ecs import ECSClient

log = structlog.get_logger(__name__)

POLL_INTERVAL = timedelta(seconds=15)
# While a deployment runs, a failure can come any second; ECS's own console refreshes about this often.
FAST_POLL_INTERVAL = timedelta(seconds=3)
# DescribeServices accepts at most 10 services per call.
DESCRIBE_BATCH = 10
RETRY_ATTEMPTS = 6
IN_PROGRESS = "IN_PROGRESS"

ServiceKey = tuple[str, str]  # cluster, service
SessionFactory = Callable[[str | None], boto3.session.Session]


def _default_session(region: str | None) -> boto3.session.Session:
    return boto3.session.Session(region_name=region)


class EcsFailureWatcher:
    """`bot.ports.FailureWatcher` for `backend: ecs` watch scopes; one boto3 session per region."""

    def __init__(
        self,
        session_factory: SessionFactory = _default_session,
        *,
        interval: timedelta = POLL_INTERVAL,
        fast_interval: timedelta = FAST_POLL_INTERVAL,
        retry_initial: float = 0.5,
        config: Config | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._session_factory = session_factory
        self._interval = interval
        self._fast_interval = min(fast_interval, interval)
        self._retry_initial = retry_initial
        standard = Config(retries={"mode": "standard"})
        self._config = standard.merge(config) if config else standard
        self._now = now

    def watch(self, scope: WatchScope, report: Callable[[Sighting], None], stop: threading.Event) -> None:
        if not isinstance(scope, EcsWatch):
            raise UnknownTarget(f"the ECS watcher cannot watch a `{scope.backend}` scope")
        with translating_errors(f"connecting to ECS in {scope.region or 'the default region'}"):
            session = self._session_factory(scope.region)
            ecs: ECSClient = session.client("ecs", config=self._config)
        location = scope.region or session.region_name or "default"
        known: dict[ServiceKey, EcsServiceSnapshot] = {}
        is_resync = True
        while not stop.is_set():
            services, needed_retries = self._poll_with_retries(ecs, scope, stop)
            if services is None:
                return  # stopped while retrying
            is_resync = is_resync or needed_retries
            self._report(location, known, services, report, resync=is_resync)
            is_resync = False
            busy = any(self._is_deploying(snapshot) for snapshot in services.values())
            stop.wait((self._fast_interval if busy else self._interval).total_seconds())

    # -- polling ----------------------------------------------------------------------------------------------

    def _poll_with_retries(
        self, ecs: ECSClient, scope: EcsWatch, stop: threading.Event
    ) -> tuple[dict[ServiceKey, EcsServiceSnapshot] | None, bool]:
        retrying = Retrying(
            retry=retry_if_exception_type(BackendUnavailable),
            wait=wait_exponential_jitter(multiplier=self._retry_initial, max=30),
            stop=stop_after_attempt(RETRY_ATTEMPTS),
            sleep=_interruptible(stop),
            before_sleep=_log_retry,
            reraise=True,
        )
        for attempt in retrying:
            with attempt:
                if stop.is_set():
                    return None, False
                return self._poll(ecs, scope), attempt.retry_state.attempt_number > 1
        return None, False  # pragma: no cover - Retrying either returns above or re-raises

    def _poll(self, ecs: ECSClient, scope: EcsWatch) -> dict[ServiceKey, EcsServiceSnapshot]:
        services: dict[ServiceKey, EcsServiceSnapshot] = {}
        for cluster in scope.clusters:
            arns = list(self._service_arns(ecs, cluster))
            for start in range(0, len(arns), DESCRIBE_BATCH):
                batch = arns[start : start + DESCRIBE_BATCH]
                with translating_errors(f"describing the services of ECS cluster `{cluster}`"):
                    answer: dict[str, Any] = dict(
                        # Tags say which deployment a rollbot rollback started (never rolled back automatically).
                        ecs.describe_services(cluster=cluster, services=batch, include=["TAGS"])
                    )
                for raw in answer.get("services") or ():
                    if raw.get("status") == "INACTIVE":
                        continue  # deleted; ECS still describes it for a while
                    snapshot = EcsServiceSnapshot.from_manifest(cluster, raw)
                    services[(cluster, snapshot.service)] = snapshot
        return services

    @staticmethod
    def _service_arns(ecs: ECSClient, cluster: str) -> Iterator[str]:
        with translating_errors(f"listing the services of ECS cluster `{cluster}`"):
            for page in ecs.get_paginator("list_services").paginate(cluster=cluster):
                yield from page.get("serviceArns") or ()

    @staticmethod
    def _is_deploying(snapshot: EcsServiceSnapshot) -> bool:
        return len(snapshot.deployments) > 1 or any(d.rollout_state == IN_PROGRESS for d in snapshot.deployments)

    # -- reporting --------------------------------------------------------------------------------------------

    def _report(
        self,
        location: str,
        known: dict[ServiceKey, EcsServiceSnapshot],
        services: dict[ServiceKey, EcsServiceSnapshot],
        report: Callable[[Sighting], None],
        *,
        resync: bool,
    ) -> None:
        for key in [key for key in known if key not in services]:
            gone = known.pop(key)
            report(Sighting(location=location, seen_at=self._now(), service=gone, deleted=True, resync=resync))
        for key, snapshot in services.items():
            if resync or known.get(key) != snapshot or self._is_deploying(snapshot):
                report(Sighting(location=location, seen_at=self._now(), service=snapshot, resync=resync))
            known[key] = snapshot


def _interruptible(stop: threading.Event) -> Callable[[float], None]:
    """A sleep for tenacity that a stopping watcher cuts short."""

    def sleep(seconds: float) -> None:
        stop.wait(seconds)

    return sleep


def _log_retry(state: RetryCallState) -> None:
    outcome = state.outcome
    log.warning(
        "ECS poll failed, retrying",
        attempt=state.attempt_number,
        error=str(outcome.exception()) if outcome is not None else None,
    )
