"""Ready-made catalog, targets and operations for the pure-core tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from bot.core.catalog import (
    ApprovalPolicy,
    Catalog,
    ChannelId,
    HelmTarget,
    SlackGroupId,
    SlackUserId,
    Target,
    TargetName,
    parse_catalog,
)
from bot.core.operations import Approval, Operation, OperationId, Phase
from bot.core.rollouts import RevisionNumber, RollbackPlan

T0 = datetime(2026, 11, 22, 14, 37, tzinfo=UTC)
EXPIRES_AFTER = timedelta(minutes=15)

REQUESTER = SlackUserId("U0REQ")
ALICE = SlackUserId("U0AAA")  # listed approver
BOB = SlackUserId("U0BBB")  # listed approver
CAROL = SlackUserId("U0CCC")  # approver through the S0SRE group
MALLORY = SlackUserId("U0OUT")  # nobody's approver
BOT = SlackUserId("U0BOT")
SRE = SlackGroupId("S0SRE")
SRE_MEMBERS = frozenset({CAROL})
CHANNEL = ChannelId("C0INCIDENT")

CATALOG_DOCUMENT: dict[str, Any] = {
    "defaults": {
        "approvals": {"required": 1, "approvers": [ALICE, BOB], "approver_groups": [SRE], "expires_after": "15m"},
        "allowed_channels": [CHANNEL],
        "kubernetes": {"allowed_namespaces": ["shop", "default"], "kube_context": "sandbox"},
    },
    "targets": {
        "workshop": {"backend": "helm", "release": "workshop-prod", "namespace": "default", "kube_context": "sandbox"},
        "bootcamp": {"backend": "kubernetes", "kind": "Deployment", "name": "kubernetes-bootcamp"},
        "fluentd": {
            "backend": "kubernetes",
            "kind": "DaemonSet",
            "name": "fluentd",
            "namespace": "kube-system",
            "approvals": {"required": 2},
        },
        "elsewhere": {
            "backend": "kubernetes",
            "kind": "Deployment",
            "name": "web",
            "namespace": "shop",
            "kube_context": "other-cluster",
        },
        "myservice": {"backend": "ecs", "cluster": "default", "service": "my-svc", "region": "ap-northeast-1"},
    },
}


def catalog(**defaults: Any) -> Catalog:
    document = {**CATALOG_DOCUMENT, "defaults": {**CATALOG_DOCUMENT["defaults"], **defaults}}
    return parse_catalog(document)


def policy(
    required: int = 1,
    *,
    allow_self_approval: bool = False,
    approvers: tuple[SlackUserId, ...] = (ALICE, BOB),
    groups: tuple[SlackGroupId, ...] = (SRE,),
) -> ApprovalPolicy:
    return ApprovalPolicy(
        required=required,
        approvers=approvers,
        approver_groups=groups,
        allow_self_approval=allow_self_approval,
        expires_after=EXPIRES_AFTER,
    )


def target(approval_policy: ApprovalPolicy | None = None) -> Target:
    return Target(
        name=TargetName("workshop"),
        spec=HelmTarget(release="workshop", kube_context="sandbox"),
        policy=approval_policy or policy(),
    )


def operation(
    phase: Phase = Phase.AWAITING_APPROVAL,
    *,
    approval_policy: ApprovalPolicy | None = None,
    approvers: tuple[SlackUserId, ...] = (),
    via: str = "reaction",
    **fields: Any,
) -> Operation:
    approvals = tuple(Approval(user=user, at=T0, via=via) for user in approvers)  # type: ignore[arg-type]
    base: dict[str, Any] = {
        "id": OperationId("op-1"),
        "phase": phase,
        "target": target(approval_policy),
        "requester": REQUESTER,
        "channel": CHANNEL,
        "created_at": T0,
        "updated_at": T0,
        "expires_at": T0 + EXPIRES_AFTER,
        "plan": RollbackPlan(from_revision=RevisionNumber(3), to_revision=RevisionNumber(2)),
        "approvals": approvals,
    }
    return Operation(**{**base, **fields})
