"""The HTTP/1.1 front end of kubesim: REST semantics of kube-apiserver on top of the Store."""

from __future__ import annotations

import base64
import json
import logging
import os
import select
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from sandbox.faults import FAULTS_PATH, FaultTable, InvalidFault
from sandbox.kubesim import discovery, fieldvalidation, openapi, ssa, tables
from sandbox.kubesim.faults import KubeFault
from sandbox.kubesim.patch import PatchError, json_patch, merge_patch, strategic_merge
from sandbox.kubesim.request import ApiRequest
from sandbox.kubesim.resources import ResourceInfo
from sandbox.kubesim.selectors import selector_to_string
from sandbox.kubesim.store import ApiError, Store, clone

log = logging.getLogger("kubesim.server")

JSON = "application/json"
_BOOKMARK_INTERVAL = 5.0
_DEFAULT_WATCH_TIMEOUT = 1800.0
# Kinds whose DELETE answers with the object instead of a Status (registry ReturnDeletedObject).
_RETURNS_DELETED_OBJECT = {"Pod", "Namespace", "Service"}


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


class _Route:
    def __init__(self, info: ResourceInfo, namespace: str | None, name: str | None, sub: str | None) -> None:
        self.info = info
        self.namespace = namespace
        self.name = name
        self.sub = sub


class KubeApiHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], store: Store) -> None:
        self.store = store
        self.stopping = threading.Event()
        self.verbose = bool(os.environ.get("KUBESIM_LOG"))
        # Armed through /_sim/faults (sandbox/kubesim/faults.py); empty unless a test asks for trouble.
        self.faults = FaultTable(KubeFault)
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-response (a watch closed, a test ending) is normal here, not an error.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "kubesim"
    sys_version = ""
    # Buffered writes: headers and body leave in one segment (flushed per response by the base class and
    # per event by the watch loop); with TCP_NODELAY this avoids Nagle/delayed-ACK stalls of ~40 ms.
    wbufsize = 1 << 16
    server: KubeApiHTTPServer

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            log.info("%s " + format, self.address_string(), *args)

    # ---------------------------------------------------------------- plumbing

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _send(self, code: int, body: bytes, content_type: str = JSON, headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        for warning in self._warnings:
            escaped = warning.replace("\\", "\\\\").replace('"', '\\"')
            self.send_header("Warning", f'299 - "{escaped}"')
        self._warnings = []
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        self.wfile.write(body)

    def _send_json(self, code: int, value: Any, content_type: str = JSON) -> None:
        self._send(code, _dumps(value), content_type)

    def _dispatch(self, method: str) -> None:
        self._warnings: list[str] = []
        try:
            req = ApiRequest(self, method)
        except (ValueError, OSError):
            self.close_connection = True
            return
        started = time.monotonic()
        try:
            if req.path.rstrip("/") == FAULTS_PATH:
                self._fault_control(req)
            elif not self._injected_fault(req):
                self._route(req)
        except ApiError as exc:
            self._send_json(exc.code, exc.status())
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as exc:
            log.exception("internal error serving %s %s", method, self.path)
            self._send_json(500, ApiError(500, "InternalError", f"Internal error occurred: {exc}").status())
        if self.server.verbose:
            log.info("%s %s (%.1f ms)", method, self.path, (time.monotonic() - started) * 1000)

    # ---------------------------------------------------------------- fault injection

    def _fault_control(self, req: ApiRequest) -> None:
        faults = self.server.faults
        if req.method == "GET":
            self._send_json(200, {"faults": faults.describe()})
        elif req.method == "DELETE":
            faults.clear()
            self._send_json(200, {"faults": []})
        elif req.method == "POST":
            try:
                spec = faults.parse(json.loads(req.body or b"null"))
            except InvalidFault as exc:
                raise ApiError.bad_request(str(exc)) from exc
            except ValueError as exc:
                raise ApiError.bad_request("the fault rule must be a JSON object") from exc
            self._send_json(201, faults.add(spec))
        else:
            raise ApiError(405, "MethodNotAllowed", f"{FAULTS_PATH} accepts GET, POST and DELETE")

    def _injected_fault(self, req: ApiRequest) -> bool:
        """Apply the fault armed for this request, if one fires; True when it answered in the request's place."""
        path = req.path.rstrip("/") or "/"
        is_watch = req.method == "GET" and req.query.get("watch") in ("true", "1")
        fault = self.server.faults.draw(lambda rule: rule.applies_to(req.method, path, is_watch=is_watch))
        if fault is None:
            return False
        if fault.delay:
            # A hung request; a stopping server stops waiting so shutdown is never held up by a fault.
            self.server.stopping.wait(fault.delay)
        if fault.status is None:
            return False
        retry_after = fault.retry_seconds
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
        self._send(fault.status, _dumps(fault.error().status()), JSON, headers)
        return True

    # ---------------------------------------------------------------- routing

    def _route(self, req: ApiRequest) -> None:
        path = req.path.rstrip("/") or "/"
        parts = [p for p in path.split("/") if p]
        if path in ("/healthz", "/livez", "/readyz"):
            self._send(200, b"ok", "text/plain; charset=utf-8")
            return
        if path == "/version":
            self._send_json(200, discovery.VERSION_INFO)
            return
        if parts and parts[0] == "openapi":
            self._openapi(req, path)
            return
        if path == "/api":
            self._discovery(req, legacy=True)
            return
        if path == "/apis":
            self._discovery(req, legacy=False)
            return
        if len(parts) == 2 and parts[0] == "api":
            self._resource_list(req, "", parts[1])
            return
        if len(parts) == 2 and parts[0] == "apis":
            group = discovery.api_group(parts[1], self.store.catalog.resources)
            if group is None:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            self._send_json(200, group)
            return
        if len(parts) == 3 and parts[0] == "apis":
            self._resource_list(req, parts[1], parts[2])
            return
        route = self._resource_route(parts)
        handler = {
            "GET": self._get,
            "POST": self._create,
            "PUT": self._update,
            "PATCH": self._patch,
            "DELETE": self._delete,
        }[req.method]
        handler(req, route)

    def _resource_route(self, parts: list[str]) -> _Route:
        not_found = ApiError(404, "NotFound", "the server could not find the requested resource")
        if len(parts) >= 3 and parts[0] == "api":
            group, version, rest = "", parts[1], parts[2:]
        elif len(parts) >= 4 and parts[0] == "apis":
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise not_found
        namespace = None
        if rest[0] == "namespaces" and len(rest) >= 3 and rest[2] not in ("status", "finalize"):
            namespace = rest[1]
            rest = rest[2:]
        if len(rest) > 3:
            raise not_found
        info = self.store.catalog.lookup((group, version, rest[0]))
        if info is None:
            raise not_found
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if info.namespaced and name is not None and namespace is None:
            raise not_found
        if not info.namespaced and namespace is not None:
            raise not_found
        if sub is not None and sub not in info.subresources and not (sub == "log" and info.kind == "Pod"):
            raise not_found
        return _Route(info, namespace, name, sub)

    # ---------------------------------------------------------------- discovery & openapi

    def _discovery(self, req: ApiRequest, *, legacy: bool) -> None:
        if discovery.wants_aggregated(req.accept):
            infos = self.store.catalog.resources
            self._send_json(200, discovery.aggregated(legacy=legacy, infos=infos), discovery.AGGREGATED_CONTENT_TYPE)
        elif legacy:
            self._send_json(200, discovery.api_versions())
        else:
            self._send_json(200, discovery.api_group_list(self.store.catalog.resources))

    def _resource_list(self, req: ApiRequest, group: str, version: str) -> None:
        doc = discovery.api_resource_list(group, version, self.store.catalog.resources)
        if doc is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        self._send_json(200, doc)

    def _openapi(self, req: ApiRequest, path: str) -> None:
        if path == "/openapi/v3":
            self._send(200, openapi.root_document(self.store.catalog.resources))
            return
        if path.startswith("/openapi/v3/"):
            doc = openapi.document_for_path(path, self.store.catalog.resources)
            if doc is not None:
                self._send(200, doc)
                return
        # /openapi/v2 is deliberately absent: kubectl then falls back to its compiled-in patch metadata.
        raise ApiError(404, "NotFound", "the server could not find the requested resource")

    # ---------------------------------------------------------------- reads

    @property
    def store(self) -> Store:
        return self.server.store

    def _get(self, req: ApiRequest, route: _Route) -> None:
        info = route.info
        if route.name is None:
            if req.query.get("watch") in ("true", "1"):
                self._watch(req, route)
            else:
                self._list(req, route)
            return
        if route.sub == "log":
            self._pod_log(req, self.store.get_ref(info.key, route.namespace, route.name))
            return
        obj = self.store.get_ref(info.key, route.namespace, route.name)
        if route.sub == "scale":
            self._send_json(200, self._scale_of(info, obj))
            return
        self._send_object(req, info, obj)

    def _pod_log(self, req: ApiRequest, pod: dict[str, Any]) -> None:
        """Containers produce no output here, but a container that never started answers like the kubelet."""
        name = pod["metadata"]["name"]
        containers = [c.get("name") for c in (pod.get("spec") or {}).get("containers") or []]
        wanted = req.query.get("container")
        if wanted is None:
            if len(containers) > 1:
                raise ApiError.bad_request(
                    f"a container name must be specified for pod {name}, choose one of: [{' '.join(containers)}]"
                )
            wanted = containers[0] if containers else ""
        elif wanted not in containers:
            raise ApiError.bad_request(f"container {wanted} is not valid for pod {name}")
        statuses = {c.get("name"): c for c in (pod.get("status") or {}).get("containerStatuses") or []}
        state = (statuses.get(wanted) or {}).get("state") or {"waiting": {"reason": "ContainerCreating"}}
        waiting = state.get("waiting")
        if waiting is not None and not (statuses.get(wanted) or {}).get("lastState", {}).get("terminated"):
            reason = waiting.get("reason") or "ContainerCreating"
            if reason in ("ErrImagePull", "ImagePullBackOff"):
                reason = "trying and failing to pull image"
            raise ApiError.bad_request(f'container "{wanted}" in pod "{name}" is waiting to start: {reason}')
        self._send(200, b"", "text/plain")

    def _send_object(self, req: ApiRequest, info: ResourceInfo, obj: dict[str, Any], code: int = 200) -> None:
        if req.wants_table:
            include = req.query.get("includeObject", "Metadata")
            self._send_json(
                code, tables.to_table(info, [obj], obj["metadata"].get("resourceVersion", ""), include=include)
            )
        elif req.wants_partial_metadata:
            self._send_json(
                code, {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]}
            )
        else:
            self._send_json(code, obj)

    def _list(self, req: ApiRequest, route: _Route) -> None:
        info = route.info
        items, rv = self.store.list_refs(
            info.key, route.namespace, req.query.get("labelSelector"), req.query.get("fieldSelector")
        )
        continue_token = None
        remaining = 0
        start = req.query.get("continue")
        if start:
            try:
                decoded = json.loads(base64.urlsafe_b64decode(start.encode()))
                after = (decoded["ns"], decoded["name"])
            except (ValueError, KeyError, TypeError) as exc:
                raise ApiError(410, "Expired", "The provided continue parameter is too old") from exc
            items = [o for o in items if (o["metadata"].get("namespace", ""), o["metadata"]["name"]) > after]
        limit = int(req.query.get("limit") or 0)
        if 0 < limit < len(items):
            remaining = len(items) - limit
            items = items[:limit]
            last = items[-1]["metadata"]
            continue_token = base64.urlsafe_b64encode(
                _dumps({"rv": rv, "ns": last.get("namespace", ""), "name": last["name"]})
            ).decode()
        if req.wants_table:
            include = req.query.get("includeObject", "Metadata")
            self._send_json(200, tables.to_table(info, items, rv, include=include, continue_token=continue_token))
            return
        meta: dict[str, Any] = {"resourceVersion": rv}
        if continue_token:
            meta["continue"] = continue_token
            meta["remainingItemCount"] = remaining
        if req.wants_partial_metadata:
            body = {
                "kind": "PartialObjectMetadataList",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": meta,
                "items": [
                    {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]}
                    for o in items
                ],
            }
        else:
            body = {"kind": f"{info.kind}List", "apiVersion": info.api_version, "metadata": meta, "items": items}
        self._send_json(200, body)

    # ---------------------------------------------------------------- watch

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _client_gone(self) -> bool:
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            if not readable:
                return False
            return self.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    def _watch(self, req: ApiRequest, route: _Route) -> None:
        info = route.info
        query = req.query
        send_initial = query.get("sendInitialEvents") == "true"
        if send_initial and query.get("resourceVersionMatch") != "NotOlderThan":
            raise ApiError.invalid(
                info,
                "",
                [
                    (
                        "sendInitialEvents",
                        "Forbidden: sendInitialEvents is forbidden for watch unless "
                        "resourceVersionMatch is set to NotOlderThan",
                    )
                ],
            )
        timeout = float(query.get("timeoutSeconds") or _DEFAULT_WATCH_TIMEOUT)
        bookmarks = query.get("allowWatchBookmarks") == "true"
        table = req.wants_table
        include = query.get("includeObject", "Metadata")
        rv = query.get("resourceVersion")
        error_event: dict[str, Any] | None = None
        watch = None
        try:
            watch = self.store.watch(
                info.key,
                route.namespace,
                since_rv=rv,
                label_selector=query.get("labelSelector"),
                field_selector=query.get("fieldSelector"),
                send_initial_events=True if send_initial else (False if rv not in (None, "", "0") else None),
            )
        except ApiError as exc:
            if exc.code != 410:
                raise
            # Like the real server: the stream opens, carries one ERROR event (410 Expired) and ends.
            error_event = {"type": "ERROR", "object": exc.status()}

        self.send_response(200)
        self.send_header("Content-Type", JSON)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        self.wfile.flush()  # clients wait for the headers before they consider the watch established
        deadline = time.monotonic() + timeout
        first_table = True
        last_bookmark = time.monotonic()
        try:
            if error_event is not None:
                self._write_chunk(_dumps(error_event) + b"\n")
            while watch is not None and not self.server.stopping.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                event = watch.next_raw(timeout=min(remaining, 1.0))
                if event is None:
                    if watch.stopped or self._client_gone():
                        break
                    if bookmarks and time.monotonic() - last_bookmark >= _BOOKMARK_INTERVAL:
                        with self.store.lock:
                            idle = watch._queue.empty()
                            current = self.store.resource_version
                        if idle:
                            self._write_chunk(_dumps({"type": "BOOKMARK", "object": watch.bookmark(current)}) + b"\n")
                        last_bookmark = time.monotonic()
                    continue
                etype, obj = event
                if etype == "BOOKMARK":
                    if not bookmarks and not send_initial:
                        continue
                    payload = obj
                elif table:
                    payload = tables.to_table(
                        info,
                        [obj],
                        obj["metadata"].get("resourceVersion", ""),
                        include=include,
                        with_headers=first_table,
                    )
                    first_table = False
                else:
                    payload = obj
                self._write_chunk(_dumps({"type": etype, "object": payload}) + b"\n")
        except (BrokenPipeError, ConnectionResetError, OSError):
            self.close_connection = True
            return
        finally:
            if watch is not None:
                watch.stop()
        try:
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:
            self.close_connection = True

    # ---------------------------------------------------------------- writes

    def _check_body(self, route: _Route, body: Any, *, require_name: bool) -> dict[str, Any]:
        info = route.info
        if not isinstance(body, dict):
            raise ApiError.bad_request("the request body must be a JSON object")
        kind = body.get("kind")
        if kind and kind != info.kind:
            raise ApiError.bad_request(
                f"the server rejected our request due to an error in our request: kind {kind} does not match "
                f"the expected kind {info.kind}"
            )
        meta = body.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise ApiError.bad_request("metadata must be an object")
        if info.namespaced:
            if meta.get("namespace") and route.namespace and meta["namespace"] != route.namespace:
                raise ApiError.bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            if route.namespace:
                meta["namespace"] = route.namespace
        if require_name and route.name is not None:
            if meta.get("name") and meta["name"] != route.name:
                raise ApiError.bad_request("the name of the object does not match the name on the URL")
            meta["name"] = route.name
        return body

    def _validate_fields(self, req: ApiRequest, info: ResourceInfo, obj: Any) -> None:
        """Unknown fields: Strict rejects them like the real strict decoder, Warn/Ignore drop them (Warn with
        a `Warning` header, which kubectl prints), as decoding into the typed object does."""
        if not isinstance(obj, dict) or req.content_type == "application/vnd.kubernetes.protobuf" or info.is_custom:
            return
        mode = req.query.get("fieldValidation", "Warn")
        unknown = fieldvalidation.unknown_fields(info.kind, obj, prune=mode != "Strict")
        if not unknown:
            return
        if mode == "Strict":
            raise ApiError.bad_request(
                f'{info.kind} in version "{info.version}" cannot be handled as a {info.kind}: strict decoding error: '
                + ", ".join(f'unknown field "{path}"' for path in unknown)
            )
        if mode == "Warn":
            self._warnings.extend(f'unknown field "{path}"' for path in unknown)

    def _create(self, req: ApiRequest, route: _Route) -> None:
        info = route.info
        if route.name is not None:
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        body = self._check_body(route, req.json_body(), require_name=False)
        self._validate_fields(req, info, body)
        created = self.store.create(info.key, body, dry_run=req.dry_run)
        if not req.dry_run:
            with self.store.lock:
                ssa.record_update(self.store, info, None, created, req.field_manager)
        self._send_json(201, created)

    def _update(self, req: ApiRequest, route: _Route) -> None:
        info = route.info
        if route.name is None:
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        body = req.json_body()
        if route.sub == "scale":
            self._write_scale(req, route, body)
            return
        body = self._check_body(route, body, require_name=True)
        if route.sub is None:
            self._validate_fields(req, info, body)
        with self.store.lock:
            old = self.store.get_ref(info.key, route.namespace, route.name)
            updated = self.store.update(info.key, body, subresource=route.sub, dry_run=req.dry_run)
            if not req.dry_run:
                ssa.record_update(self.store, info, old, updated, req.field_manager)
        self._send_json(200, updated)

    def _patch(self, req: ApiRequest, route: _Route) -> None:
        info = route.info
        if route.name is None:
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        ctype = req.content_type
        patch = req.json_body()
        if ctype == "application/apply-patch+yaml":
            manager = req.query.get("fieldManager")
            if not manager:
                raise ApiError(
                    422,
                    "Invalid",
                    'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch',
                )
            if route.sub is not None:
                raise ApiError(415, "UnsupportedMediaType", "apply patches on subresources are not supported")
            # Server-side apply builds a typed object from the schema, so unknown fields always fail.
            typed = isinstance(patch, dict) and not info.is_custom
            unknown = fieldvalidation.unknown_fields(info.kind, patch) if typed else []
            if unknown:
                raise ApiError.bad_request(
                    f"failed to create typed patch object ({route.namespace or ''}/{route.name}; "
                    f"{info.api_version}, Kind={info.kind}): "
                    + ", ".join(f".{path}: field not declared in schema" for path in unknown)
                )
            obj, created = ssa.apply(
                self.store,
                info,
                route.namespace or "",
                route.name,
                patch,
                manager=manager,
                force=req.query.get("force") == "true",
                dry_run=req.dry_run,
            )
            self._send_json(201 if created else 200, obj)
            return
        with self.store.lock:
            current = self.store.get_ref(info.key, route.namespace, route.name)
            if route.sub == "scale":
                scale = self._scale_of(info, current)
                patched_scale = self._apply_patch(ctype, scale, patch, "Scale", strategic=False)
                self._write_scale(req, route, patched_scale)
                return
            if ctype == "application/strategic-merge-patch+json" and info.is_custom:
                # Custom resources have no patch strategy metadata: the real server refuses SMP for them.
                raise ApiError(
                    415,
                    "UnsupportedMediaType",
                    "the body of the request was in an unknown format - accepted media types include: "
                    "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
                )
            patched = self._apply_patch(ctype, current, patch, info.kind)
            if not isinstance(patched, dict):
                raise ApiError.bad_request("the patched object is not a JSON object")
            meta = patched.get("metadata")
            if not isinstance(meta, dict):
                raise ApiError.bad_request("the patched object has no metadata")
            if meta.get("name") != route.name:
                raise ApiError.bad_request("the name of the object does not match the name on the URL")
            if info.namespaced and meta.get("namespace") != route.namespace:
                raise ApiError.bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            if route.sub is None:
                self._validate_fields(req, info, patched)
            updated = self.store.update(info.key, patched, subresource=route.sub, dry_run=req.dry_run)
            if not req.dry_run:
                ssa.record_update(self.store, info, current, updated, req.field_manager)
        self._send_json(200, updated)

    @staticmethod
    def _apply_patch(ctype: str, current: dict[str, Any], patch: Any, kind: str, *, strategic: bool = True) -> Any:
        try:
            if ctype == "application/json-patch+json":
                return json_patch(current, patch)
            if ctype == "application/merge-patch+json":
                return merge_patch(current, patch)
            if ctype == "application/strategic-merge-patch+json":
                if not strategic:
                    return merge_patch(current, patch)
                return strategic_merge(current, patch, kind)
        except PatchError as exc:
            raise ApiError(422, "Invalid", str(exc)) from exc
        raise ApiError(
            415,
            "UnsupportedMediaType",
            f"the server does not support the patch type {ctype!r}; accepted: application/json-patch+json, "
            "application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml",
        )

    # ---------------------------------------------------------------- scale

    @staticmethod
    def _scale_of(info: ResourceInfo, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        spec = obj.get("spec") or {}
        status = obj.get("status") or {}
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                "name": meta["name"],
                "namespace": meta.get("namespace"),
                "uid": meta["uid"],
                "resourceVersion": meta["resourceVersion"],
                "creationTimestamp": meta["creationTimestamp"],
            },
            "spec": {"replicas": spec.get("replicas", 0)},
            "status": {"replicas": status.get("replicas", 0), "selector": selector_to_string(spec.get("selector"))},
        }

    def _write_scale(self, req: ApiRequest, route: _Route, scale: Any) -> None:
        info = route.info
        if not isinstance(scale, dict) or not isinstance(scale.get("spec"), dict):
            raise ApiError.bad_request("invalid Scale object")
        replicas = scale["spec"].get("replicas", 0)
        if not isinstance(replicas, int) or replicas < 0:
            raise ApiError(
                422,
                "Invalid",
                f'Scale.autoscaling "{route.name}" is invalid: spec.replicas: Invalid value: {replicas}: '
                "must be greater than or equal to 0",
            )
        with self.store.lock:
            current = self.store.get_ref(info.key, route.namespace, route.name or "")
            sent_rv = (scale.get("metadata") or {}).get("resourceVersion")
            if sent_rv and sent_rv != current["metadata"]["resourceVersion"]:
                raise ApiError.conflict(
                    info,
                    route.name or "",
                    "the object has been modified; please apply your changes to the latest version and try again",
                )
            new = clone(current)
            new.setdefault("spec", {})["replicas"] = replicas
            updated = self.store.update(info.key, new, dry_run=req.dry_run)
            if not req.dry_run:
                ssa.record_update(self.store, info, current, updated, req.field_manager)
        self._send_json(200, self._scale_of(info, updated))

    # ---------------------------------------------------------------- delete

    def _delete_options(self, req: ApiRequest) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if req.body:
            try:
                decoded = req.json_body()
            except ApiError:
                decoded = {}
            if isinstance(decoded, dict):
                options = decoded
        if "propagationPolicy" in req.query:
            options["propagationPolicy"] = req.query["propagationPolicy"]
        if req.query.get("dryRun") == "All":
            options["dryRun"] = ["All"]
        return options

    def _delete(self, req: ApiRequest, route: _Route) -> None:
        info = route.info
        options = self._delete_options(req)
        dry_run = "All" in (options.get("dryRun") or [])
        propagation = options.get("propagationPolicy") or (
            "Orphan" if options.get("orphanDependents") else "Background"
        )
        if route.name is None:
            self._delete_collection(req, route, propagation, dry_run)
            return
        deleted = self.store.delete(
            info.key,
            route.namespace,
            route.name,
            propagation=propagation,
            dry_run=dry_run,
            preconditions=options.get("preconditions"),
        )
        if info.kind in _RETURNS_DELETED_OBJECT or (
            deleted["metadata"].get("deletionTimestamp") and info.kind != "Pod"
        ):
            self._send_json(200, deleted)
            return
        self._send_json(
            200,
            {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": {
                    "name": route.name,
                    "group": info.group,
                    "kind": info.plural,
                    "uid": deleted["metadata"].get("uid"),
                },
            },
        )

    def _delete_collection(self, req: ApiRequest, route: _Route, propagation: str, dry_run: bool) -> None:
        info = route.info
        items, _ = self.store.list_refs(
            info.key, route.namespace, req.query.get("labelSelector"), req.query.get("fieldSelector")
        )
        deleted = []
        for obj in items:
            meta = obj["metadata"]
            try:
                deleted.append(
                    self.store.delete(
                        info.key, meta.get("namespace"), meta["name"], propagation=propagation, dry_run=dry_run
                    )
                )
            except ApiError as exc:
                if exc.code != 404:
                    raise
        self._send_json(
            200,
            {
                "kind": f"{info.kind}List",
                "apiVersion": info.api_version,
                "metadata": {"resourceVersion": self.store.resource_version},
                "items": deleted,
            },
        )


class ApiServer:
    """Serves a Store over HTTP on 127.0.0.1 in background threads."""

    def __init__(self, store: Store, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.store = store
        self._httpd = KubeApiHTTPServer((host, port), store)
        self.host = host
        self.port = int(self._httpd.server_address[1])
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def faults(self) -> FaultTable[KubeFault]:
        """The armed fault rules, for in-process use; `/_sim/faults` reaches the same table over HTTP."""
        return self._httpd.faults

    def start(self) -> ApiServer:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.2}, name="kubesim-http", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.stopping.set()
        self.store.stop_all_watches()
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
