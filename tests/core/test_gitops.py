"""Who reconciles a target, whether it would revert a rollback, the catalog's `gitops:` and the pause patches."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from bot.core.catalog import parse_catalog
from bot.core.command_gitops import ResumeSyncCommand, parse_resume_sync, suspend_requested
from bot.core.commands import RollbackCommand, TargetRef, parse_command
from bot.core.errors import CommandSyntaxError
from bot.core.gitops import (
    Reconciler,
    ReconcilerKind,
    ReconcilerRef,
    decide,
    describe,
    helm_release_owner,
    owner_of,
    pause_patch,
    previous_settings,
    reconciler_of,
    restore_patch,
)
from tests.core.factories import CATALOG_DOCUMENT

ARGO = ReconcilerRef(kind=ReconcilerKind.ARGOCD, namespace="argocd", name="shop")
KS = ReconcilerRef(kind=ReconcilerKind.FLUX_KUSTOMIZATION, namespace="flux-system", name="cart")
HR = ReconcilerRef(kind=ReconcilerKind.FLUX_HELMRELEASE, namespace="flux-system", name="pay")


def deployment(labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "shop", "namespace": "default", "labels": labels or {}}
    meta["annotations"] = annotations or {}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta}


def merge(target: Any, patch: Any) -> Any:
    """RFC 7386, to check what a patch does to the object the API server holds."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge(result.get(key), value)
    return result


# --- owners ----------------------------------------------------------------------------------------------------


def test_the_argo_tracking_annotation_names_the_application_in_argo_cds_namespace() -> None:
    obj = deployment(annotations={"argocd.argoproj.io/tracking-id": "shop:apps/Deployment:default/shop"})
    assert owner_of(obj, "apps/v1", "Deployment") == ARGO


def test_an_application_outside_argo_cds_namespace_is_tracked_as_namespace_underscore_name() -> None:
    obj = deployment(annotations={"argocd.argoproj.io/tracking-id": "team-a_shop:apps/Deployment:default/shop"})
    assert owner_of(obj, "apps/v1", "Deployment") == ReconcilerRef(
        kind=ReconcilerKind.ARGOCD, namespace="team-a", name="shop"
    )


def test_a_tracking_id_copied_from_another_object_does_not_make_this_one_tracked() -> None:
    obj = deployment(annotations={"argocd.argoproj.io/tracking-id": "shop:apps/Deployment:default/other"})
    assert owner_of(obj, "apps/v1", "Deployment") is None


def test_the_label_tracking_method_is_read_when_there_is_no_annotation() -> None:
    assert owner_of(deployment(labels={"app.kubernetes.io/instance": "shop"}), "apps/v1", "Deployment") == ARGO


@pytest.mark.parametrize(
    ("group", "expected"),
    [("kustomize.toolkit.fluxcd.io", ReconcilerKind.FLUX_KUSTOMIZATION), ("helm.toolkit.fluxcd.io", HR.kind)],
)
def test_flux_owner_labels_name_the_kustomization_or_helmrelease(group: str, expected: ReconcilerKind) -> None:
    obj = deployment(labels={f"{group}/name": "cart", f"{group}/namespace": "flux-system"})
    assert owner_of(obj, "apps/v1", "Deployment") == ReconcilerRef(kind=expected, namespace="flux-system", name="cart")


def test_an_object_nobody_reconciles_has_no_owner() -> None:
    assert owner_of(deployment(labels={"app": "shop"}), "apps/v1", "Deployment") is None


def test_a_helmrelease_is_matched_by_its_release_name_and_target_namespace() -> None:
    explicit = {"metadata": {"name": "pay", "namespace": "flux-system"}, "spec": {"releaseName": "pay"}}
    composed = {"metadata": {"name": "api", "namespace": "flux-system"}, "spec": {"targetNamespace": "prod"}}
    assert helm_release_owner([explicit, composed], "pay", "flux-system") is explicit
    assert helm_release_owner([explicit, composed], "prod-api", "prod") is composed
    assert helm_release_owner([explicit, composed], "api", "prod") is None


# --- settings, decisions and words -----------------------------------------------------------------------------


def argo_app(automated: dict[str, Any] | None) -> dict[str, Any]:
    return {"spec": {"syncPolicy": {} if automated is None else {"automated": automated}}}


@pytest.mark.parametrize(
    ("automated", "on", "heals"),
    [
        ({"prune": True, "selfHeal": True}, True, True),
        ({"selfHeal": True, "enabled": False}, False, False),
        ({}, True, False),
        (None, False, False),
    ],
)
def test_argo_automated_sync_is_on_unless_absent_or_enabled_false(
    automated: dict[str, Any] | None, on: bool, heals: bool
) -> None:
    reconciler = reconciler_of(ARGO, argo_app(automated))
    assert (reconciler.automated, reconciler.self_heal) == (on, heals)


def test_the_preview_line_says_who_reverts_the_rollback_and_how_soon() -> None:
    healing = reconciler_of(ARGO, argo_app({"prune": True, "selfHeal": True}))
    assert describe(healing) == (
        "reconciled by Argo CD application argocd/shop (automated, self-heal): it will revert this rollback within "
        "seconds"
    )
    flux = reconciler_of(KS, {"spec": {"interval": "5m"}})
    assert describe(flux) == (
        "reconciled by Flux Kustomization flux-system/cart (reconciles every 5m): it will revert this rollback at "
        "its next reconciliation"
    )
    assert "will not revert" in describe(reconciler_of(KS, {"spec": {"suspend": True}}))


@pytest.mark.parametrize(
    ("mode", "flag", "action"),
    [("refuse", False, "refuse"), ("refuse", True, "suspend"), ("warn", False, "warn"), ("suspend", False, "suspend")],
)
def test_the_catalog_mode_and_the_flag_decide_what_a_reverting_reconciler_means(
    mode: Any, flag: bool, action: str
) -> None:
    reconciler = Reconciler(ref=ARGO, automated=True, self_heal=True)
    assert decide(reconciler, mode, flag).action == action


def test_a_target_without_reconciler_or_with_a_paused_one_proceeds() -> None:
    assert decide(None, "refuse", False).action == "proceed"
    assert decide(None, "refuse", False).line is None
    assert decide(None, "refuse", True).line == (
        "no Argo CD or Flux reconciler manages it: `--suspend-sync` has nothing to pause"
    )
    paused = Reconciler(ref=KS, automated=False)
    assert decide(paused, "refuse", False).action == "proceed"


@pytest.mark.parametrize(
    "automated",
    [{"prune": True, "selfHeal": True}, {"selfHeal": True, "enabled": True}, {"prune": False}],
)
def test_resume_restores_exactly_the_argo_sync_policy_the_pause_recorded(automated: dict[str, Any]) -> None:
    app = argo_app(automated)
    recorded = previous_settings(ARGO, app)
    paused = merge(app, pause_patch(ARGO))
    assert paused["spec"]["syncPolicy"]["automated"]["enabled"] is False
    assert not reconciler_of(ARGO, paused).automated
    assert merge(paused, restore_patch(ARGO, recorded)) == app


@pytest.mark.parametrize("spec", [{"interval": "1m"}, {"interval": "1m", "suspend": False}])
def test_resume_restores_exactly_the_flux_suspend_field_the_pause_recorded(spec: dict[str, Any]) -> None:
    obj = {"spec": spec}
    recorded = previous_settings(HR, obj)
    paused = merge(obj, pause_patch(HR))
    assert paused["spec"]["suspend"] is True
    assert merge(paused, restore_patch(HR, recorded)) == obj


# --- catalog and grammar ---------------------------------------------------------------------------------------


def test_gitops_defaults_to_refuse_with_a_four_hour_reminder_and_is_set_per_target() -> None:
    document = {**CATALOG_DOCUMENT, "targets": dict(CATALOG_DOCUMENT["targets"])}
    catalog = parse_catalog(document)
    assert catalog.defaults.gitops == "refuse"
    assert catalog.defaults.gitops_reminder.total_seconds() == 4 * 3600
    name = catalog.names[0]
    document["targets"][name] = {**document["targets"][name], "gitops": "suspend"}
    document["defaults"] = {**document["defaults"], "gitops": "warn", "gitops_reminder": "30m"}
    catalog = parse_catalog(document)
    target = catalog.get(name)
    assert target is not None
    assert target.gitops == "suspend"
    assert catalog.get(catalog.names[1]).gitops == "warn"  # type: ignore[union-attr]
    assert catalog.may_pause_reconcilers


def test_check_config_names_a_wrong_gitops_value() -> None:
    document = {**CATALOG_DOCUMENT, "defaults": {**CATALOG_DOCUMENT["defaults"], "gitops": "pause"}}
    with pytest.raises(ValidationError) as error:
        parse_catalog(document)
    assert "defaults.gitops" in str(error.value)


def test_suspend_sync_is_taken_out_of_the_backend_options() -> None:
    command = parse_command("workshop --suspend-sync --deregister")
    assert isinstance(command, RollbackCommand)
    wanted, rest = suspend_requested(command)
    assert wanted
    assert rest.options == {"deregister": True}
    with pytest.raises(CommandSyntaxError, match="takes no value"):
        suspend_requested(parse_command("workshop --suspend-sync=yes"))  # type: ignore[arg-type]


def test_resume_sync_takes_one_target() -> None:
    assert parse_resume_sync("resume-sync workshop") == ResumeSyncCommand(target=TargetRef.catalog("workshop"))
    assert parse_resume_sync("workshop 3") is None
    with pytest.raises(CommandSyntaxError, match="needs a target"):
        parse_resume_sync("resume-sync")
