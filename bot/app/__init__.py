"""The composition root: the only module that names concrete classes and wires them together (with
`bot.app.running`, the wired bot's start and stop).

`build_app(settings)` returns a `RollbotApp` that is built but not running: a Bolt `App` whose `WebClient`
points at `SLACK_API_URL` with retry handlers for dropped connections and 429s, the Redis operation store, the
Slack chat adapter, the backends, two bounded executors (rollouts; short request work), the flow, the
listeners, the sweeper and either the HTTP server (`POST /slack/events`, `/healthz`, `/readyz`, `/metrics`)
or a Socket Mode connection. `start()` resumes what a previous process left in flight, then serves;
`stop()` stops serving and watching (in-flight operations stay in Redis for the next process).

Tests inject what they simulate: `build_app(settings, backends={…}, clock=…)` runs a real bot on
`127.0.0.1:0` against the fake Slack and a real redis-server.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry
from slack_bolt import App

from bot.adapters.http_server import ReadinessAnswer, Server, serve
from bot.adapters.prometheus_metrics import PrometheusMetrics
from bot.adapters.redis_auto import RedisAutoLedgers
from bot.adapters.redis_deliveries import RedisDeliveryLedger
from bot.adapters.redis_inbox import RedisInbox
from bot.adapters.redis_incident_groups import RedisIncidentGroupStore
from bot.adapters.redis_incidents import RedisContextLeases, RedisIncidentStore
from bot.adapters.redis_store import RedisOperationStore
from bot.adapters.redis_sync_pauses import RedisSyncPauses
from bot.adapters.slack_chat import SlackChat, build_web_client
from bot.adapters.slack_outbox import Budget
from bot.adapters.socket_mode import SocketModeRunner
from bot.adapters.webhooks import WebhookEndpoints
from bot.app.running import RollbotApp
from bot.core.catalog import BackendKind, Catalog
from bot.core.incident_groups import GroupId
from bot.core.incidents import IncidentId
from bot.core.operations import OperationId
from bot.core.watch_plan import watch_plan
from bot.flows import RollbackFlow
from bot.flows.auto_rollback import AutoRollbackFlow
from bot.flows.incident_groups import MassFailures
from bot.flows.incidents import IncidentFlow
from bot.flows.intake import WebhookIntake
from bot.flows.watching import ContextWatching
from bot.ports import (
    AutoLedgers,
    Backend,
    Clock,
    ContextLeases,
    DeliveryLedger,
    FailureWatcher,
    Inbox,
    IncidentGroupStore,
    IncidentStore,
    OperationStore,
    Reconcilers,
    SyncPauses,
)
from bot.settings import Settings, load_catalog_file
from handlers import register_listeners

log = logging.getLogger("rollbot.app")

# Bolt's listener threads only parse, ack and hand over; a few more than Bolt's default 5 absorb bursts.
LISTENER_THREADS = 16
# Request work: answering commands (a command waits for Slack's budget to post its request message).
REQUEST_WORKERS = 16
# Counting votes: Redis only, a few ms each; its own pool, so an approval never waits behind commands.
VOTE_WORKERS = 8
# Reporting lanes (bot.flows.report_queue): one worker per operation with reports waiting for Slack's budget.
# Most of them sleep in the outbox; enough for every in-flight operation of a mass failure, created on demand.
REPORT_WORKERS = 128
# How many new incident cards are posted at the same time (each waits for its channel's Slack budget; the
# rest of a burst queues behind them).
CARD_POSTERS = 4
# A replica silent for this long (no sweep) is gone: another one adopts the gestures it had acknowledged.
HEARTBEAT_TTL = timedelta(seconds=30)


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


def new_operation_id() -> OperationId:
    # Six hex digits: short enough to type in `/rollback cancel op-…`, unique enough for a team's lifetime
    # of rollbacks (collisions are refused by the store, not silently merged).
    return OperationId(f"op-{secrets.token_hex(3)}")


def new_incident_id() -> IncidentId:
    return IncidentId(f"inc-{secrets.token_hex(4)}")


def new_group_id() -> GroupId:
    return GroupId(f"grp-{secrets.token_hex(4)}")


def build_watchers(settings: Settings) -> dict[BackendKind, FailureWatcher]:
    """The real failure watchers, one per technology (each watches the scopes the watch plan gives it)."""
    from bot.backends.ecs_watch import EcsFailureWatcher
    from bot.backends.helm_watch import HelmFailureWatcher
    from bot.backends.kubernetes_api import KubernetesClients
    from bot.backends.kubernetes_watch import KubernetesFailureWatcher

    kubernetes = KubernetesClients(settings.kubeconfig)
    return {
        BackendKind.KUBERNETES: KubernetesFailureWatcher(kubernetes),
        BackendKind.HELM: HelmFailureWatcher(kubernetes),
        BackendKind.ECS: EcsFailureWatcher(),
    }


def build_backends(settings: Settings) -> dict[BackendKind, Backend]:
    """The real backends, one per technology; adding one is one line here and one module in bot/backends."""
    from bot.backends.aws_ecs import EcsBackend
    from bot.backends.helm_cli import HelmCliBackend
    from bot.backends.kubernetes_api import KubernetesBackend, KubernetesClients

    kubernetes = KubernetesClients(settings.kubeconfig)
    return {
        BackendKind.HELM: HelmCliBackend(
            settings.helm_path,
            kubeconfig=settings.kubeconfig,
            clients=kubernetes,
            wait_timeout=settings.rollout_timeout,
        ),
        BackendKind.KUBERNETES: KubernetesBackend(kubernetes),
        BackendKind.ECS: EcsBackend(),
    }


def build_reconcilers(settings: Settings) -> Reconcilers:
    """Argo CD and Flux objects over the same Kubernetes clients the backends use."""
    from bot.backends.gitops_api import KubernetesReconcilers
    from bot.backends.kubernetes_api import KubernetesClients

    return KubernetesReconcilers(KubernetesClients(settings.kubeconfig))


def build_app(
    settings: Settings,
    *,
    backends: Mapping[BackendKind, Backend] | None = None,
    clock: Clock | None = None,
    catalog: Catalog | None = None,
    store: OperationStore | None = None,
    inbox: Inbox | None = None,
    new_id: Callable[[], OperationId] = new_operation_id,
    registry: CollectorRegistry | None = None,
    watchers: Mapping[BackendKind, FailureWatcher] | None = None,
    incident_store: IncidentStore | None = None,
    context_leases: ContextLeases | None = None,
    new_incident: Callable[[], IncidentId] = new_incident_id,
    ledger: DeliveryLedger | None = None,
    group_store: IncidentGroupStore | None = None,
    reconcilers: Reconcilers | None = None,
    sync_pauses: SyncPauses | None = None,
    auto_ledgers: AutoLedgers | None = None,
) -> RollbotApp:
    """Wire a bot from settings; anything passed in replaces the production part of the same name."""
    clock = clock if clock is not None else SystemClock()
    catalog = catalog if catalog is not None else _load_catalog(settings)
    metrics = PrometheusMetrics(registry if registry is not None else CollectorRegistry())
    closers: list[Callable[[], None]] = []
    if store is None:
        redis_store = RedisOperationStore.from_url(
            settings.redis_url,
            clock,
            key_prefix=settings.redis_key_prefix,
            retention=settings.retention,
            audit_max=settings.audit_max,
        )
        closers.append(redis_store.close)
        store = redis_store
        if inbox is None:
            inbox = RedisInbox(redis_store.client, clock, key_prefix=settings.redis_key_prefix)
        if incident_store is None:
            incident_store = RedisIncidentStore(
                redis_store.client, key_prefix=settings.redis_key_prefix, retention=settings.retention
            )
        if context_leases is None:
            context_leases = RedisContextLeases(redis_store.client, key_prefix=settings.redis_key_prefix)
        if group_store is None:
            group_store = RedisIncidentGroupStore(
                redis_store.client, key_prefix=settings.redis_key_prefix, retention=settings.retention
            )
        if ledger is None:
            ledger = RedisDeliveryLedger(redis_store.client, key_prefix=settings.redis_key_prefix)
        if sync_pauses is None:
            sync_pauses = RedisSyncPauses(redis_store.client, key_prefix=settings.redis_key_prefix)
        if auto_ledgers is None:
            auto_ledgers = RedisAutoLedgers(
                redis_store.client, key_prefix=settings.redis_key_prefix, audit_max=settings.audit_max
            )
    web_client = build_web_client(
        settings.slack_bot_token.get_secret_value(), base_url=settings.slack_api_url, observer=metrics
    )
    budget = Budget(replicas=settings.slack_replicas, scale=settings.slack_budget_scale)
    chat = SlackChat(web_client, clock=clock, observer=metrics, budget=budget)
    listener_executor = ThreadPoolExecutor(max_workers=LISTENER_THREADS, thread_name_prefix="bolt-listener")
    closers.append(lambda: listener_executor.shutdown(wait=False, cancel_futures=True))
    bolt = App(
        client=web_client,
        signing_secret=settings.slack_signing_secret.get_secret_value() or None,
        listener_executor=listener_executor,
        logger=logging.getLogger("slack_bolt.App"),
    )
    rollout_executor = ThreadPoolExecutor(max_workers=settings.executor_workers, thread_name_prefix="rollout")
    request_executor = ThreadPoolExecutor(max_workers=REQUEST_WORKERS, thread_name_prefix="request")
    vote_executor = ThreadPoolExecutor(max_workers=VOTE_WORKERS, thread_name_prefix="vote")
    report_executor = ThreadPoolExecutor(max_workers=REPORT_WORKERS, thread_name_prefix="report")
    flow = RollbackFlow(
        backends=backends if backends is not None else build_backends(settings),
        chat=chat,
        store=store,
        clock=clock,
        metrics=metrics,
        catalog=catalog,
        submit=_submitter(rollout_executor),
        submit_request=_submitter(request_executor),
        submit_vote=_submitter(vote_executor),
        submit_report=_submitter(report_executor),
        new_operation_id=new_id,
        replica_id=settings.replica_id,
        command_name=settings.slash_command,
        rollout_timeout=settings.rollout_timeout,
        lease=settings.lease,
        inbox=inbox,
        heartbeat_ttl=max(HEARTBEAT_TTL, settings.sweep_interval * 3),
        reconcilers=reconcilers
        if reconcilers is not None
        else (build_reconcilers(settings) if backends is None else None),
        sync_pauses=sync_pauses,
    )
    incidents: IncidentFlow | None = None
    mass_failures: MassFailures | None = None
    auto: AutoRollbackFlow | None = None
    watching: ContextWatching | None = None
    if incident_store is not None:
        # New incident cards are posted from here, each waiting for the channel's Slack budget, so a burst of
        # failures never holds up the watcher that is judging the next one.
        card_pool = ThreadPoolExecutor(max_workers=CARD_POSTERS, thread_name_prefix="rollbot-cards")
        closers.append(lambda: card_pool.shutdown(wait=False, cancel_futures=True))
        incidents = IncidentFlow(
            store=incident_store,
            operations=store,
            chat=chat,
            clock=clock,
            catalog=catalog,
            metrics=metrics,
            backend_of=flow.backend_of,
            new_incident_id=new_incident,
            sleep=time.sleep,
            post_cards=card_pool.submit,
        )
        if auto_ledgers is not None:
            auto = AutoRollbackFlow(
                store=incident_store,
                operations=store,
                ledgers=auto_ledgers,
                chat=chat,
                clock=clock,
                catalog=catalog,
                backend_of=flow.backend_of,
                new_operation_id=new_id,
                sleep=time.sleep,
                command_name=settings.slash_command,
            )
            auto.attach(incidents, flow)
            flow.on_auto_cancel(auto.on_cancel)
            flow.on_auto_commands(auto.status, auto.resume)
        incidents.attach(flow, auto)
        flow.on_finished(incidents.on_operation_finished)
        flow.on_incident_click(lambda incident_id, user: incidents.on_click(IncidentId(incident_id), user))
        flow.on_incidents_listing(incidents.listing)
        if group_store is not None:
            mass_failures = MassFailures(
                groups=group_store,
                incidents=incident_store,
                operations=store,
                chat=chat,
                clock=clock,
                catalog=catalog,
                metrics=metrics,
                new_group_id=new_group_id,
                replica_id=settings.replica_id,
                sleep=time.sleep,
            )
            mass_failures.attach(flow, incidents.apply_event)
            incidents.summarise_mass_failures_with(mass_failures.summarises)
            flow.on_finished(mass_failures.on_operation_finished)
            flow.on_incident_group_click(lambda group_id, user: mass_failures.on_click(GroupId(group_id), user))
        scopes = watch_plan(catalog)
        if settings.detect and context_leases is not None and scopes:
            watching = ContextWatching(
                scopes=scopes,
                watchers=watchers if watchers is not None else build_watchers(settings),
                leases=context_leases,
                incidents=incidents,
                replica_id=settings.replica_id,
                ttl=settings.detect_lease,
                renew_every=settings.detect_lease / 3,
            )
    register_listeners(bolt, flow, settings)
    webhooks = _webhooks(settings, incidents, incident_store, ledger, catalog, clock, metrics, flow)
    server: Server | None = None
    socket_runner: SocketModeRunner | None = None
    readiness = _readiness(store)
    if settings.is_socket_mode:
        assert settings.slack_app_token is not None
        socket_runner = SocketModeRunner(
            bolt,
            settings.slack_app_token.get_secret_value(),
            host=settings.host,
            port=settings.port,
            readiness=readiness,
            metrics_registry=metrics.registry,
            observer=metrics,
            clock=clock,
            webhooks=webhooks,
        )
    else:
        server = serve(
            bolt,
            host=settings.host,
            port=settings.port,
            readiness=readiness,
            metrics_registry=metrics.registry,
            signing_secret=settings.slack_signing_secret.get_secret_value(),
            observer=metrics,
            webhooks=webhooks,
        )
    return RollbotApp(
        settings=settings,
        bolt=bolt,
        flow=flow,
        store=store,
        chat=chat,
        metrics=metrics,
        server=server,
        rollout_executor=rollout_executor,
        request_executor=request_executor,
        vote_executor=vote_executor,
        report_executor=report_executor,
        socket_runner=socket_runner,
        incidents=incidents,
        mass_failures=mass_failures,
        auto=auto,
        watching=watching,
        _closers=closers,
    )


def _webhooks(
    settings: Settings,
    incidents: IncidentFlow | None,
    incident_store: IncidentStore | None,
    ledger: DeliveryLedger | None,
    catalog: Catalog,
    clock: Clock,
    metrics: PrometheusMetrics,
    flow: RollbackFlow,
) -> WebhookEndpoints | None:
    """The failure webhooks, when a credential is set and there is an incident flow to feed (else 404)."""
    token = settings.webhook_token.get_secret_value() if settings.webhook_token else ""
    secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else ""
    if not (token or secret) or incidents is None or incident_store is None or ledger is None:
        return None
    intake = WebhookIntake(
        incidents=incidents,
        store=incident_store,
        ledger=ledger,
        catalog=catalog,
        clock=clock,
        metrics=metrics,
        backend_of=flow.backend_of,
    )
    return WebhookEndpoints(intake, token=token, secret=secret, ledger=ledger, clock=clock, metrics=metrics)


def _load_catalog(settings: Settings) -> Catalog:
    if settings.config_path is None:
        raise ValueError("ROLLBOT_CONFIG is not set (path of the YAML catalog)")
    return load_catalog_file(settings.config_path)


def _submitter(executor: ThreadPoolExecutor) -> Callable[[Callable[[], None]], None]:
    def submit(work: Callable[[], None]) -> None:
        executor.submit(work)

    return submit


def _readiness(store: OperationStore) -> Callable[[], ReadinessAnswer]:
    def ready() -> ReadinessAnswer:
        return (True, "") if store.is_reachable() else (False, "redis unreachable")

    return ready
