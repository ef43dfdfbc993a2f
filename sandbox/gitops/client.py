"""A small JSON client for the Kubernetes API over HTTP, enough for the simulated reconcilers."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

# Requests go to a loopback simulator; a slow answer means something is wrong, not that we should wait.
_TIMEOUT_SECONDS = 10.0


class KubeApiError(Exception):
    """A non-2xx answer, with the HTTP status and the server's message."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


def resource_path(api_version: str, plural: str, namespace: str | None, name: str | None = None) -> str:
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    path = f"{base}/namespaces/{namespace}/{plural}" if namespace else f"{base}/{plural}"
    return f"{path}/{name}" if name else path


class KubeClient:
    """get/list/create/merge-patch against one API server URL (kubesim's `sim.url`)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")

    def _call(self, method: str, path: str, body: Any = None, content_type: str = "application/json") -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 - the URL is the simulator's, built by us
            self.base_url + path, data=data, method=method, headers={"Content-Type": content_type}
        )
        try:
            with urllib.request.urlopen(request, timeout=_TIMEOUT_SECONDS) as response:  # noqa: S310
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            try:
                message = json.loads(exc.read()).get("message", exc.reason)
            except ValueError:
                message = str(exc.reason)
            raise KubeApiError(exc.code, message) from exc

    def get(self, path: str) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = self._call("GET", path)
        except KubeApiError as exc:
            if exc.code == 404:
                return None
            raise
        return found

    def list(self, path: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self._call("GET", path).get("items") or []
        return items

    def create(self, path: str, obj: dict[str, Any]) -> dict[str, Any]:
        created: dict[str, Any] = self._call("POST", path, obj)
        return created

    def merge_patch(self, path: str, patch: dict[str, Any]) -> dict[str, Any]:
        patched: dict[str, Any] = self._call("PATCH", path, patch, "application/merge-patch+json")
        return patched

    def apply(self, manifest: dict[str, Any], plural: str) -> dict[str, Any]:
        """Create the object, or merge-patch it with the manifest (what `kubectl apply` amounts to here)."""
        meta = manifest["metadata"]
        collection = resource_path(manifest["apiVersion"], plural, meta.get("namespace"))
        try:
            return self.create(collection, manifest)
        except KubeApiError as exc:
            if exc.code != 409:
                raise
        return self.merge_patch(f"{collection}/{meta['name']}", manifest)
