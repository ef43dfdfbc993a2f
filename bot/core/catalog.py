"""The catalog: which names people may type after /rollback, and what each one means.

A `TargetName` is what the user types (`workshop`); the catalog resolves it into a `Target`: a backend kind
plus the coordinates that backend needs (a Helm release, a Kubernetes workload, an ECS service), and the
approval policy that guards it. The catalog is parsed from YAML by the caller; this module never reads files.
It is deliberately not a registry of live objects: whether `workshop` exists in a cluster is the backend's
question, answered at request time. The catalog also says which workloads rollbot watches for failed
rollouts: each target's `detect` settings over `defaults.detect`, and `watch` scopes beyond the catalog
(`bot.core.detected_targets` maps what a watcher finds back to them). Its parts live beside it: the shared
vocabulary (`catalog_types`), approval policies (`catalog_approvals`), detection settings (`catalog_detect`) and
automatic-rollback settings (`catalog_auto`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from bot.core.catalog_approvals import ApprovalOverrides, ApprovalPolicy, strictest_policy
from bot.core.catalog_auto import AutoRollbackLimits, AutoRollbackSettings, auto_rollback_problems
from bot.core.catalog_detect import (
    DetectOverrides,
    DetectSettings,
    EcsWatch,
    HelmWatch,
    KubernetesWatch,
    NamespaceList,
    WatchScope,
)
from bot.core.catalog_types import (
    _SLACK_CHANNEL,
    _TARGET_NAME,
    BackendKind,
    ChannelId,
    Duration,
    Namespace,
    ObjectName,
    PositiveDuration,
    SlackChannel,
    SlackGroupId,
    SlackUserId,
    TargetName,
    WorkloadKind,
    _Strict,
    format_duration,
    parse_duration,
)
from bot.core.gitops import GitOpsMode


class KubernetesDefaults(_Strict):
    # Ad-hoc targets (`deploy/NAME -n NS`) are denied unless their namespace is listed here.
    allowed_namespaces: tuple[str, ...] = ()
    kube_context: str | None = None


class _TargetBase(_Strict):
    approvals: ApprovalOverrides | None = None
    description: str | None = None
    detect: DetectOverrides | None = None
    # What a rollback does when an Argo CD or Flux reconciler would revert it; None: `defaults.gitops`.
    gitops: GitOpsMode | None = None
    # Off unless set: which incidents roll this target back after a countdown (bot.core.auto_policy).
    auto_rollback: AutoRollbackSettings | None = None


class HelmTarget(_TargetBase):
    backend: Literal[BackendKind.HELM] = BackendKind.HELM
    release: str
    namespace: Namespace = "default"
    kube_context: str | None = None

    @property
    def lock_key(self) -> str:
        return f"helm:{self.kube_context or ''}:{self.namespace}/{self.release}"

    @property
    def display(self) -> str:
        return f"helm release {self.namespace}/{self.release}"


class KubernetesTarget(_TargetBase):
    backend: Literal[BackendKind.KUBERNETES] = BackendKind.KUBERNETES
    kind: WorkloadKind
    name: ObjectName
    namespace: Namespace = "default"
    kube_context: str | None = None

    @property
    def lock_key(self) -> str:
        return f"kubernetes:{self.kube_context or ''}:{self.namespace}/{self.kind.value}/{self.name}"

    @property
    def display(self) -> str:
        return f"{self.kind.value.lower()}/{self.name} in {self.namespace}"


class EcsTarget(_TargetBase):
    backend: Literal[BackendKind.ECS] = BackendKind.ECS
    cluster: str = "default"
    service: str
    region: str | None = None
    role_arn: str | None = None

    @property
    def lock_key(self) -> str:
        return f"ecs:{self.region or ''}:{self.cluster}/{self.service}"

    @property
    def display(self) -> str:
        return f"ECS service {self.cluster}/{self.service}"


TargetSpec = Annotated[HelmTarget | KubernetesTarget | EcsTarget, Field(discriminator="backend")]


class Target(_Strict):
    """A resolved target: the name people use, what it points at, and the policy that guards it."""

    name: TargetName
    spec: TargetSpec
    policy: ApprovalPolicy
    is_ad_hoc: bool = False
    gitops: GitOpsMode = "refuse"

    @property
    def backend(self) -> BackendKind:
        return self.spec.backend

    @property
    def lock_key(self) -> str:
        return self.spec.lock_key


class Defaults(_Strict):
    approvals: ApprovalPolicy = ApprovalPolicy()
    allowed_channels: tuple[ChannelId, ...] = ()
    kubernetes: KubernetesDefaults = KubernetesDefaults()
    detect: DetectSettings = DetectSettings()
    # Fail closed: a rollback a GitOps controller would silently undo is refused unless paused or accepted.
    gitops: GitOpsMode = "refuse"
    # How often the thread of a rollback that paused a reconciler is reminded that Git still owes the fix.
    gitops_reminder: PositiveDuration = timedelta(hours=4)
    auto_rollback_limits: AutoRollbackLimits = AutoRollbackLimits()

    @field_validator("allowed_channels")
    @classmethod
    def _channels(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for channel in value:
            if not _SLACK_CHANNEL.match(channel):
                raise ValueError(f"{channel!r} is not a Slack channel ID (like C0INCIDENT)")
        return value


class Catalog(_Strict):
    """The whole YAML catalog, validated."""

    defaults: Defaults = Defaults()
    targets: Mapping[TargetName, TargetSpec] = Field(default_factory=dict)
    # Workloads beyond the catalog that detection watches too (the catalog's own targets are always watched).
    watch: tuple[WatchScope, ...] = ()
    # Named batches (`shop: [bootcamp, workshop, api]`): `/rollback shop` rolls every member back in one request.
    groups: Mapping[TargetName, tuple[TargetName, ...]] = Field(default_factory=dict)

    @field_validator("targets")
    @classmethod
    def _names(cls, value: Mapping[str, Any]) -> Mapping[str, Any]:
        for name in value:
            if not _TARGET_NAME.match(name):
                raise ValueError(
                    f"target name {name!r} must be lowercase letters, digits, '-', '_' or '.', "
                    "starting with a letter or digit"
                )
        return value

    @model_validator(mode="after")
    def _policies_satisfiable(self) -> Catalog:
        # A policy nobody can satisfy would leave every request of that target to expire; say so up front.
        for name, spec in self.targets.items():
            policy = self.defaults.approvals.merged(spec.approvals)
            if not policy.approvers and not policy.approver_groups:
                raise ValueError(f"targets.{name}.approvals: no approvers or approver_groups, so nobody could approve")
            if not policy.approver_groups and len(set(policy.approvers)) < policy.required:
                raise ValueError(
                    f"targets.{name}.approvals.required: {policy.required} approvals needed but only "
                    f"{len(set(policy.approvers))} approvers listed"
                )
        return self

    @model_validator(mode="after")
    def _detection_has_a_channel(self) -> Catalog:
        # Saying `enabled: true` without a channel anywhere would silently detect nothing; say so up front.
        for name, spec in self.targets.items():
            if spec.detect is not None and spec.detect.enabled and self.detect_settings(name).channel is None:
                raise ValueError(
                    f"targets.{name}.detect.enabled: detection is enabled but no channel is set — "
                    f"add targets.{name}.detect.channel or defaults.detect.channel"
                )
        for index, scope in enumerate(self.watch):
            if scope.detect is not None and scope.detect.enabled and self.scope_detect_settings(scope).channel is None:
                raise ValueError(
                    f"watch.{index}.detect.enabled: detection is enabled but no channel is set — "
                    f"add watch.{index}.detect.channel or defaults.detect.channel"
                )
        return self

    @model_validator(mode="after")
    def _alert_matches_are_per_target(self) -> Catalog:
        # An alert must lead to one card in one channel: matchers name a single target, and it has a channel.
        if self.defaults.detect.alert_match is not None:
            raise ValueError("defaults.detect.alert_match: alert labels name one target; set it under targets.<name>")
        for index, scope in enumerate(self.watch):
            if scope.detect is not None and scope.detect.alert_match is not None:
                raise ValueError(f"watch.{index}.detect.alert_match: set it under the target the alert names")
        seen: dict[tuple[tuple[str, str], ...], str] = {}
        for name in self.names:
            settings = self.detect_settings(name)
            if settings.alert_match is None:
                continue
            if settings.channel is None:
                raise ValueError(
                    f"targets.{name}.detect.alert_match: alerts need a channel for their card — "
                    f"add targets.{name}.detect.channel or defaults.detect.channel"
                )
            labels = tuple(sorted(settings.alert_match.items()))
            if labels in seen:
                raise ValueError(
                    f"targets.{name}.detect.alert_match: the same labels as targets.{seen[labels]} — "
                    "an alert must name one target"
                )
            seen[labels] = name
        return self

    @model_validator(mode="after")
    def _auto_rollback_possible(self) -> Catalog:
        problems: list[str] = []
        for name, spec in self.targets.items():
            if spec.auto_rollback is not None:
                policy = self.policy_for(name)
                problems += auto_rollback_problems(
                    name,
                    spec.auto_rollback,
                    has_channel=self.detect_settings(name).channel is not None,
                    approvers=len(set(policy.approvers)),
                    has_groups=bool(policy.approver_groups),
                )
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @model_validator(mode="after")
    def _groups_resolvable(self) -> Catalog:
        # Every problem is reported by path, so `rollbot check-config` tells the operator where to look.
        problems: list[str] = []
        for group, members in self.groups.items():
            path = f"groups.{group}"
            if not _TARGET_NAME.match(group):
                problems.append(f"{path}: a group name must look like a target name (lowercase, digits, '-', '_')")
            if group in self.targets:
                problems.append(f"{path}: a group can't share its name with a target — rename one of them")
            if len(members) < 2:
                problems.append(f"{path}: a group needs at least two targets")
            unknown = [member for member in members if member not in self.targets]
            if unknown:
                problems.append(f"{path}: unknown target(s) {', '.join(unknown)} — groups list targets by name")
            if len(set(members)) != len(members):
                problems.append(f"{path}: lists a target twice")
            if unknown or len(members) < 2:
                continue
            try:
                strictest_policy([self.policy_for(member) for member in members])
            except ValueError as exc:
                problems.append(f"{path}: {exc}")
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @property
    def names(self) -> list[TargetName]:
        return sorted(self.targets)

    def group(self, name: str) -> tuple[TargetName, ...] | None:
        """The members of group `name`, in the order the catalog lists them; None when it is not a group."""
        return self.groups.get(TargetName(name))

    def policy_for(self, name: TargetName) -> ApprovalPolicy:
        return self.defaults.approvals.merged(self.targets[name].approvals)

    def get(self, name: str) -> Target | None:
        spec = self.targets.get(TargetName(name))
        if spec is None:
            return None
        return Target(
            name=TargetName(name), spec=spec, policy=self.policy_for(TargetName(name)), gitops=self.gitops_mode(name)
        )

    def gitops_mode(self, name: TargetName | str) -> GitOpsMode:
        spec = self.targets.get(TargetName(name))
        return spec.gitops if spec is not None and spec.gitops is not None else self.defaults.gitops

    @property
    def may_pause_reconcilers(self) -> bool:
        """Whether any target's rollback may pause a reconciler without `--suspend-sync` (chart RBAC asks)."""
        return self.defaults.gitops == "suspend" or any(spec.gitops == "suspend" for spec in self.targets.values())

    def auto_rollback_for(self, name: str | None) -> AutoRollbackSettings | None:
        """A catalog target's automatic-rollback opt-in; None (off) for anything else."""
        spec = self.targets.get(TargetName(name)) if name is not None else None
        return spec.auto_rollback if spec is not None else None

    def is_channel_allowed(self, channel: str) -> bool:
        return not self.defaults.allowed_channels or channel in self.defaults.allowed_channels

    # --- failure detection -------------------------------------------------------------------------------------

    def detect_settings(self, name: TargetName | str) -> DetectSettings:
        """The effective detection settings of a catalog target: its own `detect` over `defaults.detect`."""
        return self.defaults.detect.merged(self.targets[TargetName(name)].detect)

    def scope_detect_settings(self, scope: WatchScope) -> DetectSettings:
        """The effective detection settings of workloads a `watch` scope finds outside the catalog."""
        return self.defaults.detect.merged(scope.detect)

    @property
    def is_detection_on(self) -> bool:
        """False when no target and no scope has an active channel: then no replica needs to watch anything."""
        return any(self.detect_settings(name).is_active for name in self.targets) or any(
            self.scope_detect_settings(scope).is_active for scope in self.watch
        )


def describe_validation_errors(error: ValidationError) -> list[str]:
    """Turn pydantic's errors into `path: problem` lines an operator can act on."""
    lines: list[str] = []
    for problem in error.errors():
        path = ".".join(str(part) for part in problem["loc"] if not _is_union_tag(part))
        message = problem["msg"]
        if problem["type"] == "greater_than_equal":
            message = f"must be ≥ {problem['ctx']['ge']}"
        elif problem["type"] == "extra_forbidden":
            message = "unknown field"
        elif problem["type"] == "missing":
            message = "required field is missing"
        elif problem["type"] == "union_tag_invalid":
            message = "backend must be one of helm, kubernetes, ecs"
        elif problem["type"] == "union_tag_not_found":
            message = "backend is required (helm, kubernetes or ecs)"
        elif message.startswith("Value error, "):
            message = message.removeprefix("Value error, ")
        if not path and "\n" in message:  # a model-wide check reports several problems, each with its own path
            lines.extend(message.split("\n"))
            continue
        lines.append(f"{path}: {message}" if path else message)
    return lines


def _is_union_tag(part: object) -> bool:
    return isinstance(part, str) and part in {kind.value for kind in BackendKind}


def parse_catalog(document: object) -> Catalog:
    """Validate an already-loaded YAML document. Raises pydantic's ValidationError."""
    if document is None:
        document = {}
    return Catalog.model_validate(document)


def closest_names(word: str, candidates: Iterable[str], limit: int = 1) -> list[str]:
    """Suggest what the user probably meant (`worksop` → `workshop`)."""
    import difflib

    return difflib.get_close_matches(word, list(candidates), n=limit, cutoff=0.6)


__all__ = [
    "ApprovalOverrides",
    "ApprovalPolicy",
    "AutoRollbackLimits",
    "AutoRollbackSettings",
    "BackendKind",
    "Catalog",
    "ChannelId",
    "Defaults",
    "DetectOverrides",
    "DetectSettings",
    "Duration",
    "EcsTarget",
    "EcsWatch",
    "HelmTarget",
    "HelmWatch",
    "KubernetesDefaults",
    "KubernetesTarget",
    "KubernetesWatch",
    "Namespace",
    "NamespaceList",
    "ObjectName",
    "PositiveDuration",
    "SlackChannel",
    "SlackGroupId",
    "SlackUserId",
    "Target",
    "TargetName",
    "TargetSpec",
    "WatchScope",
    "WorkloadKind",
    "closest_names",
    "describe_validation_errors",
    "format_duration",
    "parse_catalog",
    "parse_duration",
]
