"""Target resolution: catalog names, suggestions, ad-hoc workloads (deny by default) and allowed channels."""

from __future__ import annotations

from typing import Any

import pytest

from bot.core.catalog import (
    ChannelId,
    KubernetesTarget,
    TargetName,
    WorkloadKind,
    parse_catalog,
)
from bot.core.commands import TargetRef
from bot.core.errors import TargetNotAllowed, UnknownTarget
from bot.core.targets import check_channel, closest_target, resolve_target
from tests.core.factories import CATALOG_DOCUMENT, CHANNEL, catalog


def test_a_catalog_name_resolves_to_its_entry_and_policy() -> None:
    resolved = resolve_target(TargetRef.catalog("fluentd"), catalog())
    assert resolved == catalog().get("fluentd")
    assert resolved.policy.required == 2
    assert not resolved.is_ad_hoc


def test_catalog_names_are_matched_case_insensitively() -> None:
    assert resolve_target(TargetRef.catalog("WorkShop"), catalog()).name == "workshop"


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("worksop", "unknown target `worksop` — did you mean `workshop`?"),
        ("Fluentdd", "unknown target `Fluentdd` — did you mean `fluentd`?"),
        ("kubernetes-bootcamp", "unknown target `kubernetes-bootcamp` — did you mean `bootcamp`?"),
        ("workshop-prod", "unknown target `workshop-prod` — did you mean `workshop`?"),
        ("my-svc", "unknown target `my-svc` — did you mean `myservice`?"),
        (
            "zzz",
            "unknown target `zzz` — known targets: `bootcamp`, `elsewhere`, `fluentd`, `myservice`, `workshop`",
        ),
    ],
    ids=["typo", "case-and-typo", "k8s-workload-name", "helm-release-name", "ecs-service-name", "no-close-match"],
)
def test_an_unknown_name_gets_a_suggestion_or_the_list_of_targets(typed: str, message: str) -> None:
    with pytest.raises(UnknownTarget) as raised:
        resolve_target(TargetRef.catalog(typed), catalog())
    assert str(raised.value) == message


def test_a_long_list_of_targets_is_cut_short() -> None:
    targets = {f"app{n:02d}": {"backend": "helm", "release": f"release{n}"} for n in range(14)}
    big = parse_catalog({"defaults": CATALOG_DOCUMENT["defaults"], "targets": targets})
    with pytest.raises(UnknownTarget) as raised:
        resolve_target(TargetRef.catalog("zzz"), big)
    listed = ", ".join(f"`app{n:02d}`" for n in range(10))
    assert str(raised.value) == f"unknown target `zzz` — known targets: {listed} and 4 more"


def test_an_empty_catalog_says_where_targets_go() -> None:
    with pytest.raises(UnknownTarget) as raised:
        resolve_target(TargetRef.catalog("workshop"), parse_catalog(None))
    assert str(raised.value) == "unknown target `workshop` — the catalog has no targets yet (add them under `targets:`)"


def test_closest_target_is_none_without_a_likely_candidate() -> None:
    assert closest_target("zzz", catalog()) is None


def test_an_ad_hoc_workload_in_an_allowed_namespace_resolves_with_the_default_policy() -> None:
    resolved = resolve_target(TargetRef.workload(WorkloadKind.DEPLOYMENT, "web", "default"), catalog())
    assert resolved.name == TargetName("deploy/web -n default")
    assert resolved.is_ad_hoc
    assert resolved.policy == catalog().defaults.approvals
    assert resolved.spec == KubernetesTarget(
        kind=WorkloadKind.DEPLOYMENT, name="web", namespace="default", kube_context="sandbox"
    )


@pytest.mark.parametrize(
    ("ref", "name"),
    [
        (TargetRef.workload(WorkloadKind.DEPLOYMENT, "kubernetes-bootcamp", "default"), "bootcamp"),
        # kube-system is not open to ad-hoc rollbacks, but the catalog names this workload explicitly.
        (TargetRef.workload(WorkloadKind.DAEMONSET, "fluentd", "kube-system"), "fluentd"),
    ],
    ids=["same-context-by-default", "namespace-not-open-to-ad-hoc"],
)
def test_an_ad_hoc_reference_to_a_catalog_workload_gets_the_catalog_target(ref: TargetRef, name: str) -> None:
    resolved = resolve_target(ref, catalog())
    assert resolved == catalog().get(name)
    assert resolved.lock_key == catalog().get(name).lock_key  # type: ignore[union-attr]


def test_a_catalog_workload_in_another_cluster_is_not_the_ad_hoc_one() -> None:
    resolved = resolve_target(TargetRef.workload(WorkloadKind.DEPLOYMENT, "web", "shop"), catalog())
    assert resolved.is_ad_hoc
    assert resolved.name == "deploy/web -n shop"


def test_a_same_named_workload_of_another_kind_is_not_the_catalog_target() -> None:
    resolved = resolve_target(TargetRef.workload(WorkloadKind.STATEFULSET, "kubernetes-bootcamp", "default"), catalog())
    assert resolved.is_ad_hoc


def test_an_ad_hoc_workload_outside_the_allowed_namespaces_is_refused() -> None:
    with pytest.raises(TargetNotAllowed) as raised:
        resolve_target(TargetRef.workload(WorkloadKind.DEPLOYMENT, "web", "prod"), catalog())
    assert str(raised.value) == (
        "namespace `prod` is not open to ad-hoc rollbacks (allowed: `shop`, `default`) — add it to "
        "`defaults.kubernetes.allowed_namespaces` in the catalog, or add a catalog target"
    )


def test_ad_hoc_workloads_are_denied_by_default() -> None:
    with pytest.raises(TargetNotAllowed) as raised:
        resolve_target(TargetRef.workload(WorkloadKind.STATEFULSET, "db"), catalog(kubernetes={}))
    assert str(raised.value) == (
        "ad-hoc targets like `sts/db -n default` are off: list namespaces under "
        "`defaults.kubernetes.allowed_namespaces` in the catalog, or add the workload as a catalog target"
    )


def test_an_ad_hoc_workload_nobody_could_approve_is_refused() -> None:
    document: dict[str, Any] = {
        "defaults": {"approvals": {"required": 1}, "kubernetes": {"allowed_namespaces": ["default"]}},
    }
    with pytest.raises(TargetNotAllowed) as raised:
        resolve_target(TargetRef.workload(WorkloadKind.DEPLOYMENT, "web"), parse_catalog(document))
    assert str(raised.value) == (
        "nobody could approve `deploy/web -n default`: set `defaults.approvals.approvers` or `approver_groups`"
    )


def test_a_target_ref_without_namespace_means_default() -> None:
    # TargetRef always carries a namespace for workloads; a hand-built one is resolved the same way.
    ref = TargetRef.model_construct(name="web", kind=WorkloadKind.DEPLOYMENT, namespace=None)
    assert resolve_target(ref, catalog()).spec == KubernetesTarget(
        kind=WorkloadKind.DEPLOYMENT, name="web", namespace="default", kube_context="sandbox"
    )


def test_requests_from_an_allowed_channel_pass() -> None:
    check_channel(catalog(), CHANNEL)


def test_any_channel_passes_when_the_catalog_lists_none() -> None:
    check_channel(catalog(allowed_channels=[]), ChannelId("C0RANDOM"))


def test_requests_from_another_channel_are_told_where_to_go() -> None:
    with pytest.raises(TargetNotAllowed) as raised:
        check_channel(catalog(allowed_channels=[CHANNEL, "C0OPS"]), ChannelId("C0RANDOM"))
    assert str(raised.value) == (
        "rollbacks are requested in <#C0INCIDENT>, <#C0OPS> — ask there, or add this channel to "
        "`defaults.allowed_channels`"
    )
