"""The catalog's approval policies: who may approve a target's rollback, how many must, for how long a request
stays open (`defaults.approvals` and each target's `approvals`), and the one policy a batch is approved under."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from pydantic import Field, field_validator

from bot.core.catalog_types import _SLACK_GROUP, _SLACK_USER, Duration, SlackGroupId, SlackUserId, _Strict


class ApprovalOverrides(_Strict):
    """Per-target overrides; any field left out falls back to `defaults.approvals`."""

    required: int | None = Field(default=None, ge=1, description="must be ≥ 1")
    approvers: tuple[SlackUserId, ...] | None = None
    approver_groups: tuple[SlackGroupId, ...] | None = None
    allow_self_approval: bool | None = None
    expires_after: Duration | None = None

    @field_validator("approvers")
    @classmethod
    def _user_ids(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        for user in value or ():
            if not _SLACK_USER.match(user):
                raise ValueError(f"{user!r} is not a Slack user ID (like U0AAA)")
        return value

    @field_validator("approver_groups")
    @classmethod
    def _group_ids(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        for group in value or ():
            if not _SLACK_GROUP.match(group):
                raise ValueError(f"{group!r} is not a Slack user group ID (like S0SRE)")
        return value

    @field_validator("expires_after")
    @classmethod
    def _positive(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value <= timedelta(0):
            raise ValueError("must be longer than 0s")
        return value


class ApprovalPolicy(_Strict):
    """Who may approve a rollback of one target, how many must, and for how long the request stays open."""

    required: int = Field(default=1, ge=1)
    approvers: tuple[SlackUserId, ...] = ()
    approver_groups: tuple[SlackGroupId, ...] = ()
    allow_self_approval: bool = False
    # Fail closed: an approval request nobody answers must not stay actionable for hours.
    expires_after: Duration = timedelta(minutes=15)

    @field_validator("expires_after")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be longer than 0s")
        return value

    def merged(self, overrides: ApprovalOverrides | None) -> ApprovalPolicy:
        if overrides is None:
            return self
        update = {k: v for k, v in overrides.model_dump().items() if v is not None}
        return self.model_copy(update=update)


def strictest_policy(policies: Iterable[ApprovalPolicy]) -> ApprovalPolicy:
    """The one policy a batch is approved under: at least as strict as every member's own.

    The most approvals any member requires; self-approval only if every member allows it; the shortest expiry.
    A person counts only if every member accepts them the same way: listed by name for every member, or in a
    user group every member lists. (Someone named for one member and a group member for another does not
    count: deciding that would need every group resolved at approval time, and failing closed is safer.)
    Raises ValueError when nobody, or too few people, could approve the whole batch.
    """
    rules = list(policies)
    if not rules:
        raise ValueError("a batch needs at least one target")
    approvers = [user for user in rules[0].approvers if all(user in rule.approvers for rule in rules[1:])]
    groups = [group for group in rules[0].approver_groups if all(group in rule.approver_groups for rule in rules[1:])]
    required = max(rule.required for rule in rules)
    if not approvers and not groups:
        raise ValueError(
            "no approver or approver group is allowed for every member, so nobody could approve the batch — "
            "list a common approver or group, or split the batch"
        )
    if not groups and len(set(approvers)) < required:
        raise ValueError(
            f"{required} approvals needed but only {len(set(approvers))} approver(s) are allowed for every member"
        )
    return ApprovalPolicy(
        required=required,
        approvers=tuple(approvers),
        approver_groups=tuple(groups),
        allow_self_approval=all(rule.allow_self_approval for rule in rules),
        expires_after=min(rule.expires_after for rule in rules),
    )
