"""The catalog's detection keys: `defaults.detect`, per-target `detect`, and `watch` scopes."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from bot.core.catalog import (
    BackendKind,
    Catalog,
    EcsWatch,
    KubernetesWatch,
    describe_validation_errors,
    parse_catalog,
)
from bot.core.detected_targets import FoundWorkload, detect_settings_for, find_target, no_button_reason
from tests.core.factories import CATALOG_DOCUMENT

APPROVERS = {"approvals": {"approvers": ["U0AAA"]}}

# The contract, verbatim.
CONTRACT: dict[str, Any] = {
    "defaults": {
        **APPROVERS,
        "kubernetes": {"kube_context": "sandbox", "allowed_namespaces": ["default"]},
        "detect": {"channel": "C0INCIDENT", "failing_for": "2m", "healthy_for": "2m", "stall_after": "10m"},
    },
    "targets": {
        "bootcamp": {
            "backend": "kubernetes",
            "kind": "Deployment",
            "name": "kubernetes-bootcamp",
            "namespace": "default",
            "detect": {"channel": "C0WEB"},
        },
        "legacy": {
            "backend": "kubernetes",
            "kind": "Deployment",
            "name": "legacy",
            "namespace": "default",
            "detect": {"enabled": False},
        },
        "workshop": {"backend": "helm", "release": "workshop-prod", "namespace": "shop"},
        "payments": {"backend": "ecs", "cluster": "default", "service": "payments", "region": "us-east-1"},
    },
    "watch": [
        {"backend": "kubernetes", "kube_context": "sandbox", "namespaces": ["*"]},
        {"backend": "helm", "kube_context": "sandbox", "namespaces": ["*"]},
        {"backend": "ecs", "region": "us-east-1", "clusters": ["default"]},
    ],
}


def problems(document: dict[str, Any]) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        parse_catalog(document)
    return describe_validation_errors(caught.value)


def deployment(name: str, namespace: str = "default", context: str | None = "sandbox") -> FoundWorkload:
    return FoundWorkload(
        backend=BackendKind.KUBERNETES, location=context, kind="Deployment", namespace=namespace, name=name
    )


def test_the_contract_parses_and_a_target_channel_overrides_the_default() -> None:
    catalog = parse_catalog(CONTRACT)
    bootcamp = catalog.detect_settings("bootcamp")
    assert bootcamp.channel == "C0WEB"
    assert bootcamp.is_active
    assert bootcamp.failing_for == timedelta(minutes=2)
    assert bootcamp.stall_after == timedelta(minutes=10)
    assert catalog.detect_settings("workshop").channel == "C0INCIDENT"
    assert len(catalog.watch) == 3
    assert catalog.is_detection_on


def test_a_target_can_opt_out_and_keeps_the_default_clocks() -> None:
    legacy = parse_catalog(CONTRACT).detect_settings("legacy")
    assert not legacy.is_active
    assert legacy.channel == "C0INCIDENT"
    assert legacy.healthy_for == timedelta(minutes=2)


def test_a_target_overrides_one_clock_only() -> None:
    document = {**CONTRACT, "targets": {"slow": {**CONTRACT["targets"]["bootcamp"], "detect": {"failing_for": "5m"}}}}
    slow = parse_catalog(document).detect_settings("slow")
    assert slow.failing_for == timedelta(minutes=5)
    assert slow.channel == "C0INCIDENT"
    assert slow.stall_after == timedelta(minutes=10)


def test_no_channel_anywhere_means_detection_is_off() -> None:
    catalog = parse_catalog({"defaults": APPROVERS, "targets": {"a": {"backend": "helm", "release": "a"}}})
    assert not catalog.detect_settings("a").is_active
    assert not catalog.is_detection_on
    assert not parse_catalog(None).is_detection_on


def test_a_scope_alone_with_a_channel_turns_detection_on() -> None:
    catalog = parse_catalog({"watch": [{"backend": "kubernetes", "detect": {"channel": "C0PLATFORM"}}]})
    assert catalog.is_detection_on
    scope = catalog.watch[0]
    assert isinstance(scope, KubernetesWatch)
    assert scope.namespaces == ("*",)


def test_a_catalog_workload_found_by_a_watcher_maps_back_to_its_target() -> None:
    catalog = parse_catalog(CONTRACT)
    assert find_target(catalog, deployment("kubernetes-bootcamp")) == "bootcamp"
    assert detect_settings_for(catalog, deployment("kubernetes-bootcamp")) == catalog.detect_settings("bootcamp")
    # Same name in another context, namespace or kind: not the catalog target.
    assert find_target(catalog, deployment("kubernetes-bootcamp", context="prod")) is None
    assert find_target(catalog, deployment("kubernetes-bootcamp", namespace="shop")) is None
    daemonset = deployment("kubernetes-bootcamp").model_copy(update={"kind": "DaemonSet"})
    assert find_target(catalog, daemonset) is None


def test_helm_and_ecs_workloads_map_back_to_their_targets() -> None:
    catalog = parse_catalog(CONTRACT)
    release = FoundWorkload(
        backend=BackendKind.HELM, location="sandbox", kind="HelmRelease", namespace="shop", name="workshop-prod"
    )
    service = FoundWorkload(
        backend=BackendKind.ECS, location="us-east-1", kind="EcsService", namespace="default", name="payments"
    )
    assert find_target(catalog, release) == "workshop"
    assert find_target(catalog, service) == "payments"
    assert find_target(catalog, service.model_copy(update={"location": "eu-west-1"})) is None


def test_an_ecs_target_without_region_matches_the_bots_own_region_only() -> None:
    document = {"defaults": APPROVERS, "targets": {"svc": {"backend": "ecs", "service": "svc"}}}
    catalog = parse_catalog(document)
    found = FoundWorkload(
        backend=BackendKind.ECS, location="us-east-1", kind="EcsService", namespace="default", name="svc"
    )
    assert find_target(catalog, found) is None
    assert find_target(catalog, found.model_copy(update={"default_location": "us-east-1"})) == "svc"


def test_a_workload_outside_the_catalog_takes_its_scopes_settings() -> None:
    catalog = parse_catalog(CONTRACT)
    settings = detect_settings_for(catalog, deployment("other", namespace="shop"))
    assert settings is not None
    assert settings.channel == "C0INCIDENT"
    assert detect_settings_for(catalog, deployment("other", context="prod")) is None


def test_a_scope_limited_to_namespaces_covers_only_those() -> None:
    document = {
        "defaults": {"detect": {"channel": "C0INCIDENT"}},
        "watch": [
            {"backend": "kubernetes", "namespaces": ["shop"], "detect": {"channel": "C0SHOP"}},
            {"backend": "ecs", "region": "us-east-1", "clusters": ["prod"]},
        ],
    }
    catalog = parse_catalog(document)
    shop = detect_settings_for(catalog, deployment("web", namespace="shop", context=None))
    assert shop is not None
    assert shop.channel == "C0SHOP"
    assert detect_settings_for(catalog, deployment("web", namespace="other", context=None)) is None
    prod = FoundWorkload(backend=BackendKind.ECS, location="us-east-1", kind="EcsService", namespace="prod", name="a")
    assert detect_settings_for(catalog, prod) is not None
    assert detect_settings_for(catalog, prod.model_copy(update={"namespace": "dev"})) is None
    assert isinstance(catalog.watch[1], EcsWatch)


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (
            {"defaults": {"detect": {"channel": "#incidents"}}},
            "defaults.detect.channel: '#incidents' is not a Slack channel ID (like C0INCIDENT)",
        ),
        ({"defaults": {"detect": {"failing_for": "soon"}}}, "defaults.detect.failing_for: expected a duration"),
        ({"defaults": {"detect": {"healthy_for": "0s"}}}, "defaults.detect.healthy_for: must be longer than 0s"),
        ({"defaults": {"detect": {"chanel": "C0X"}}}, "defaults.detect.chanel: unknown field"),
        (
            {"defaults": APPROVERS, "targets": {"a": {"backend": "helm", "release": "a", "detect": {"enabled": True}}}},
            "targets.a.detect.enabled: detection is enabled but no channel is set",
        ),
        ({"watch": [{"backend": "argo"}]}, "watch.0: backend must be one of helm, kubernetes, ecs"),
        ({"watch": [{"namespaces": ["*"]}]}, "watch.0: backend is required"),
        ({"watch": [{"backend": "kubernetes", "namespaces": []}]}, "watch.0.namespaces: list at least one namespace"),
        (
            {"watch": [{"backend": "helm", "namespaces": ["*", "shop"]}]},
            'watch.0.namespaces: "*" already means every namespace; list it alone',
        ),
        (
            {"watch": [{"backend": "kubernetes", "namespaces": ["Shop"]}]},
            "watch.0.namespaces: 'Shop' is not a valid Kubernetes namespace",
        ),
        ({"watch": [{"backend": "ecs", "clusters": []}]}, "watch.0.clusters: list at least one ECS cluster"),
        ({"watch": [{"backend": "ecs", "namespaces": ["*"]}]}, "watch.0.namespaces: unknown field"),
        (
            {"watch": [{"backend": "kubernetes", "detect": {"enabled": True}}]},
            "watch.0.detect.enabled: detection is enabled but no channel is set",
        ),
    ],
    ids=[
        "channel-name-not-id",
        "bad-duration",
        "zero-duration",
        "typo",
        "enabled-without-channel",
        "unknown-backend",
        "missing-backend",
        "empty-namespaces",
        "star-with-others",
        "invalid-namespace",
        "no-clusters",
        "ecs-namespaces",
        "scope-enabled-without-channel",
    ],
)
def test_bad_detection_keys_are_reported_with_their_path(document: dict[str, Any], expected: str) -> None:
    lines = problems(document)
    assert any(line.startswith(expected) for line in lines), lines


def test_existing_catalogs_without_detection_keys_still_parse() -> None:
    catalog = Catalog.model_validate(CATALOG_DOCUMENT)
    assert catalog.watch == ()
    assert not catalog.is_detection_on


def test_catalog_targets_and_ad_hoc_namespaces_get_the_button_others_are_told_why_not() -> None:
    catalog = parse_catalog(CONTRACT)
    assert no_button_reason(catalog, deployment("kubernetes-bootcamp")) is None
    assert no_button_reason(catalog, deployment("other", namespace="default")) is None
    assert no_button_reason(catalog, deployment("other", namespace="shop")) == (
        "namespace `shop` is not open to ad-hoc rollbacks — add it to `defaults.kubernetes.allowed_namespaces`, "
        "or add the workload as a catalog target"
    )
    release = FoundWorkload(backend=BackendKind.HELM, location="sandbox", kind="HelmRelease", namespace="x", name="y")
    assert no_button_reason(catalog, release) == (
        "this helm workload is not a catalog target; add it under `targets:` to roll back here"
    )


def test_an_ad_hoc_namespace_without_approvers_gets_no_button() -> None:
    document = {"defaults": {"kubernetes": {"allowed_namespaces": ["shop"]}}}
    reason = no_button_reason(parse_catalog(document), deployment("web", namespace="shop", context=None))
    assert reason == "nobody could approve it: set `defaults.approvals.approvers` or `approver_groups`"
