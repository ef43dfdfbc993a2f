"""Failure detection, the decisions only: is this workload, release or service failing, and why?

Watchers (in `bot/backends`) turn what they see into slim snapshots (`snapshots`) and call one pure function
per backend: `judge_workload` (Deployments, DaemonSets, StatefulSets, with the pods of the update revision when
`needs_pods` says so), `judge_helm_release`, `judge_ecs_service`. Each returns a `Verdict`: failing with a
`Signal`, progressing, recovering, healthy, or ignored, plus the rules' updated memory (`Observations`) that the
caller stores and passes back next time. Time is passed in; nothing here reads a clock or talks to anything.
`verify_rollback` reuses the same verdicts to say whether a finished rollback left the target healthy.

This package decides nothing about incidents (see `bot.core.incidents`) or chat text (`bot.core.messages`).
"""

from __future__ import annotations

from bot.core.detection.releases import ECS_FAILED, TASKS_FAILING_REASON, judge_ecs_service, judge_helm_release
from bot.core.detection.sightings import Sighting
from bot.core.detection.snapshots import (
    OPERATION_ANNOTATION,
    REVISION_ANNOTATION,
    Condition,
    ContainerWait,
    EcsDeployment,
    EcsEvent,
    EcsServiceSnapshot,
    HelmReleaseSnapshot,
    HelmStatus,
    PodSnapshot,
    UpdateStrategy,
    WorkloadSnapshot,
    latest_releases,
)
from bot.core.detection.verdicts import (
    MAX_DISTINCT_MESSAGES,
    Health,
    Observations,
    ReasonCount,
    Signal,
    Verdict,
)
from bot.core.detection.verification import Verification, VerificationState, verify_rollback
from bot.core.detection.workloads import (
    DEADLINE_REASON,
    HARD_WAITING_REASONS,
    REPLICA_FAILURE_HOLD,
    STALLED_REASON,
    UNREADY_REASON,
    judge_workload,
    needs_pods,
)

__all__ = [
    "DEADLINE_REASON",
    "ECS_FAILED",
    "HARD_WAITING_REASONS",
    "MAX_DISTINCT_MESSAGES",
    "OPERATION_ANNOTATION",
    "REPLICA_FAILURE_HOLD",
    "REVISION_ANNOTATION",
    "STALLED_REASON",
    "TASKS_FAILING_REASON",
    "UNREADY_REASON",
    "Condition",
    "ContainerWait",
    "EcsDeployment",
    "EcsEvent",
    "EcsServiceSnapshot",
    "Health",
    "HelmReleaseSnapshot",
    "HelmStatus",
    "Observations",
    "PodSnapshot",
    "ReasonCount",
    "Sighting",
    "Signal",
    "UpdateStrategy",
    "Verdict",
    "Verification",
    "VerificationState",
    "WorkloadSnapshot",
    "judge_ecs_service",
    "judge_helm_release",
    "judge_workload",
    "latest_releases",
    "needs_pods",
    "verify_rollback",
]
