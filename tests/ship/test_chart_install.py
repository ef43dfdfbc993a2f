"""The chart, with the real helm: it lints, renders for every value set, and installs into kubesim.

The four value sets live in `helm-chart/ci/` (chart-testing's convention), so CI, operators and these tests
share them. Each is installed with `helm install` into a fresh kubesim; the Deployment, its Secret and
ConfigMap references, the RBAC and the probes are then read back from the cluster with the real kubectl.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.settings import load_catalog_file
from tests.ship.conftest import CHART, Helm, cluster_wide_but_gitops_reader, env_of, find, of_kind

pytestmark = [pytest.mark.needs_helm, pytest.mark.needs_kubectl]

CI = CHART / "ci"
VALUE_SETS = ["socket", "http-ingress", "external-redis", "bundled-redis"]
RELEASE = "rb"
NAMESPACE = "rollbot"
FULLNAME = "rb-rollbot"


def values_of(name: str) -> dict[str, Any]:
    return yaml.safe_load((CI / f"{name}-values.yaml").read_text(encoding="utf-8"))


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_helm_lint_strict_passes(value_set: str, helm: Helm) -> None:
    result = helm("lint", "--strict", str(CHART), "-f", str(CI / f"{value_set}-values.yaml"))
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout, result.stdout


def test_lint_without_credentials_names_exactly_what_is_missing(helm: Helm) -> None:
    result = helm("lint", str(CHART), check=False)
    assert result.returncode != 0
    assert "/slack/botToken" in result.stdout
    assert "/slack/appToken" in result.stdout
    assert "/redis/url" in result.stdout


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_template_renders_the_bot_for_every_value_set(
    value_set: str, render: Callable[..., list[dict[str, Any]]]
) -> None:
    objects = render(values_of(value_set))
    deployment = find(objects, "Deployment", FULLNAME)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["serve"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    # Nothing in the rendering is a wildcard or a ClusterRole unless asked for (but the GitOps reader, ADR 0020).
    assert not cluster_wide_but_gitops_reader(objects)
    assert not cluster_wide_but_gitops_reader(objects, "ClusterRoleBinding")
    # Tokens never land in a ConfigMap.
    for config_map in of_kind(objects, "ConfigMap"):
        assert "xoxb-" not in yaml.safe_dump(config_map)
        assert "xapp-" not in yaml.safe_dump(config_map)


def test_service_monitor_gets_a_metrics_service_even_in_socket_mode(
    render: Callable[..., list[dict[str, Any]]],
) -> None:
    values = values_of("socket") | {"metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}}}
    objects = render(values)
    monitor = find(objects, "ServiceMonitor", FULLNAME)
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "30s"}]
    service = find(objects, "Service", FULLNAME)
    assert service["spec"]["type"] == "ClusterIP"
    assert not of_kind(objects, "Ingress")


def test_http_network_policy_admits_slack_traffic_only_from_the_ingress_controller(
    render: Callable[..., list[dict[str, Any]]],
) -> None:
    policy = find(render(values_of("http-ingress")), "NetworkPolicy", FULLNAME)
    (rule,) = policy["spec"]["ingress"]
    assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert rule["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}]
    egress_ports = {port["port"] for r in policy["spec"]["egress"] for port in r.get("ports", [])}
    assert egress_ports == {53, 443, 6443, 6379}


def test_a_sentinel_url_opens_the_sentinels_port_too(render: Callable[..., list[dict[str, Any]]]) -> None:
    values = values_of("http-ingress")
    values["redis"] = {**values.get("redis", {}), "url": "redis+sentinel://:pw@sentinel-0:26379,sentinel-1:26379/m"}
    values["redis"].pop("existingSecret", None)
    policy = find(render(values), "NetworkPolicy", FULLNAME)
    egress_ports = {port["port"] for r in policy["spec"]["egress"] for port in r.get("ports", [])}
    assert egress_ports == {53, 443, 6443, 6379, 26379}


def test_socket_mode_installs_with_tokens_catalog_rbac_and_probes(cluster: Helm) -> None:
    for namespace in ("shop", "sandbox"):
        cluster.kubectl("create", "namespace", namespace)
    install(cluster, "socket")

    container, pod_spec = bot_container(cluster)
    env = env_of(container)
    assert "SLACK_APP_TOKEN" in env
    assert "SLACK_SIGNING_SECRET" not in env
    assert secret_value(cluster, env["SLACK_BOT_TOKEN"]) == "xoxb-0001-chart-test"
    assert secret_value(cluster, env["SLACK_APP_TOKEN"]) == "xapp-1-A0ROLLBOT-0001-chart-test"
    assert secret_value(cluster, env["REDIS_URL"]) == "rediss://:s3cret@redis.example.internal:6380/0"
    assert pod_spec["automountServiceAccountToken"] is True
    assert_catalog_loads(cluster, pod_spec, expected_targets={"workshop", "bootcamp", "fluentd", "payments", "ledger"})
    assert_hardened(container, pod_spec)
    # No Service, no Ingress: Socket Mode needs nothing to reach the pod.
    assert not cluster.get_json("services", "-n", NAMESPACE)["items"]
    assert not cluster.get_json("ingresses", "-n", NAMESPACE)["items"]
    # A Role + RoleBinding in every namespace the catalog names in this cluster; none in the other cluster's.
    roles = cluster.get_json("roles", "-A", "-l", "app.kubernetes.io/instance=rb")["items"]
    assert sorted(role["metadata"]["namespace"] for role in roles) == ["default", "kube-system", "sandbox", "shop"]
    bindings = cluster.get_json("rolebindings", "-A", "-l", "app.kubernetes.io/instance=rb")["items"]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["default", "kube-system", "sandbox", "shop"]
    for binding in bindings:
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": FULLNAME}
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE}]
    cluster.get_json("serviceaccount", FULLNAME, "-n", NAMESPACE)
    netpol = cluster.get_json("networkpolicy", FULLNAME, "-n", NAMESPACE)
    assert netpol["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert not netpol["spec"].get("ingress")
    assert_rolls_out(cluster)


def test_http_mode_installs_service_ingress_pdb_and_spread(cluster: Helm) -> None:
    cluster.kubectl("create", "namespace", "shop")
    cluster.kubectl("create", "namespace", NAMESPACE)
    cluster.kubectl(
        "create",
        "secret",
        "generic",
        "rollbot-slack",
        "-n",
        NAMESPACE,
        "--from-literal=SLACK_BOT_TOKEN=xoxb-from-existing",
        "--from-literal=SLACK_SIGNING_SECRET=signing-from-existing",
    )
    install(cluster, "http-ingress")

    container, pod_spec = bot_container(cluster)
    env = env_of(container)
    assert "SLACK_APP_TOKEN" not in env
    assert secret_value(cluster, env["SLACK_SIGNING_SECRET"]) == "signing-from-existing"
    assert secret_value(cluster, env["SLACK_BOT_TOKEN"]) == "xoxb-from-existing"
    assert env["ROLLBOT_PORT"] == "3000"
    assert_hardened(container, pod_spec)
    assert_catalog_loads(cluster, pod_spec, expected_targets={"checkout", "cart"})
    service = cluster.get_json("service", FULLNAME, "-n", NAMESPACE)
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    ingress = cluster.get_json("ingress", FULLNAME, "-n", NAMESPACE)
    rule = ingress["spec"]["rules"][0]
    assert rule["host"] == "rollbot.example.com"
    assert [p["path"] for p in rule["http"]["paths"]] == ["/slack/events"]
    assert ingress["spec"]["tls"] == [{"hosts": ["rollbot.example.com"], "secretName": "rollbot-tls"}]
    pdb = cluster.get_json("pdb", FULLNAME, "-n", NAMESPACE)
    assert pdb["spec"]["maxUnavailable"] == 1
    spread = pod_spec["topologySpreadConstraints"]
    assert {c["topologyKey"] for c in spread} == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}
    annotations = cluster.get_json("deployment", FULLNAME, "-n", NAMESPACE)["spec"]["template"]["metadata"][
        "annotations"
    ]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "3000"
    roles = cluster.get_json("roles", "-A", "-l", "app.kubernetes.io/instance=rb")["items"]
    assert [role["metadata"]["namespace"] for role in roles] == ["shop"]
    # The chart's own Secret holds only the Redis URL: the operator's Secret is the only one with tokens.
    assert set(cluster.get_json("secret", FULLNAME, "-n", NAMESPACE)["data"]) == {"REDIS_URL"}
    assert_rolls_out(cluster, replicas=2)


def test_external_redis_and_existing_catalog_configmap_are_referenced_not_rendered(
    cluster: Helm, tmp_path: Path
) -> None:
    cluster.kubectl("create", "namespace", "shop")
    cluster.kubectl("create", "namespace", NAMESPACE)
    cluster.kubectl(
        "create", "secret", "generic", "rollbot-redis", "-n", NAMESPACE, "--from-literal=url=redis://:pw@redis:6379/2"
    )
    catalog = tmp_path / "targets.yaml"
    catalog.write_text(
        yaml.safe_dump(
            {
                "defaults": {"approvals": {"approvers": ["U0ALICE"]}},
                "targets": {"workshop": {"backend": "helm", "release": "workshop", "namespace": "shop"}},
            }
        ),
        encoding="utf-8",
    )
    cluster.kubectl("create", "configmap", "rollbot-catalog", "-n", NAMESPACE, f"--from-file=targets.yaml={catalog}")
    install(cluster, "external-redis")

    container, pod_spec = bot_container(cluster)
    env = env_of(container)
    assert env["REDIS_URL"] == {"secretKeyRef": {"name": "rollbot-redis", "key": "url"}}
    assert secret_value(cluster, env["REDIS_URL"]) == "redis://:pw@redis:6379/2"
    assert secret_value(cluster, env["SLACK_APP_TOKEN"]) == "xapp-1-A0ROLLBOT-0001-chart-test"
    assert_catalog_loads(cluster, pod_spec, expected_targets={"workshop"})
    config_maps = cluster.kubectl("get", "configmaps", "-n", NAMESPACE, "-o", "name").stdout.split()
    assert "configmap/rb-rollbot-catalog" not in config_maps
    role = cluster.get_json("role", FULLNAME, "-n", "shop")
    assert any("secrets" in rule["resources"] for rule in role["rules"])
    assert_rolls_out(cluster)


def test_bundled_redis_installs_a_statefulset_only_the_bot_may_reach(cluster: Helm) -> None:
    install(cluster, "bundled-redis")

    container, pod_spec = bot_container(cluster)
    env = env_of(container)
    assert env["REDIS_URL"] == "redis://rb-rollbot-redis:6379/0"
    assert secret_value(cluster, env["SLACK_BOT_TOKEN"]) == "xoxb-0001-chart-test"
    assert_hardened(container, pod_spec)
    assert_catalog_loads(cluster, pod_spec, expected_targets={"payments"})
    # An ECS-only catalog needs no Kubernetes API access at all: no Role, no token in the pod.
    assert not cluster.get_json("roles", "-A", "-l", "app.kubernetes.io/instance=rb")["items"]
    assert pod_spec["automountServiceAccountToken"] is False
    redis = cluster.get_json("statefulset", "rb-rollbot-redis", "-n", NAMESPACE)
    claim = redis["spec"]["volumeClaimTemplates"][0]
    assert claim["spec"]["resources"]["requests"]["storage"] == "2Gi"
    assert redis["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    service = cluster.get_json("service", "rb-rollbot-redis", "-n", NAMESPACE)
    assert service["spec"]["ports"][0]["port"] == 6379
    policy = cluster.get_json("networkpolicy", "rb-rollbot-redis", "-n", NAMESPACE)
    allowed = policy["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"]
    assert allowed["app.kubernetes.io/component"] == "bot"
    bot_policy = cluster.get_json("networkpolicy", FULLNAME, "-n", NAMESPACE)
    redis_egress = [rule for rule in bot_policy["spec"]["egress"] if rule.get("ports", [{}])[0].get("port") == 6379]
    assert redis_egress[0]["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "redis"
    assert_rolls_out(cluster)


def test_upgrade_with_a_changed_catalog_rolls_the_pods_and_uninstall_removes_everything(cluster: Helm) -> None:
    for namespace in ("shop", "sandbox"):
        cluster.kubectl("create", "namespace", namespace)
    install(cluster, "socket")
    before = pod_annotations(cluster)["checksum/catalog"]
    cluster(
        "upgrade",
        RELEASE,
        str(CHART),
        "-n",
        NAMESPACE,
        "-f",
        str(CI / "socket-values.yaml"),
        "--set",
        "catalog.targets.bootcamp.approvals.required=2",
    )
    assert pod_annotations(cluster)["checksum/catalog"] != before
    cluster("uninstall", RELEASE, "-n", NAMESPACE)
    leftovers = cluster.kubectl(
        "get",
        "deployments,secrets,configmaps,roles,rolebindings",
        "-A",
        "-l",
        "app.kubernetes.io/instance=rb",
        "-o",
        "name",
    ).stdout
    assert leftovers.strip() == ""


# -- helpers ------------------------------------------------------------------------------------------------


def install(cluster: Helm, value_set: str) -> None:
    result = cluster(
        "install",
        RELEASE,
        str(CHART),
        "-n",
        NAMESPACE,
        "--create-namespace",
        "-f",
        str(CI / f"{value_set}-values.yaml"),
    )
    assert "STATUS: deployed" in result.stdout
    assert "/rollback help" in result.stdout  # NOTES.txt tells the operator how to verify


def bot_container(cluster: Helm) -> tuple[dict[str, Any], dict[str, Any]]:
    deployment = cluster.get_json("deployment", FULLNAME, "-n", NAMESPACE)
    pod_spec = deployment["spec"]["template"]["spec"]
    (container,) = pod_spec["containers"]
    assert container["image"] == "ghcr.io/example/rollbot:0.1.0"
    probes = {
        name: (container[name]["httpGet"]["path"], container[name]["httpGet"]["port"])
        for name in ("startupProbe", "livenessProbe", "readinessProbe")
    }
    assert probes == {
        "startupProbe": ("/healthz", "http"),
        "livenessProbe": ("/healthz", "http"),
        "readinessProbe": ("/readyz", "http"),
    }
    assert container["ports"] == [{"name": "http", "containerPort": 3000, "protocol": "TCP"}]
    assert pod_spec["serviceAccountName"] == FULLNAME
    return container, pod_spec


def secret_value(cluster: Helm, value_from: Any) -> str:
    """The value a `valueFrom.secretKeyRef` resolves to in the cluster (the Secret and key must exist)."""
    ref = value_from["secretKeyRef"]
    secret = cluster.get_json("secret", ref["name"], "-n", NAMESPACE)
    return base64.b64decode(secret["data"][ref["key"]]).decode()


def assert_catalog_loads(cluster: Helm, pod_spec: dict[str, Any], expected_targets: set[str]) -> None:
    """The mounted ConfigMap, at ROLLBOT_CONFIG's path, is a catalog the bot itself accepts."""
    (container,) = pod_spec["containers"]
    config_path = Path(env_of(container)["ROLLBOT_CONFIG"])
    mount = next(m for m in container["volumeMounts"] if config_path.parent == Path(m["mountPath"]))
    assert mount["readOnly"] is True
    volume = next(v for v in pod_spec["volumes"] if v["name"] == mount["name"])
    item = next(i for i in volume["configMap"]["items"] if i["path"] == config_path.name)
    config_map = cluster.get_json("configmap", volume["configMap"]["name"], "-n", NAMESPACE)
    local = Path(cluster.workdir) / "mounted-catalog.yaml"
    local.write_text(config_map["data"][item["key"]], encoding="utf-8")
    catalog = load_catalog_file(local)
    assert set(catalog.names) == expected_targets


def assert_hardened(container: dict[str, Any], pod_spec: dict[str, Any]) -> None:
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["runAsNonRoot"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert pod_spec["securityContext"]["runAsNonRoot"] is True
    assert pod_spec["securityContext"]["runAsUser"] != 0
    tmp = next(m for m in container["volumeMounts"] if m["mountPath"] == "/tmp")
    assert "emptyDir" in next(v for v in pod_spec["volumes"] if v["name"] == tmp["name"])
    env = env_of(container)
    assert env["HOME"] == "/tmp"
    assert env["HELM_CACHE_HOME"].startswith("/tmp/")
    assert container["resources"]["limits"]["memory"]


def assert_rolls_out(cluster: Helm, replicas: int = 1) -> None:
    cluster.kubectl("rollout", "status", f"deployment/{FULLNAME}", "-n", NAMESPACE, "--timeout=30s")
    deployment = cluster.get_json("deployment", FULLNAME, "-n", NAMESPACE)
    assert deployment["status"]["readyReplicas"] == replicas


def pod_annotations(cluster: Helm) -> dict[str, str]:
    deployment = cluster.get_json("deployment", FULLNAME, "-n", NAMESPACE)
    return dict(deployment["spec"]["template"]["metadata"]["annotations"])
