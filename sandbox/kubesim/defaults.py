"""Server-side defaulting (pkg/apis/{apps,core,batch}/v1/defaults.go plus what admission adds).

Defaulting runs on every write, before the generation/no-op comparison, because the real server compares
defaulted objects; the controllers hash the stored (defaulted) pod template.
"""

from __future__ import annotations

import base64
import itertools
import threading
from typing import Any

from sandbox.kubesim.resources import ResourceKey

_cluster_ip_lock = threading.Lock()
_cluster_ip_counter = itertools.count(10)


def _image_pull_policy(image: str) -> str:
    if "@" in image:
        return "IfNotPresent"
    last = image.rsplit("/", 1)[-1]
    if ":" not in last or last.rsplit(":", 1)[1] == "latest":
        return "Always"
    return "IfNotPresent"


def _default_container(container: dict[str, Any]) -> None:
    container.setdefault("terminationMessagePath", "/dev/termination-log")
    container.setdefault("terminationMessagePolicy", "File")
    if not container.get("imagePullPolicy"):
        container["imagePullPolicy"] = _image_pull_policy(str(container.get("image", "")))
    if container.get("resources") is None:
        container["resources"] = {}
    for port in container.get("ports") or []:
        port.setdefault("protocol", "TCP")
    for probe_name in ("livenessProbe", "readinessProbe", "startupProbe"):
        probe = container.get(probe_name)
        if isinstance(probe, dict):
            probe.setdefault("timeoutSeconds", 1)
            probe.setdefault("periodSeconds", 10)
            probe.setdefault("successThreshold", 1)
            probe.setdefault("failureThreshold", 3)
            http_get = probe.get("httpGet")
            if isinstance(http_get, dict):
                http_get.setdefault("path", "/")
                http_get.setdefault("scheme", "HTTP")


def default_pod_spec(spec: dict[str, Any]) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    if spec.get("securityContext") is None:
        spec["securityContext"] = {}
    spec.setdefault("schedulerName", "default-scheduler")
    for key in ("containers", "initContainers"):
        for container in spec.get(key) or []:
            if isinstance(container, dict):
                _default_container(container)


def _default_template(spec: dict[str, Any]) -> None:
    template = spec.get("template")
    if isinstance(template, dict):
        pod_spec = template.get("spec")
        if isinstance(pod_spec, dict):
            default_pod_spec(pod_spec)


def _default_deployment(obj: dict[str, Any]) -> None:
    spec = obj.setdefault("spec", {})
    if spec.get("replicas") is None:
        spec["replicas"] = 1
    strategy = spec.get("strategy")
    if not isinstance(strategy, dict):
        strategy = spec["strategy"] = {}
    strategy.setdefault("type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        rolling = strategy.get("rollingUpdate")
        if not isinstance(rolling, dict):
            rolling = strategy["rollingUpdate"] = {}
        rolling.setdefault("maxUnavailable", "25%")
        rolling.setdefault("maxSurge", "25%")
    if spec.get("revisionHistoryLimit") is None:
        spec["revisionHistoryLimit"] = 10
    if spec.get("progressDeadlineSeconds") is None:
        spec["progressDeadlineSeconds"] = 600
    _default_template(spec)


def _default_replicaset(obj: dict[str, Any]) -> None:
    spec = obj.setdefault("spec", {})
    if spec.get("replicas") is None:
        spec["replicas"] = 1
    _default_template(spec)


def _default_daemonset(obj: dict[str, Any]) -> None:
    spec = obj.setdefault("spec", {})
    strategy = spec.get("updateStrategy")
    if not isinstance(strategy, dict):
        strategy = spec["updateStrategy"] = {}
    strategy.setdefault("type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        rolling = strategy.get("rollingUpdate")
        if not isinstance(rolling, dict):
            rolling = strategy["rollingUpdate"] = {}
        rolling.setdefault("maxUnavailable", 1)
        rolling.setdefault("maxSurge", 0)
    if spec.get("revisionHistoryLimit") is None:
        spec["revisionHistoryLimit"] = 10
    _default_template(spec)


def _default_statefulset(obj: dict[str, Any]) -> None:
    spec = obj.setdefault("spec", {})
    if spec.get("replicas") is None:
        spec["replicas"] = 1
    spec.setdefault("podManagementPolicy", "OrderedReady")
    strategy = spec.get("updateStrategy")
    if not isinstance(strategy, dict):
        strategy = spec["updateStrategy"] = {}
    strategy.setdefault("type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        rolling = strategy.get("rollingUpdate")
        if not isinstance(rolling, dict):
            rolling = strategy["rollingUpdate"] = {}
        rolling.setdefault("partition", 0)
    if spec.get("revisionHistoryLimit") is None:
        spec["revisionHistoryLimit"] = 10
    spec.setdefault("persistentVolumeClaimRetentionPolicy", {"whenDeleted": "Retain", "whenScaled": "Retain"})
    _default_template(spec)


def _default_job(obj: dict[str, Any]) -> None:
    spec = obj.setdefault("spec", {})
    parallelism = spec.setdefault("parallelism", 1)
    if spec.get("completions") is None and parallelism is not None:
        spec["completions"] = 1
    spec.setdefault("backoffLimit", 6)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    _default_template(spec)


def _default_pod(obj: dict[str, Any]) -> None:
    spec = obj.setdefault("spec", {})
    default_pod_spec(spec)
    # Admission (ServiceAccount, Priority, DefaultTolerationSeconds) adds these on real clusters.
    spec.setdefault("serviceAccountName", "default")
    spec.setdefault("serviceAccount", spec["serviceAccountName"])
    spec.setdefault("enableServiceLinks", True)
    spec.setdefault("priority", 0)
    spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
    if "tolerations" not in spec:
        spec["tolerations"] = [
            {
                "key": f"node.kubernetes.io/{taint}",
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": 300,
            }
            for taint in ("not-ready", "unreachable")
        ]
    status = obj.get("status")
    if not isinstance(status, dict) or not status:
        obj["status"] = {"phase": "Pending", "qosClass": "BestEffort"}


def _default_service(obj: dict[str, Any]) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    for port in spec.get("ports") or []:
        port.setdefault("protocol", "TCP")
        if port.get("targetPort") is None:
            port["targetPort"] = port.get("port")
    if spec["type"] != "ExternalName":
        spec.setdefault("ipFamilies", ["IPv4"])
        spec.setdefault("ipFamilyPolicy", "SingleStack")
        spec.setdefault("internalTrafficPolicy", "Cluster")
    obj.setdefault("status", {"loadBalancer": {}})


def _default_secret(obj: dict[str, Any]) -> None:
    obj.setdefault("type", "Opaque")
    string_data = obj.pop("stringData", None)
    if isinstance(string_data, dict):
        data = obj.get("data") or {}
        for key, value in string_data.items():
            data[key] = base64.b64encode(str(value).encode()).decode()
        obj["data"] = data


def _default_namespace(obj: dict[str, Any]) -> None:
    name = obj.get("metadata", {}).get("name", "")
    labels = obj["metadata"].setdefault("labels", {})
    labels["kubernetes.io/metadata.name"] = name
    obj.setdefault("spec", {"finalizers": ["kubernetes"]})
    status = obj.get("status")
    if not isinstance(status, dict) or "phase" not in status:
        obj["status"] = {"phase": "Active"}


_DEFAULTERS = {
    ("apps", "v1", "deployments"): _default_deployment,
    ("apps", "v1", "replicasets"): _default_replicaset,
    ("apps", "v1", "daemonsets"): _default_daemonset,
    ("apps", "v1", "statefulsets"): _default_statefulset,
    ("batch", "v1", "jobs"): _default_job,
    ("", "v1", "pods"): _default_pod,
    ("", "v1", "services"): _default_service,
    ("", "v1", "secrets"): _default_secret,
    ("", "v1", "namespaces"): _default_namespace,
}


def apply_defaults(res: ResourceKey, obj: dict[str, Any]) -> None:
    """Fill in defaults in place (idempotent)."""
    defaulter = _DEFAULTERS.get(res)
    if defaulter is not None:
        defaulter(obj)


def on_create(res: ResourceKey, obj: dict[str, Any]) -> None:
    """Create-only strategy work that needs the final uid (job selectors, service cluster IPs)."""
    if res == ("batch", "v1", "jobs"):
        uid = obj["metadata"]["uid"]
        name = obj["metadata"]["name"]
        spec = obj.setdefault("spec", {})
        if not spec.get("manualSelector"):
            spec.setdefault("selector", {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}})
            template_meta = spec.setdefault("template", {}).setdefault("metadata", {})
            labels = template_meta.setdefault("labels", {})
            labels.setdefault("batch.kubernetes.io/controller-uid", uid)
            labels.setdefault("batch.kubernetes.io/job-name", name)
            labels.setdefault("controller-uid", uid)
            labels.setdefault("job-name", name)
    elif res == ("", "v1", "services"):
        spec = obj.setdefault("spec", {})
        if spec.get("type", "ClusterIP") != "ExternalName" and spec.get("clusterIP") in (None, ""):
            with _cluster_ip_lock:
                n = next(_cluster_ip_counter)
            ip = f"10.96.{(n // 250) % 250}.{n % 250 + 1}"
            spec["clusterIP"] = ip
            spec["clusterIPs"] = [ip]
