"""meta.k8s.io/v1 Table rendering with the columns of the kubernetes internal printers."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable
from typing import Any

from sandbox.kubesim import jsonpath
from sandbox.kubesim.resources import PrinterColumn, ResourceInfo
from sandbox.kubesim.selectors import selector_to_string

Column = tuple[str, str, int, str]  # name, type, priority, format
Row = list[Any]

_NAME_DESC = "Name must be unique within a namespace."


def _parse_time(value: str | None) -> _dt.datetime | None:
    if not value:
        return None
    try:
        return _dt.datetime.strptime(value[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=_dt.UTC)
    except ValueError:
        return None


def human_duration(seconds: float) -> str:
    """apimachinery duration.HumanDuration (what kubectl shows in AGE columns)."""
    secs = int(seconds)
    if secs < -1:
        return "<invalid>"
    if secs < 0:
        return "0s"
    if secs < 60 * 2:
        return f"{secs}s"
    minutes = secs // 60
    if minutes < 10:
        rem = secs % 60
        return f"{minutes}m" if rem == 0 else f"{minutes}m{rem}s"
    if minutes < 60 * 3:
        return f"{minutes}m"
    hours = secs // 3600
    if hours < 8:
        rem = minutes % 60
        return f"{hours}h" if rem == 0 else f"{hours}h{rem}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rem = hours % 24
        return f"{hours // 24}d" if rem == 0 else f"{hours // 24}d{rem}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if days == 0 else f"{hours // 24 // 365}y{days}d"
    return f"{hours // 24 // 365}y"


def _age_of(timestamp: Any) -> str:
    created = _parse_time(timestamp if isinstance(timestamp, str) else None)
    if created is None:
        return "<unknown>"
    return human_duration((_dt.datetime.now(_dt.UTC) - created).total_seconds())


def age(obj: dict[str, Any]) -> str:
    return _age_of((obj.get("metadata") or {}).get("creationTimestamp"))


def _containers_images(spec: dict[str, Any]) -> tuple[str, str]:
    containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
    return (
        ",".join(c.get("name", "") for c in containers),
        ",".join(c.get("image", "") for c in containers),
    )


def _pod_row(pod: dict[str, Any]) -> Row:
    """printPod from pkg/printers/internalversion/printers.go (the common branches)."""
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    meta = pod.get("metadata") or {}
    total = len(spec.get("containers") or [])
    ready = 0
    restarts = 0
    last_restart: _dt.datetime | None = None
    reason = status.get("reason") or status.get("phase") or ""

    initializing = False
    init_statuses = status.get("initContainerStatuses") or []
    init_count = len(spec.get("initContainers") or [])
    for index, container in enumerate(init_statuses):
        restarts += int(container.get("restartCount", 0))
        state = container.get("state") or {}
        terminated = state.get("terminated")
        waiting = state.get("waiting")
        if terminated and terminated.get("exitCode", 0) == 0:
            continue
        if terminated:
            reason = "Init:" + (terminated.get("reason") or f"ExitCode:{terminated.get('exitCode', 0)}")
        elif waiting and waiting.get("reason") and waiting["reason"] != "PodInitializing":
            reason = "Init:" + waiting["reason"]
        else:
            reason = f"Init:{index}/{init_count}"
        initializing = True
        break

    if not initializing:
        has_running = False
        for container in reversed(status.get("containerStatuses") or []):
            restarts += int(container.get("restartCount", 0))
            last_state = (container.get("lastState") or {}).get("terminated") or {}
            finished = _parse_time(last_state.get("finishedAt"))
            if finished and (last_restart is None or finished > last_restart):
                last_restart = finished
            state = container.get("state") or {}
            waiting = state.get("waiting")
            terminated = state.get("terminated")
            if waiting and waiting.get("reason"):
                reason = waiting["reason"]
            elif terminated and terminated.get("reason"):
                reason = terminated["reason"]
            elif terminated:
                if terminated.get("signal"):
                    reason = f"Signal:{terminated['signal']}"
                else:
                    reason = f"ExitCode:{terminated.get('exitCode', 0)}"
            elif container.get("ready") and state.get("running") is not None:
                has_running = True
                ready += 1
        if reason == "Completed" and has_running:
            conditions = status.get("conditions") or []
            pod_ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
            reason = "Running" if pod_ready else "NotReady"

    if meta.get("deletionTimestamp"):
        reason = "Unknown" if status.get("reason") == "NodeLost" else "Terminating"

    restarts_text = str(restarts)
    if restarts and last_restart is not None:
        ago = human_duration((_dt.datetime.now(_dt.UTC) - last_restart).total_seconds())
        restarts_text = f"{restarts} ({ago} ago)"
    node = spec.get("nodeName") or "<none>"
    ip = status.get("podIP") or "<none>"
    gates = spec.get("readinessGates") or []
    gates_text = "<none>"
    if gates:
        conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
        ok = sum(1 for g in gates if conditions.get(g.get("conditionType")) == "True")
        gates_text = f"{ok}/{len(gates)}"
    return [
        meta.get("name"),
        f"{ready}/{total}",
        reason,
        restarts_text,
        age(pod),
        ip,
        node,
        status.get("nominatedNodeName") or "<none>",
        gates_text,
    ]


def _deployment_row(obj: dict[str, Any]) -> Row:
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    containers, images = _containers_images(spec)
    return [
        obj["metadata"]["name"],
        f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 0)}",
        status.get("updatedReplicas", 0),
        status.get("availableReplicas", 0),
        age(obj),
        containers,
        images,
        selector_to_string(spec.get("selector")) or "<none>",
    ]


def _replicaset_row(obj: dict[str, Any]) -> Row:
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    containers, images = _containers_images(spec)
    return [
        obj["metadata"]["name"],
        spec.get("replicas", 0),
        status.get("replicas", 0),
        status.get("readyReplicas", 0),
        age(obj),
        containers,
        images,
        selector_to_string(spec.get("selector")) or "<none>",
    ]


def _daemonset_row(obj: dict[str, Any]) -> Row:
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    containers, images = _containers_images(spec)
    node_selector = ((spec.get("template") or {}).get("spec") or {}).get("nodeSelector") or {}
    return [
        obj["metadata"]["name"],
        status.get("desiredNumberScheduled", 0),
        status.get("currentNumberScheduled", 0),
        status.get("numberReady", 0),
        status.get("updatedNumberScheduled", 0),
        status.get("numberAvailable", 0),
        ",".join(f"{k}={v}" for k, v in sorted(node_selector.items())) or "<none>",
        age(obj),
        containers,
        images,
        selector_to_string(spec.get("selector")) or "<none>",
    ]


def _statefulset_row(obj: dict[str, Any]) -> Row:
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    containers, images = _containers_images(spec)
    return [
        obj["metadata"]["name"],
        f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 0)}",
        age(obj),
        containers,
        images,
    ]


def _service_row(obj: dict[str, Any]) -> Row:
    spec = obj.get("spec") or {}
    svc_type = spec.get("type", "ClusterIP")
    external = "<none>"
    if svc_type == "ExternalName":
        external = spec.get("externalName", "<none>")
    elif spec.get("externalIPs"):
        external = ",".join(spec["externalIPs"])
    elif svc_type == "LoadBalancer":
        ingress = ((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        external = ",".join(i.get("ip") or i.get("hostname", "") for i in ingress) or "<pending>"
    ports = []
    for port in spec.get("ports") or []:
        text = f"{port.get('port')}"
        if port.get("nodePort"):
            text += f":{port['nodePort']}"
        ports.append(f"{text}/{port.get('protocol', 'TCP')}")
    selector = spec.get("selector") or {}
    return [
        obj["metadata"]["name"],
        svc_type,
        spec.get("clusterIP") or "<none>",
        external,
        ",".join(ports) or "<none>",
        age(obj),
        ",".join(f"{k}={v}" for k, v in sorted(selector.items())) or "<none>",
    ]


def _job_row(obj: dict[str, Any]) -> Row:
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    if conditions.get("Complete") == "True":
        state = "Complete"
    elif conditions.get("Failed") == "True":
        state = "Failed"
    elif obj["metadata"].get("deletionTimestamp"):
        state = "Terminating"
    elif spec.get("suspend"):
        state = "Suspended"
    else:
        state = "Running"
    completions = spec.get("completions")
    succeeded = status.get("succeeded", 0)
    comp_text = (
        f"{succeeded}/{completions}" if completions is not None else f"{succeeded}/1 of {spec.get('parallelism', 1)}"
    )
    start = _parse_time(status.get("startTime"))
    end = _parse_time(status.get("completionTime")) or _dt.datetime.now(_dt.UTC)
    duration = human_duration((end - start).total_seconds()) if start else ""
    containers, images = _containers_images(spec)
    return [
        obj["metadata"]["name"],
        state,
        comp_text,
        duration,
        age(obj),
        containers,
        images,
        selector_to_string(spec.get("selector")) or "<none>",
    ]


def _event_row(obj: dict[str, Any]) -> Row:
    involved = obj.get("involvedObject") or {}
    last = obj.get("lastTimestamp") or obj.get("eventTime") or (obj.get("metadata") or {}).get("creationTimestamp")
    last_dt = _parse_time(last)
    seen = human_duration((_dt.datetime.now(_dt.UTC) - last_dt).total_seconds()) if last_dt else "<unknown>"
    return [
        seen,
        obj.get("type", ""),
        obj.get("reason", ""),
        f"{str(involved.get('kind', '')).lower()}/{involved.get('name', '')}",
        obj.get("message", ""),
    ]


def _cronjob_row(obj: dict[str, Any]) -> Row:
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    last = _parse_time(status.get("lastScheduleTime"))
    last_text = human_duration((_dt.datetime.now(_dt.UTC) - last).total_seconds()) if last else "<none>"
    return [
        obj["metadata"]["name"],
        spec.get("schedule", ""),
        spec.get("timeZone") or "<none>",
        "True" if spec.get("suspend") else "False",
        len(status.get("active") or []),
        last_text,
        age(obj),
    ]


def _hpa_row(obj: dict[str, Any]) -> Row:
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    ref = spec.get("scaleTargetRef") or {}
    targets = []
    current = {m.get("resource", {}).get("name"): m for m in status.get("currentMetrics") or []}
    for metric in spec.get("metrics") or []:
        resource = metric.get("resource") or {}
        target = resource.get("target") or {}
        now = ((current.get(resource.get("name")) or {}).get("resource") or {}).get("current", {})
        if "averageUtilization" in target:
            wanted = f"{target['averageUtilization']}%"
            shown = f"{now['averageUtilization']}%" if "averageUtilization" in now else "<unknown>"
        else:
            wanted = str(target.get("averageValue") or target.get("value") or "<none>")
            shown = str(now.get("averageValue") or now.get("value") or "<unknown>")
        targets.append(f"{resource.get('name')}: {shown}/{wanted}")
    return [
        obj["metadata"]["name"],
        f"{ref.get('kind')}/{ref.get('name')}",
        ", ".join(targets) or "<none>",
        spec.get("minReplicas", 1),
        spec.get("maxReplicas", 0),
        status.get("currentReplicas", 0),
        age(obj),
    ]


_NAME: Column = ("Name", "string", 0, "name")
_AGE: Column = ("Age", "string", 0, "")

_PRINTERS: dict[str, tuple[list[Column], Callable[[dict[str, Any]], Row]]] = {
    "Pod": (
        [
            _NAME,
            ("Ready", "string", 0, ""),
            ("Status", "string", 0, ""),
            ("Restarts", "string", 0, ""),
            _AGE,
            ("IP", "string", 1, ""),
            ("Node", "string", 1, ""),
            ("Nominated Node", "string", 1, ""),
            ("Readiness Gates", "string", 1, ""),
        ],
        _pod_row,
    ),
    "Deployment": (
        [
            _NAME,
            ("Ready", "string", 0, ""),
            ("Up-to-date", "integer", 0, ""),
            ("Available", "integer", 0, ""),
            _AGE,
            ("Containers", "string", 1, ""),
            ("Images", "string", 1, ""),
            ("Selector", "string", 1, ""),
        ],
        _deployment_row,
    ),
    "ReplicaSet": (
        [
            _NAME,
            ("Desired", "integer", 0, ""),
            ("Current", "integer", 0, ""),
            ("Ready", "integer", 0, ""),
            _AGE,
            ("Containers", "string", 1, ""),
            ("Images", "string", 1, ""),
            ("Selector", "string", 1, ""),
        ],
        _replicaset_row,
    ),
    "DaemonSet": (
        [
            _NAME,
            ("Desired", "integer", 0, ""),
            ("Current", "integer", 0, ""),
            ("Ready", "integer", 0, ""),
            ("Up-to-date", "integer", 0, ""),
            ("Available", "integer", 0, ""),
            ("Node Selector", "string", 0, ""),
            _AGE,
            ("Containers", "string", 1, ""),
            ("Images", "string", 1, ""),
            ("Selector", "string", 1, ""),
        ],
        _daemonset_row,
    ),
    "StatefulSet": (
        [_NAME, ("Ready", "string", 0, ""), _AGE, ("Containers", "string", 1, ""), ("Images", "string", 1, "")],
        _statefulset_row,
    ),
    "Service": (
        [
            _NAME,
            ("Type", "string", 0, ""),
            ("Cluster-IP", "string", 0, ""),
            ("External-IP", "string", 0, ""),
            ("Port(s)", "string", 0, ""),
            _AGE,
            ("Selector", "string", 1, ""),
        ],
        _service_row,
    ),
    "ConfigMap": (
        [_NAME, ("Data", "integer", 0, ""), _AGE],
        lambda o: [o["metadata"]["name"], len(o.get("data") or {}) + len(o.get("binaryData") or {}), age(o)],
    ),
    "Secret": (
        [_NAME, ("Type", "string", 0, ""), ("Data", "integer", 0, ""), _AGE],
        lambda o: [o["metadata"]["name"], o.get("type", ""), len(o.get("data") or {}), age(o)],
    ),
    "Namespace": (
        [_NAME, ("Status", "string", 0, ""), _AGE],
        lambda o: [o["metadata"]["name"], (o.get("status") or {}).get("phase", ""), age(o)],
    ),
    "ServiceAccount": (
        [_NAME, ("Secrets", "string", 0, ""), _AGE],
        lambda o: [o["metadata"]["name"], len(o.get("secrets") or []), age(o)],
    ),
    "ControllerRevision": (
        [_NAME, ("Controller", "string", 0, ""), ("Revision", "integer", 0, ""), _AGE],
        lambda o: [
            o["metadata"]["name"],
            next(
                (
                    f"{r.get('kind', '').lower()}.{r.get('apiVersion', '').split('/')[0]}/{r.get('name')}"
                    if "/" in r.get("apiVersion", "")
                    else f"{r.get('kind', '').lower()}/{r.get('name')}"
                    for r in o["metadata"].get("ownerReferences") or []
                    if r.get("controller")
                ),
                "<none>",
            ),
            o.get("revision", 0),
            age(o),
        ],
    ),
    "Job": (
        [
            _NAME,
            ("Status", "string", 0, ""),
            ("Completions", "string", 0, ""),
            ("Duration", "string", 0, ""),
            _AGE,
            ("Containers", "string", 1, ""),
            ("Images", "string", 1, ""),
            ("Selector", "string", 1, ""),
        ],
        _job_row,
    ),
    "CronJob": (
        [
            _NAME,
            ("Schedule", "string", 0, ""),
            ("Timezone", "string", 0, ""),
            ("Suspend", "boolean", 0, ""),
            ("Active", "integer", 0, ""),
            ("Last Schedule", "string", 0, ""),
            _AGE,
        ],
        _cronjob_row,
    ),
    "HorizontalPodAutoscaler": (
        [
            _NAME,
            ("Reference", "string", 0, ""),
            ("Targets", "string", 0, ""),
            ("MinPods", "string", 0, ""),
            ("MaxPods", "integer", 0, ""),
            ("Replicas", "integer", 0, ""),
            _AGE,
        ],
        _hpa_row,
    ),
    "Event": (
        [
            ("Last Seen", "string", 0, ""),
            ("Type", "string", 0, ""),
            ("Reason", "string", 0, ""),
            ("Object", "string", 0, ""),
            ("Message", "string", 0, ""),
        ],
        _event_row,
    ),
    "Node": (
        [_NAME, ("Status", "string", 0, ""), ("Roles", "string", 0, ""), _AGE, ("Version", "string", 0, "")],
        lambda o: [
            o["metadata"]["name"],
            next(
                (
                    "Ready" if c.get("status") == "True" else "NotReady"
                    for c in (o.get("status") or {}).get("conditions") or []
                    if c.get("type") == "Ready"
                ),
                "Unknown",
            ),
            "<none>",
            age(o),
            ((o.get("status") or {}).get("nodeInfo") or {}).get("kubeletVersion", ""),
        ],
    ),
}


def _custom_cell(obj: dict[str, Any], column: PrinterColumn) -> Any:
    """What the CRD table convertor prints: nil when nothing matches, dates as an age, else the value."""
    found = jsonpath.find(obj, column.json_path)
    if not found or found[0] is None:
        return None
    if column.type == "date":
        return _age_of(found[0])
    if len(found) > 1:
        return ",".join(str(v) for v in found)
    return found[0]


def _custom_columns(info: ResourceInfo) -> tuple[list[Column], Callable[[dict[str, Any]], Row]]:
    columns = [_NAME, *((c.name, c.type, c.priority, c.format) for c in info.printer_columns)]

    def render(obj: dict[str, Any]) -> Row:
        return [obj["metadata"]["name"], *(_custom_cell(obj, c) for c in info.printer_columns)]

    return columns, render


def _columns(info: ResourceInfo) -> tuple[list[Column], Callable[[dict[str, Any]], Row]]:
    if info.is_custom:
        return _custom_columns(info)
    return _PRINTERS.get(info.kind, ([_NAME, _AGE], lambda o: [o["metadata"]["name"], age(o)]))


def column_definitions(info: ResourceInfo) -> list[dict[str, Any]]:
    columns, _ = _columns(info)
    return [
        {
            "name": name,
            "type": col_type,
            "format": fmt,
            "description": _NAME_DESC if fmt == "name" else name,
            "priority": priority,
        }
        for name, col_type, priority, fmt in columns
    ]


def _row_object(obj: dict[str, Any], include: str) -> dict[str, Any] | None:
    if include == "None":
        return None
    if include == "Object":
        return obj
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata", {})}


def table_row(info: ResourceInfo, obj: dict[str, Any], include: str = "Metadata") -> dict[str, Any]:
    _, render = _columns(info)
    row: dict[str, Any] = {"cells": render(obj)}
    row_object = _row_object(obj, include)
    if row_object is not None:
        row["object"] = row_object
    return row


def to_table(
    info: ResourceInfo,
    objects: list[dict[str, Any]],
    resource_version: str,
    *,
    include: str = "Metadata",
    continue_token: str | None = None,
    with_headers: bool = True,
) -> dict[str, Any]:
    table: dict[str, Any] = {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": column_definitions(info) if with_headers else None,
        "rows": [table_row(info, obj, include) for obj in objects],
    }
    if continue_token:
        table["metadata"]["continue"] = continue_token
    return table
