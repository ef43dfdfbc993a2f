"""Matching alerts and pipeline reports to workloads, signatures, and the incident events alerts cause (pure)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from bot.core.catalog import ChannelId, parse_catalog
from bot.core.incidents import (
    AlertFiring,
    AlertResolved,
    IncidentId,
    IncidentSource,
    IncidentState,
    Resolution,
    WorkloadRef,
    advance,
    open_incident,
)
from bot.core.intake import (
    AlertmanagerAlert,
    DeployReport,
    MatchedWorkload,
    Unmatched,
    alert_delivery_key,
    alert_signal,
    match_alert,
    sign,
    signature_problem,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CATALOG = parse_catalog(
    {
        "defaults": {
            "approvals": {"required": 1, "approvers": ["U0ALICE", "U0BOB"]},
            "kubernetes": {"kube_context": "prod"},
        },
        "targets": {
            "bootcamp": {
                "backend": "kubernetes",
                "kind": "Deployment",
                "name": "kubernetes-bootcamp",
                "detect": {"channel": "C0INC", "alert_match": {"service": "bootcamp", "env": "prod"}},
            },
            "workshop": {"backend": "helm", "release": "workshop", "detect": {"channel": "C0INC", "enabled": False}},
            "silent": {"backend": "kubernetes", "kind": "Deployment", "name": "silent"},
        },
        "watch": [{"backend": "kubernetes", "namespaces": ["shop"], "detect": {"channel": "C0SHOP"}}],
    }
)


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ({"rollbot_target": "workshop", "service": "bootcamp", "env": "prod"}, "workshop"),
        ({"service": "bootcamp", "env": "prod", "alertname": "HighErrorRate"}, "bootcamp"),
        ({"namespace": "default", "deployment": "kubernetes-bootcamp"}, "bootcamp"),
        ({"namespace": "shop", "statefulset": "cart"}, None),
    ],
    ids=["rollbot_target-label-wins", "alert_match-all-equal", "namespace-and-deployment", "watched-workload"],
)
def test_an_alert_is_matched_by_the_first_rule_that_applies(labels, expected):
    match = match_alert(labels, CATALOG)
    assert isinstance(match, MatchedWorkload)
    assert match.target == expected
    if expected is None:
        assert (match.workload.kind, match.workload.namespace, match.workload.name) == ("StatefulSet", "shop", "cart")
        assert match.settings.channel == "C0SHOP"


@pytest.mark.parametrize(
    ("labels", "reason"),
    [
        ({"service": "bootcamp"}, "no_target"),  # one matcher of two is not enough
        ({"rollbot_target": "nope"}, "unknown_target"),
        ({"rollbot_target": "silent"}, "no_channel"),
        ({"namespace": "elsewhere", "deployment": "web"}, "no_target"),
        ({"alertname": "Watchdog"}, "no_target"),
    ],
    ids=["partial-alert_match", "unknown-target", "target-without-channel", "unwatched-namespace", "no-labels"],
)
def test_an_alert_naming_nothing_known_is_unmatched_with_a_reason(labels, reason):
    assert match_alert(labels, CATALOG) == Unmatched(reason)


def test_a_target_with_detection_off_but_a_channel_takes_alerts_and_is_not_watched():
    match = match_alert({"rollbot_target": "workshop"}, CATALOG)
    assert isinstance(match, MatchedWorkload)
    assert not match.is_watched
    assert isinstance(match_alert({"rollbot_target": "bootcamp"}, CATALOG), MatchedWorkload)
    assert match_alert({"rollbot_target": "bootcamp"}, CATALOG).is_watched  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("detect", "problem"),
    [
        ({"alert_match": {}}, "empty alert_match"),
        ({"alert_match": {"1bad": "x"}}, "not a Prometheus label name"),
        ({"enabled": False, "alert_match": {"a": "b"}}, "alerts need a channel"),
    ],
    ids=["empty", "bad-label-name", "no-channel"],
)
def test_check_config_refuses_alert_match_that_could_not_work(detect, problem):
    with pytest.raises(ValidationError, match=problem):
        parse_catalog(
            {
                "defaults": {"approvals": {"required": 1, "approvers": ["U0ALICE", "U0BOB"]}},
                "targets": {"web": {"backend": "helm", "release": "web", "detect": detect}},
            }
        )


def test_two_targets_with_the_same_alert_labels_are_refused():
    same = {"channel": "C0INC", "alert_match": {"service": "web"}}
    with pytest.raises(ValidationError, match="an alert must name one target"):
        parse_catalog(
            {
                "defaults": {"approvals": {"required": 1, "approvers": ["U0ALICE", "U0BOB"]}},
                "targets": {
                    "a": {"backend": "helm", "release": "a", "detect": same},
                    "b": {"backend": "helm", "release": "b", "detect": same},
                },
            }
        )


def _alert(status: str = "firing", **labels: str) -> AlertmanagerAlert:
    return AlertmanagerAlert(
        status=status,  # type: ignore[arg-type]
        labels={"alertname": "KubeDeploymentRolloutStuck", **labels},
        annotations={"summary": "rollout stuck"},
        startsAt=NOW,
        fingerprint="abc123",
    )


def test_a_delivery_is_identified_by_group_fingerprint_and_status():
    firing = alert_delivery_key('{}:{alertname="X"}', _alert())
    assert firing == alert_delivery_key('{}:{alertname="X"}', _alert())
    assert firing != alert_delivery_key('{}:{alertname="X"}', _alert("resolved"))
    assert firing != alert_delivery_key('{}:{alertname="Y"}', _alert())


def test_an_alerts_signal_names_the_alert_and_its_summary():
    signal = alert_signal(_alert(), "7")
    assert (signal.reason, signal.revision, signal.revision_number, signal.messages) == (
        "KubeDeploymentRolloutStuck",
        "7",
        7,
        ("rollout stuck",),
    )


SECRET = "s3cret"
BODY = b'{"target":"bootcamp","status":"failed"}'


@pytest.mark.parametrize(
    ("timestamp", "signature", "problem"),
    [
        (str(int(NOW.timestamp())), sign(SECRET, str(int(NOW.timestamp())), BODY), None),
        (str(int(NOW.timestamp())), sign("other", str(int(NOW.timestamp())), BODY), "bad signature"),
        (str(int((NOW - timedelta(minutes=6)).timestamp())), None, "stale"),
        (str(int((NOW + timedelta(minutes=6)).timestamp())), None, "stale"),
        ("yesterday", "v0=00", "Unix seconds"),
        (None, None, "missing"),
    ],
    ids=["genuine", "wrong-secret", "too-old", "from-the-future", "not-a-number", "unsigned"],
)
def test_a_pipeline_signature_must_be_genuine_and_fresh(timestamp, signature, problem):
    if signature is None and timestamp is not None:
        signature = sign(SECRET, timestamp, BODY)  # genuine but at the wrong time
    found = signature_problem(SECRET, timestamp, signature, BODY, NOW)
    assert (found is None) if problem is None else (problem in (found or ""))


@pytest.mark.parametrize("url", ["javascript:alert(1)", "https://ci.example/run|evil", "https://a b"])
def test_a_report_link_must_be_a_plain_http_url(url):
    with pytest.raises(ValidationError, match="http"):
        DeployReport(target="bootcamp", status="failed", url=url)


WORKLOAD = WorkloadRef(backend="kubernetes", location="prod", kind="Deployment", namespace="default", name="web")


def _alert_incident():
    return open_incident(
        IncidentId("inc-1"),
        WORKLOAD,
        alert_signal(_alert(), "3"),
        ChannelId("C0INC"),
        NOW,
        source=IncidentSource.ALERTMANAGER,
        alerts_firing=("KubeDeploymentRolloutStuck",),
    ).incident


def test_an_alert_incident_says_its_source_in_the_card_metadata():
    assert _alert_incident().metadata_payload()["source"] == "alertmanager"


def test_the_same_alert_firing_again_changes_nothing_and_a_new_one_is_noted():
    incident = _alert_incident()
    assert not advance(incident, AlertFiring("KubeDeploymentRolloutStuck"), NOW).changed
    other = advance(incident, AlertFiring("HighErrorRate"), NOW)
    assert other.changed
    assert other.incident.alerts_firing == ("KubeDeploymentRolloutStuck", "HighErrorRate")
    assert other.incident.version == incident.version + 1


def test_an_unwatched_workload_resolves_with_its_alert():
    incident = _alert_incident()
    later = NOW + timedelta(minutes=3)
    ended = advance(incident, AlertResolved("KubeDeploymentRolloutStuck", resolves_incident=True), later).incident
    assert (ended.state, ended.resolution, ended.resolved_at) == (IncidentState.RESOLVED, Resolution.RECOVERED, later)
    assert ended.version == incident.version + 1


def test_a_watched_workload_only_notes_the_alerts_end():
    incident = _alert_incident()
    noted = advance(incident, AlertResolved("KubeDeploymentRolloutStuck", resolves_incident=False), NOW)
    assert noted.changed
    assert noted.incident.state is IncidentState.OPEN
    assert "resolved" in noted.incident.timeline[-1].text
    assert not advance(noted.incident, AlertResolved("KubeDeploymentRolloutStuck", False), NOW).changed


def test_an_unwatched_incident_stays_open_while_another_alert_fires():
    incident = advance(_alert_incident(), AlertFiring("HighErrorRate"), NOW).incident
    still = advance(incident, AlertResolved("KubeDeploymentRolloutStuck", resolves_incident=True), NOW).incident
    assert still.state is IncidentState.OPEN
    assert still.alerts_firing == ("HighErrorRate",)


def test_the_card_says_who_reported_it_and_which_alerts_fire():
    from bot.core.messages.incidents import incident_card

    alert_card = json.dumps(incident_card(_alert_incident(), NOW).blocks)
    assert "*Reported by:* Alertmanager" in alert_card
    assert "firing: `KubeDeploymentRolloutStuck`" in alert_card
    watched = open_incident(IncidentId("inc-2"), WORKLOAD, alert_signal(_alert(), "3"), ChannelId("C0INC"), NOW)
    with_alert = advance(watched.incident, AlertFiring("HighErrorRate"), NOW).incident
    assert "Reported by" not in json.dumps(incident_card(watched.incident, NOW).blocks)
    assert "alerts `HighErrorRate`" in json.dumps(incident_card(with_alert, NOW).blocks)
