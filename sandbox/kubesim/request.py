"""One parsed API request: path, query, content negotiation and a decoded body (JSON, YAML or protobuf)."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

from sandbox.kubesim import protobuf
from sandbox.kubesim.store import ApiError


class ApiRequest:
    """The parsed parts of one API request."""

    def __init__(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        split = urlsplit(handler.path)
        self.method = method
        self.path = split.path
        self.query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        self.accept = handler.headers.get("Accept", "") or ""
        self.content_type = (handler.headers.get("Content-Type", "") or "").split(";")[0].strip().lower()
        self.user_agent = handler.headers.get("User-Agent", "") or ""
        if "chunked" in (handler.headers.get("Transfer-Encoding", "") or "").lower():
            self.body = self._read_chunked(handler)
        else:
            length = int(handler.headers.get("Content-Length") or 0)
            self.body = handler.rfile.read(length) if length > 0 else b""

    @staticmethod
    def _read_chunked(handler: BaseHTTPRequestHandler) -> bytes:
        parts: list[bytes] = []
        while True:
            size_line = handler.rfile.readline(1024)
            size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                # Skip optional trailers up to the blank line that ends the body.
                while handler.rfile.readline(1024).strip():
                    pass
                return b"".join(parts)
            parts.append(handler.rfile.read(size))
            handler.rfile.readline(1024)  # the CRLF after each chunk

    @property
    def dry_run(self) -> bool:
        return self.query.get("dryRun") == "All"

    @property
    def wants_table(self) -> bool:
        return "as=Table" in self.accept

    @property
    def wants_partial_metadata(self) -> bool:
        return "as=PartialObjectMetadata" in self.accept and "as=Table" not in self.accept

    @property
    def field_manager(self) -> str:
        manager = self.query.get("fieldManager")
        if manager:
            return manager
        # The API server defaults the manager to the user agent's program name.
        return self.user_agent.split("/", 1)[0] or "unknown"

    def json_body(self) -> Any:
        if not self.body:
            raise ApiError.bad_request("the request body is empty")
        if self.content_type == "application/vnd.kubernetes.protobuf":
            try:
                return protobuf.decode(self.body)
            except protobuf.UnsupportedKindError as exc:
                raise ApiError(
                    415,
                    "UnsupportedMediaType",
                    f"the body of the request was in an unknown format ({exc.kind} in protobuf) - accepted "
                    "media types include: application/json, application/yaml",
                ) from exc
            except protobuf.ProtobufError as exc:
                raise ApiError.bad_request(f"invalid protobuf body: {exc}") from exc
        try:
            return json.loads(self.body)
        except ValueError:
            pass
        if self.content_type in ("application/yaml", "application/apply-patch+yaml"):
            try:
                return yaml.safe_load(self.body)
            except yaml.YAMLError as exc:
                raise ApiError.bad_request(f"error decoding YAML: {exc}") from exc
        raise ApiError.bad_request("the request body is not valid JSON")
