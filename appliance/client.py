"""Typed HTTP client of the control API, used by the CLI and the TUI (and anyone scripting)."""

from __future__ import annotations

import json as jsonlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from appliance import home as homes
from appliance.specs import read_yaml

DEFAULT_URL = "http://127.0.0.1:8080"


class ApiError(Exception):
    """The daemon refused a request (4xx/5xx), or could not be reached (status 0)."""

    def __init__(self, message: str, status: int = 0, field: str | None = None) -> None:
        super().__init__(message)
        self.message, self.status, self.field = message, status, field


def documents_from_files(paths: list[str | Path]) -> list[dict[str, Any]]:
    """Apply payload: each YAML document with the file it came from (relative paths resolve there)."""
    return [{"body": body, "source": str(Path(p).resolve())} for p in paths for body in read_yaml(p)]


class Client:
    def __init__(self, url: str | None = None, token: str | None = None, home: str | Path | None = None,
                 timeout: float = 300.0) -> None:
        root = homes.resolve(home)
        announced = homes.read_daemon_file(root)
        self.url = (url or os.environ.get("APPLIANCE_URL") or (announced or {}).get("url") or DEFAULT_URL).rstrip("/")
        if token is None:
            token = os.environ.get("APPLIANCE_TOKEN")
        if token is None:
            token_file = root / "admin.token"
            token = token_file.read_text().strip() if token_file.exists() else ""
        self.home = root
        self._http = httpx.Client(base_url=self.url, timeout=timeout,
                                  headers={"authorization": f"Bearer {token}"})

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, "/api/v1" + path, **kwargs)
        except httpx.TransportError as exc:
            raise ApiError(f"cannot reach the appliance daemon at {self.url} ({exc}); is `appliance up` "
                           "running, with the same --home?") from None
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = {"message": response.text}
            raise ApiError(body.get("message") or response.reason_phrase, response.status_code, body.get("field"))
        return response.json()

    # -- control API ----------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        return self._call("GET", "/health")

    def apply(self, documents: list[dict[str, Any]], *, create_only: bool = False, all_traffic: bool = False,
              wait: float = 120.0) -> dict[str, Any]:
        return self._call("POST", "/apply", json={"documents": documents, "create_only": create_only,
                                                  "all_traffic": all_traffic, "wait": wait}, timeout=wait + 60)

    def apply_streamed(self, documents: list[dict[str, Any]], *, create_only: bool = False,
                       all_traffic: bool = False, wait: float = 120.0) -> Iterator[dict[str, Any]]:
        """`apply`, as events: environment builds' output lines, then the result."""
        return self._stream("/apply/stream", {}, json={"documents": documents, "create_only": create_only,
                                                       "all_traffic": all_traffic, "wait": wait})

    def create_model(self, body: dict[str, Any], base: str | None = None) -> dict[str, Any]:
        return self._call("POST", "/models", json={"body": body, "source": "<command line>",
                                                   "base": base or os.getcwd()})

    def list_models(self, name: str | None = None) -> list[dict[str, Any]]:
        return self._call("GET", "/models", params={"name": name} if name else None)

    def get_model(self, name: str, version: str | None = None) -> dict[str, Any]:
        return self._call("GET", f"/models/{name}", params={"version": version} if version else None)

    def list_environments(self) -> list[dict[str, Any]]:
        return self._call("GET", "/environments")

    def get_environment(self, name: str, version: str | None = None) -> dict[str, Any]:
        return self._call("GET", f"/environments/{name}", params={"version": version} if version else None)

    def _stream(self, path: str, params: dict[str, Any], json: Any = None) -> Iterator[dict[str, Any]]:
        """NDJSON events of a long operation: {"log"} lines, then {"result"} or {"error"}."""
        try:
            with self._http.stream("POST", "/api/v1" + path, params=params, json=json, timeout=None) as response:
                if response.status_code >= 400:
                    response.read()
                    raise ApiError(response.json().get("message", response.text), response.status_code)
                for line in response.iter_lines():
                    if line:
                        yield jsonlib.loads(line)
        except httpx.TransportError as exc:
            raise ApiError(f"cannot reach the appliance daemon at {self.url} ({exc})") from None

    def build_environment(self, name: str, version: str | None = None) -> Iterator[dict[str, Any]]:
        return self._stream(f"/environments/{name}/build", {"version": version} if version else {})

    def package(self, endpoint: str, deployment: str, push: str | None = None) -> Iterator[dict[str, Any]]:
        return self._stream(f"/endpoints/{endpoint}/deployments/{deployment}/package", {"push": push} if push else {})

    def list_endpoints(self) -> list[dict[str, Any]]:
        return self._call("GET", "/endpoints")

    def get_endpoint(self, name: str) -> dict[str, Any]:
        return self._call("GET", f"/endpoints/{name}")

    def delete_endpoint(self, name: str) -> dict[str, Any]:
        return self._call("DELETE", f"/endpoints/{name}")

    def get_credentials(self, name: str) -> dict[str, Any]:
        return self._call("POST", f"/endpoints/{name}/credentials")

    def update_traffic(self, endpoint: str, traffic: dict[str, int] | None = None,
                       mirror_traffic: dict[str, int] | None = None) -> dict[str, Any]:
        return self._call("POST", f"/endpoints/{endpoint}/traffic",
                          json={"traffic": traffic, "mirror_traffic": mirror_traffic})

    def regenerate_keys(self, endpoint: str, key_type: str, value: str | None = None) -> dict[str, Any]:
        return self._call("POST", f"/endpoints/{endpoint}/regenerate-keys",
                          json={"key_type": key_type, "value": value})

    def get_token(self, endpoint: str, ttl: int = 3600) -> dict[str, Any]:
        return self._call("POST", f"/endpoints/{endpoint}/token", params={"ttl": ttl})

    def request_logs(self, endpoint: str, *, since: float | None = None, deployment: str | None = None,
                     after_id: int = 0, limit: int = 200) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"after_id": after_id, "limit": limit}
        if since is not None:
            params["since"] = since
        if deployment:
            params["deployment"] = deployment
        return self._call("GET", f"/endpoints/{endpoint}/logs", params=params)

    def request_log(self, enabled: bool | None = None) -> dict[str, Any]:
        """The request log's state and counts; with `enabled`, switched first."""
        if enabled is None:
            return self._call("GET", "/request-log")
        return self._call("PUT", "/request-log", json={"enabled": enabled})

    def metrics(self, endpoint: str, since: float = 300) -> list[dict[str, Any]]:
        return self._call("GET", f"/endpoints/{endpoint}/metrics", params={"since": since})

    def mirror_report(self, endpoint: str, since: float = 600) -> dict[str, Any]:
        return self._call("GET", f"/endpoints/{endpoint}/mirror-report", params={"since": since})

    def list_deployments(self, endpoint: str) -> list[dict[str, Any]]:
        return self._call("GET", f"/endpoints/{endpoint}/deployments")

    def get_deployment(self, endpoint: str, name: str) -> dict[str, Any]:
        return self._call("GET", f"/endpoints/{endpoint}/deployments/{name}")

    def update_deployment(self, endpoint: str, name: str, sets: dict[str, str], wait: float = 120.0) -> dict[str, Any]:
        return self._call("POST", f"/endpoints/{endpoint}/deployments/{name}/update",
                          json={"set": sets, "wait": wait}, timeout=wait + 60)

    def deployment_logs(self, endpoint: str, name: str, *, instance: str | None = None, since: float | None = None,
                        tail: int | None = None, cursor: str | None = None) -> dict[str, Any]:
        params = {k: v for k, v in {"instance": instance, "since": since, "tail": tail, "cursor": cursor}.items()
                  if v is not None}
        return self._call("GET", f"/endpoints/{endpoint}/deployments/{name}/logs", params=params)

    def delete_deployment(self, endpoint: str, name: str) -> dict[str, Any]:
        return self._call("DELETE", f"/endpoints/{endpoint}/deployments/{name}")

    def events(self, subject: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        return self._call("GET", "/events", params={"subject": subject, "limit": limit} if subject
                          else {"limit": limit})

    # -- data plane -----------------------------------------------------------------------------

    def invoke(self, endpoint: str, body: bytes, deployment: str | None = None) -> httpx.Response:
        """Score with the endpoint's primary key (or a fresh token), as a user's client would."""
        if self.get_endpoint(endpoint)["auth_mode"] == "key":
            secret = self.get_credentials(endpoint)["primaryKey"]
        else:
            secret = self.get_token(endpoint)["accessToken"]
        headers = {"authorization": f"Bearer {secret}", "content-type": "application/json"}
        if deployment:
            headers["azureml-model-deployment"] = deployment
        try:
            return self._http.post(f"/endpoints/{endpoint}/score", content=body, headers=headers)
        except httpx.TransportError as exc:
            raise ApiError(f"cannot reach the appliance daemon at {self.url} ({exc})") from None
