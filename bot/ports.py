"""The ports: how the flow reaches the outside world, as structural protocols.

Adapters (`bot/adapters`) and backends (`bot/backends`) implement these without inheriting from them; mypy
checks the fit where `bot/app/` wires them. Every implementation translates its vendor's exceptions into
`bot.core.errors` at the seam, so nothing above a port ever sees an ApiException, a ClientError, a
SlackApiError or a redis error.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Protocol

from pydantic import BaseModel, ConfigDict, JsonValue

from bot.core.auto_policy import AutoLedger
from bot.core.catalog import ChannelId, SlackGroupId, SlackUserId, Target, WatchScope
from bot.core.detection import Sighting
from bot.core.gitops import Reconciler, ReconcilerRef, SyncPause
from bot.core.incident_groups import GroupId, IncidentGroup
from bot.core.incidents import Incident, IncidentId
from bot.core.messages import ChatMessage
from bot.core.operations import MessageRef, Operation, OperationId
from bot.core.outbound import Priority
from bot.core.rollouts import (
    BackendOption,
    Revision,
    RevisionNumber,
    RollbackPlan,
    RollbackReceipt,
    RolloutStatus,
    TargetStatus,
)


class Backend(Protocol):
    """One deployment technology (Helm, Kubernetes, ECS). All methods may raise `bot.core.errors` only."""

    def options(self) -> Sequence[BackendOption]:
        """The backend-specific flags `/rollback <target> …` accepts for this backend."""
        ...

    def check_target(self, target: Target) -> None:
        """Raise UnknownTarget / TargetNotAllowed when the target does not exist or cannot be reached."""
        ...

    def history(self, target: Target) -> Sequence[Revision]:
        """The revisions people would see with the backend's own history command, oldest first."""
        ...

    def current_revision(self, target: Target) -> RevisionNumber: ...

    def plan_rollback(
        self, target: Target, to_revision: RevisionNumber | None, options: Mapping[str, bool | str]
    ) -> RollbackPlan:
        """Resolve the target revision (None or 0 = previous) and say what will change.

        Raises RevisionNotFound (listing the revisions that exist), NothingToDo (already there) or
        RollbackRefused (e.g. a paused Deployment, a helm release stuck in pending-*).
        """
        ...

    def roll_back(self, target: Target, plan: RollbackPlan, operation_id: OperationId) -> RollbackReceipt:
        """Apply the approved plan. Calling it again for the same operation after a crash must not roll back twice."""
        ...

    def watch_rollout(
        self, target: Target, plan: RollbackPlan, timeout: timedelta, resume_token: str | None = None
    ) -> Iterator[RolloutStatus]:
        """Observe the rollout until it finishes; the last status yielded is SUCCEEDED or FAILED."""
        ...

    def status(self, target: Target) -> TargetStatus: ...


class Reconcilers(Protocol):
    """The Argo CD / Flux objects that reconcile targets (Kubernetes and Helm). Raises `bot.core.errors` only."""

    def reconciler(self, target: Target) -> Reconciler | None:
        """Who puts `target` back to Git's state, with its sync settings now; None when nobody (or no CRD)."""
        ...

    def settings(self, target: Target, ref: ReconcilerRef) -> dict[str, JsonValue]:
        """The fields a pause changes, exactly as they are now (`bot.core.gitops.previous_settings`)."""
        ...

    def patch(self, target: Target, ref: ReconcilerRef, patch: Mapping[str, object]) -> None:
        """Apply a JSON merge patch to the reconciler's object."""
        ...


class SyncPauses(Protocol):
    """Reconcilers rollbot paused, one record per reconciler, shared by every replica (kept until resumed)."""

    def put(self, pause: SyncPause) -> None: ...

    def get(self, reconciler_key: str) -> SyncPause | None: ...

    def all(self) -> Sequence[SyncPause]: ...

    def remove(self, reconciler_key: str) -> None: ...


class Chat(Protocol):
    """Slack, as far as the flow needs it. Raises ChatUnavailable (retryable) or UserError (e.g. not in channel)."""

    def post(
        self,
        channel: ChannelId,
        message: ChatMessage,
        thread: MessageRef | None = None,
        *,
        priority: Priority = Priority.NORMAL,
        on_queued: Callable[[float], None] | None = None,
        still_current: Callable[[], bool] | None = None,
    ) -> MessageRef:
        """Post in `channel` (in `thread`'s thread); waits for Slack's budget rather than failing on a 429.

        `on_queued(seconds)` hears the estimated wait when the post cannot go at once. `still_current` is asked
        right before the request leaves (after any wait): when it says no, nothing is sent and FencedOut is raised.
        """
        ...

    def update(
        self,
        ref: MessageRef,
        message: ChatMessage,
        *,
        priority: Priority = Priority.NORMAL,
        still_current: Callable[[], bool] | None = None,
    ) -> MessageRef | None:
        """Replace the content of `ref`; returns the ref that now shows it.

        At `Priority.PROGRESS` an update still waiting for Slack's budget is replaced by a newer one of the same
        message (and then returns None without being sent).

        `ref` itself (or None) when edited in place; a different ref when the original was deleted or can no
        longer be edited and a new message was posted instead (link it to the operation so reactions on it count).
        """
        ...

    def post_ephemeral(self, channel: ChannelId, user: SlackUserId, message: ChatMessage) -> None: ...

    def add_reaction(self, ref: MessageRef, name: str) -> None: ...

    def reactions(self, ref: MessageRef) -> Mapping[str, Sequence[SlackUserId]]:
        """The reactions on a message now (emoji → users), to recount votes whose events were lost."""
        ...

    def group_members(self, group: SlackGroupId) -> frozenset[SlackUserId]: ...

    def is_bot(self, user: SlackUserId) -> bool: ...


class LockInfo(BaseModel):
    """Who holds a target, for the "locked by …" message."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    operation_id: OperationId
    requester: SlackUserId
    since: datetime


class AuditEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    operation_id: OperationId
    at: datetime
    phase: str
    version: int
    actor: SlackUserId | None = None
    note: str | None = None


class OperationStore(Protocol):
    """The journal of operations. Shared by every bot replica; all writes are compare-and-set."""

    def create(self, operation: Operation, lock_ttl: timedelta) -> None:
        """Store a new operation and take its target's lock (if in flight). Raises TargetBusy.

        A batch takes one lock per member (`operation.lock_keys`), all together or none; its TargetBusy names
        every busy member and its holder (`TargetBusy.holders`).
        """
        ...

    def get(self, operation_id: OperationId) -> Operation | None: ...

    def replace(
        self,
        operation: Operation,
        expected_version: int,
        actor: SlackUserId | None = None,
        note: str | None = None,
        *,
        fence: int | None = None,
        lock_ttl: timedelta | None = None,
    ) -> None:
        """Write `operation` if the stored version is `expected_version` (else ConcurrentUpdate).

        Appends an audit entry; releases the target's lock (a batch: all of its locks) when the operation reaches
        a terminal phase.

        `fence` is the writer's fencing token (every write of an executor passes it): unless the stored record's
        `fence` equals it, nothing is written and FencedOut is raised, whatever the versions say. A record's
        `fence` never goes down, and a write raises it by one at most (a claim or takeover).

        `lock_ttl`, for an in-flight record, sets the target's lock to expire after `ttl` (approval extends it).
        Any in-flight write finds the lock held by this operation or takes it again if it expired meanwhile
        (with `lock_ttl`, or the store's default); TargetBusy if another operation holds it, and nothing is
        written.
        """
        ...

    def link_message(self, operation_id: OperationId, ref: MessageRef) -> None: ...

    def find_by_message(self, ref: MessageRef) -> Operation | None: ...

    def lock_holder(self, lock_key: str) -> LockInfo | None: ...

    def refresh_lock(self, operation: Operation, ttl: timedelta, *, fence: int | None = None) -> None:
        """Extend the target's lock held by `operation`, or take it again if it expired and nobody took it.

        A batch refreshes all of its locks, or none when another operation holds any of them.

        Nothing for an operation no longer in flight; TargetBusy when another operation holds the target;
        FencedOut when `fence` is given and is not the stored record's current token.
        """
        ...

    def in_flight(self) -> Sequence[Operation]: ...

    def first_delivery(self, key: str, ttl: timedelta) -> bool:
        """True the first time `key` is seen within `ttl` (Slack event_id dedup, command idempotency)."""
        ...

    def is_delivered(self, key: str) -> bool:
        """Whether `first_delivery(key, …)` was already called and has not expired; marks nothing.

        Lossless dedup checks this first and calls `first_delivery` only once the delivery's effect is stored.
        """
        ...

    def audit(self, operation_id: OperationId) -> Sequence[AuditEntry]: ...

    def is_reachable(self) -> bool: ...


class ParkedWork(BaseModel):
    """A gesture Slack delivered and the bot acknowledged, kept until its effect is stored."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str
    payload: str  # JSON the flow wrote; the inbox never reads it
    replica: str
    parked_at: datetime


class Inbox(Protocol):
    """Acknowledged work that must survive the replica that took it (a rolling deploy, a crash).

    The flow parks a gesture before it acks it and unparks it once its effect is stored. Work parked by a
    replica that is gone (its heartbeat lapsed, or it said goodbye on shutdown) is adopted by another one.
    """

    def park(self, key: str, payload: str, replica: str) -> None: ...

    def unpark(self, key: str) -> None: ...

    def heartbeat(self, replica: str, ttl: timedelta) -> None:
        """This replica is alive for `ttl` more; its parked work is not adoptable meanwhile."""
        ...

    def goodbye(self, replica: str) -> None:
        """This replica is shutting down: what it still has parked may be adopted at once."""
        ...

    def adopt(self, replica: str, limit: int = 100) -> Sequence[ParkedWork]:
        """Atomically take over work parked by replicas that are gone; each item goes to one adopter only."""
        ...


class FailureWatcher(Protocol):
    """Watches one scope (a Kubernetes context's workloads or Helm releases, an AWS region's ECS services).

    `watch` lists the scope, reports every object once (`Sighting.resync`), then reports every change until
    `stop` is set; it reconnects with back-off and lists again after a 410 or a reconnect, so the flow always
    sees a complete picture before it decides. Pods are listed only for workloads `needs_pods` selects, never
    watched cluster-wide. Errors that outlast the back-off are raised as `bot.core.errors` (the caller decides
    whether to retry or give the context up).
    """

    def watch(self, scope: WatchScope, report: Callable[[Sighting], None], stop: threading.Event) -> None: ...


class ContextFence(BaseModel):
    """A context lease's fencing token, carried by every write the watcher of that context causes.

    `lease` names the lease (`kubernetes:sandbox`, `ecs:us-east-1`); `token` is the number the holder got when it
    took the lease. A store refuses a write whose token is no longer the lease's current one (`FencedOut`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    lease: str
    token: int


class PendingVerification(BaseModel):
    """A successful rollback whose target the watcher of its context still has to judge."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    operation_id: OperationId
    workload_key: str
    started_at: datetime


class IncidentStore(Protocol):
    """Incidents, shared by every replica; every write is compare-and-set on `version`, like operations.

    Lookups: by id, by incident key (backend + location + kind + namespace/name + failed revision), and the
    latest incident of a workload (its `WorkloadRef.key`), which is how a fix by a newer revision finds the
    incident it supersedes. `live()` lists incidents that are open, or resolved with a card edit still pending.
    Resolved incidents expire after the retention, like finished operations; open ones never do.
    """

    def create(self, incident: Incident, *, fence: ContextFence | None = None) -> None:
        """Store a new incident and point its key and workload at it. Raises ConcurrentUpdate when another
        incident already holds the key (unless it is resolved and `incident` replaces it), FencedOut when
        `fence` is no longer the lease's current token."""
        ...

    def get(self, incident_id: IncidentId) -> Incident | None: ...

    def find_by_key(self, key: str) -> Incident | None: ...

    def find_by_workload(self, workload_key: str) -> Incident | None: ...

    def replace(self, incident: Incident, expected_version: int, *, fence: ContextFence | None = None) -> None:
        """Write `incident` if the stored version is `expected_version` (else ConcurrentUpdate); FencedOut when
        `fence` is given and is not its lease's current token."""
        ...

    def live(self) -> Sequence[Incident]: ...

    def holds(self, fence: ContextFence) -> bool:
        """Whether `fence` is still its lease's current token (checked again before a Slack write)."""
        ...

    def add_verification(self, pending: PendingVerification) -> None: ...

    def pending_verifications(self) -> Sequence[PendingVerification]: ...

    def finish_verification(self, pending: PendingVerification) -> None: ...


class IncidentGroupStore(Protocol):
    """Mass-failure groups, shared by every replica; every write is compare-and-set on `version`.

    Each channel points at its latest group: `create` moves that pointer from `replaces` (the group the caller
    saw, or None) to the new group atomically, so two replicas crossing the threshold at once make one group.
    `live()` lists groups not resolved, or resolved with a card edit still pending; resolved ones expire after
    the retention. `claim_card` lets one replica post a summary card (a claim lapses after `ttl`).
    """

    def create(self, group: IncidentGroup, *, replaces: GroupId | None) -> None:
        """Store `group` as its channel's latest; ConcurrentUpdate when the channel's latest is not `replaces`."""
        ...

    def get(self, group_id: GroupId) -> IncidentGroup | None: ...

    def latest_in(self, channel: ChannelId) -> IncidentGroup | None: ...

    def replace(self, group: IncidentGroup, expected_version: int) -> None:
        """Write `group` if the stored version is `expected_version`, else ConcurrentUpdate."""
        ...

    def live(self) -> Sequence[IncidentGroup]: ...

    def claim_card(self, group_id: GroupId, holder: str, ttl: timedelta) -> bool: ...


class AutoLedgers(Protocol):
    """The automatic-rollback ledger of each cluster context / AWS region (its starts and its breaker), shared
    by every replica, and the audit of the policy's decisions."""

    def get(self, context: str) -> AutoLedger:
        """The context's ledger; an empty one (`version` 0) when nothing was recorded there yet."""
        ...

    def replace(self, ledger: AutoLedger, expected_version: int) -> None:
        """Write `ledger` (its `version` is `expected_version + 1`) if the stored version is `expected_version`;
        else ConcurrentUpdate."""
        ...

    def contexts(self) -> Sequence[str]:
        """Every context with a ledger, for `/rollback auto status`."""
        ...

    def audit(self, event: str, fields: Mapping[str, str]) -> None:
        """Append a policy decision (`auto_countdown`, `auto_skipped`, `auto_cancelled`, `auto_started`,
        `breaker_tripped`, `breaker_resumed`) to the audit stream every operation write goes to."""
        ...


class ContextLeases(Protocol):
    """One holder per watched context (Kubernetes context or AWS region, per scope kind), with fencing tokens.

    A token only ever goes up: whoever takes a lease gets a larger number than every holder before it, so a
    holder that was paused past its lease finds its writes refused.
    """

    def acquire(self, lease: str, holder: str, ttl: timedelta) -> ContextFence | None:
        """Take `lease` if nobody holds it (or `holder` already does); None when another holder has it."""
        ...

    def renew(self, fence: ContextFence, holder: str, ttl: timedelta) -> bool:
        """Extend the lease if `holder` still holds it with this token; False means it is lost."""
        ...

    def release(self, fence: ContextFence, holder: str) -> None: ...


class Clock(Protocol):
    def now(self) -> datetime:
        """Timezone-aware UTC."""
        ...


class Metrics(Protocol):
    """What the flow counts; the Prometheus adapter exposes it on /metrics."""

    def command_received(self, verb: str) -> None: ...

    def approval_recorded(self, outcome: str) -> None:
        """outcome: counted, withdrawn, rejected, refused (not allowed), ignored."""
        ...

    def phase_entered(self, backend: str, phase: str) -> None: ...

    def rollout_finished(self, backend: str, phase: str, duration_seconds: float) -> None: ...


class IncidentMetrics(Protocol):
    """What the incident flow counts."""

    def incident_opened(self, backend: str, reason: str, incident_id: str) -> bool:
        """Count an incident as opened once, whichever path shows it first (its own card, or a mass failure's
        summary formed while its card was still being posted); False when it was counted already."""
        ...

    def incident_resolved(self, backend: str, resolution: str) -> None: ...

    def detection_latency(self, backend: str, seconds: float) -> None:
        """From the signal's `since` (the rule became true) to the card's post."""
        ...


class DeliveryLedger(Protocol):
    """What the webhooks remember: deliveries already handled and signatures already used (shared by replicas).

    `claim` is atomic (first caller wins, for `ttl`); `release` forgets a claim whose work failed, so the sender's
    retry is handled again instead of being mistaken for a redelivery. Raises StoreUnavailable when it cannot tell.
    """

    def claim(self, key: str, ttl: timedelta) -> bool: ...

    def release(self, key: str) -> None: ...


class IntakeMetrics(Protocol):
    """What the webhooks count."""

    def alert_unmatched(self, reason: str) -> None: ...

    def webhook_handled(self, endpoint: str, status: int) -> None: ...
