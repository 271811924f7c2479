"""Typed HTTP client of the control API, used by the CLI and the TUI (and anyone scripting)."""

from __future__ import annotations

import http.client
import json as jsonlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from appliance import home as homes

DEFAULT_URL = "http://127.0.0.1:8080"


class ApiError(Exception):
    """The daemon refused a request (4xx/5xx), or could not be reached (status 0)."""

    def __init__(self, message: str, status: int = 0, field: str | None = None) -> None:
        super().__init__(message)
        self.message, self.status, self.field = message, status, field


@dataclass
class Response:
    """A data-plane answer: status, headers (lower-case names), body."""

    status_code: int
    headers: dict[str, str] = field(default_factory=dict)
    content: bytes = b""

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return jsonlib.loads(self.content)


def documents_from_files(paths: list[str | Path]) -> list[dict[str, Any]]:
    """Apply payload: each YAML document with the file it came from (relative paths resolve there)."""
    from appliance.specs import read_yaml

    return [{"body": body, "source": str(Path(p).resolve())} for p in paths for body in read_yaml(p)]


class Client:
    """The control API over plain `http.client` (the CLI starts fast: no HTTP library to import)."""

    def __init__(self, url: str | None = None, token: str | None = None, home: str | Path | None = None,
                 timeout: float = 300.0) -> None:
        root = homes.resolve(home)
        announced = homes.read_daemon_file(root)
        if url or os.environ.get("APPLIANCE_URL"):
            self.url, self.url_from = (url or os.environ["APPLIANCE_URL"]), "--url/APPLIANCE_URL"
        elif announced and announced.get("url"):
            self.url, self.url_from = announced["url"], f"the daemon serving home {root}"
        else:
            self.url, self.url_from = DEFAULT_URL, f"the default (no daemon announces itself in home {root})"
        self.url = self.url.rstrip("/")
        if token is None:
            token = os.environ.get("APPLIANCE_TOKEN")
        if token is None:
            token_file = root / "admin.token"
            token = token_file.read_text().strip() if token_file.exists() else ""
        self.home = root
        self.timeout = timeout
        self._token = token
        parts = urlsplit(self.url if "://" in self.url else "http://" + self.url)
        self._https = parts.scheme == "https"
        self._host, self._port = parts.hostname or "127.0.0.1", parts.port or (443 if self._https else 80)
        self._prefix = parts.path.rstrip("/")

    def close(self) -> None:
        pass

    def unreachable(self, exc: Exception) -> ApiError:
        return ApiError(f"cannot reach the appliance daemon at {self.url} ({self.url_from}): {exc}. "
                        "Start it with `appliance up`, or point to a running one with --url URL (APPLIANCE_URL) "
                        "or --home DIR (APPLIANCE_HOME)")

    def _request(self, method: str, path: str, *, params: dict[str, Any] | None = None, json: Any = None,
                 content: bytes | None = None, headers: dict[str, str] | None = None,
                 timeout: float | None = -1.0) -> http.client.HTTPResponse:
        query = {k: v for k, v in (params or {}).items() if v is not None}
        target = self._prefix + path + ("?" + urlencode(query) if query else "")
        sent = {"authorization": f"Bearer {self._token}", "accept": "application/json", **(headers or {})}
        if json is not None:
            content = jsonlib.dumps(json).encode()
            sent["content-type"] = "application/json"
        wait = self.timeout if timeout == -1.0 else timeout
        cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        conn = cls(self._host, self._port, timeout=wait)
        try:
            conn.request(method, target, body=content, headers=sent)
            return conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise self.unreachable(exc) from None

    @staticmethod
    def _refusal(response: http.client.HTTPResponse, body: bytes) -> ApiError:
        try:
            answer = jsonlib.loads(body)
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            answer = {"message": body.decode("utf-8", "replace")}
        return ApiError(answer.get("message") or response.reason, response.status, answer.get("field"))

    def _call(self, method: str, path: str, *, params: dict[str, Any] | None = None, json: Any = None,
              timeout: float | None = -1.0) -> Any:
        response = self._request(method, "/api/v1" + path, params=params, json=json, timeout=timeout)
        try:
            body = response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise self.unreachable(exc) from None
        if response.status >= 400:
            raise self._refusal(response, body)
        return jsonlib.loads(body) if body else None

    # -- control API ----------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        return self._call("GET", "/health")

    def apply(self, documents: list[dict[str, Any]], *, create_only: bool = False, all_traffic: bool = False,
              wait: float = 120.0) -> dict[str, Any]:
        return self._call("POST", "/apply", json={"documents": documents, "create_only": create_only,
                                                  "all_traffic": all_traffic, "wait": wait},
                          timeout=wait + 60 if wait else self.timeout)

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

    def archive_model(self, name: str, version: str | None = None, archived: bool = True) -> list[dict[str, Any]]:
        return self._call("POST", f"/models/{name}/archive", json={"archived": archived, "version": version})

    def list_environments(self) -> list[dict[str, Any]]:
        return self._call("GET", "/environments")

    def get_environment(self, name: str, version: str | None = None) -> dict[str, Any]:
        return self._call("GET", f"/environments/{name}", params={"version": version} if version else None)

    def _stream(self, path: str, params: dict[str, Any], json: Any = None) -> Iterator[dict[str, Any]]:
        """NDJSON events of a long operation: {"log"} lines, then {"result"} or {"error"}."""
        response = self._request("POST", "/api/v1" + path, params=params, json=json, timeout=None)
        try:
            if response.status >= 400:
                raise self._refusal(response, response.read())
            while line := response.readline():
                if line.strip():
                    yield jsonlib.loads(line)
        except (OSError, http.client.HTTPException) as exc:
            raise self.unreachable(exc) from None

    def build_environment(self, name: str, version: str | None = None) -> Iterator[dict[str, Any]]:
        return self._stream(f"/environments/{name}/build", {"version": version} if version else {})

    def package(self, endpoint: str, deployment: str, push: str | None = None) -> Iterator[dict[str, Any]]:
        return self._stream(f"/endpoints/{endpoint}/deployments/{deployment}/package", {"push": push} if push else {})

    def profile_deployment(self, endpoint: str, deployment: str, request: str, *, concurrency: list[int],
                           duration: float, target_p99_ms: float | None = None, target_rps: float | None = None,
                           content_type: str = "application/json", store: bool = True) -> Iterator[dict[str, Any]]:
        """`deployment profile`: each step's progress lines, then the Profile (curve and recommendation)."""
        body: dict[str, Any] = {"request": request, "concurrency": concurrency, "duration": duration,
                                "content_type": content_type, "store": store}
        if target_p99_ms is not None:
            body["target_p99_ms"] = target_p99_ms
        if target_rps is not None:
            body["target_rps"] = target_rps
        return self._stream(f"/endpoints/{endpoint}/deployments/{deployment}/profile", {}, json=body)

    def export(self, endpoints: list[str], *, format: str = "kubernetes", target: str = "gateway",
               registry: str | None = None, namespace: str = "appliance", push: bool = False
               ) -> Iterator[dict[str, Any]]:
        """`appliance export`: image builds' output lines, then {files, copies, warnings}."""
        body: dict[str, Any] = {"endpoints": endpoints, "format": format, "target": target, "namespace": namespace,
                                "push": push}
        if registry:
            body["registry"] = registry
        return self._stream("/export", {}, json=body)

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

    def drift(self, endpoint: str, **params: Any) -> dict[str, Any]:
        """A drift report of the collected data (see the control API's `GET /endpoints/{endpoint}/drift`)."""
        return self._call("GET", f"/endpoints/{endpoint}/drift",
                          params={k: v for k, v in params.items() if v is not None})

    def create_monitor(self, body: dict[str, Any], source: str = "<command line>",
                       base: str | None = None) -> dict[str, Any]:
        """A scheduled monitor from an Azure ML monitor schedule document (one of its name is replaced)."""
        return self._call("POST", "/monitors", json={"body": body, "source": source, "base": base or os.getcwd()})

    def list_monitors(self, endpoint: str | None = None) -> list[dict[str, Any]]:
        return self._call("GET", "/monitors", params={"endpoint": endpoint})

    def get_monitor(self, name: str) -> dict[str, Any]:
        return self._call("GET", f"/monitors/{name}")

    def delete_monitor(self, name: str) -> dict[str, Any]:
        return self._call("DELETE", f"/monitors/{name}")

    def run_monitor(self, name: str) -> dict[str, Any]:
        """Runs it now; answers with the monitor and the run's signals."""
        return self._call("POST", f"/monitors/{name}/run")

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
                          json={"set": sets, "wait": wait}, timeout=wait + 60 if wait else self.timeout)

    def deployment_logs(self, endpoint: str, name: str, *, instance: str | None = None, since: float | None = None,
                        tail: int | None = None, cursor: str | None = None) -> dict[str, Any]:
        params = {k: v for k, v in {"instance": instance, "since": since, "tail": tail, "cursor": cursor}.items()
                  if v is not None}
        return self._call("GET", f"/endpoints/{endpoint}/deployments/{name}/logs", params=params)

    def restart_deployment(self, endpoint: str, name: str) -> dict[str, Any]:
        return self._call("POST", f"/endpoints/{endpoint}/deployments/{name}/restart", timeout=300)

    def delete_deployment(self, endpoint: str, name: str) -> dict[str, Any]:
        return self._call("DELETE", f"/endpoints/{endpoint}/deployments/{name}")

    def status(self) -> dict[str, Any]:
        return self._call("GET", "/status")

    def live_requests(self, after: int | None = None, endpoint: str | None = None, wait: float = 1.0,
                      limit: int = 5000) -> dict[str, Any]:
        """The requests recorded since `after` (the previous answer's `next`; None: from now)."""
        params = {"after": after, "endpoint": endpoint, "wait": wait, "limit": limit}
        return self._call("GET", "/requests/live", params=params, timeout=wait + 30)

    def events(self, subject: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        return self._call("GET", "/events", params={"subject": subject, "limit": limit} if subject
                          else {"limit": limit})

    # -- batch ----------------------------------------------------------------------------------

    def apply_batch(self, documents: list[dict[str, Any]], *, create_only: bool = False, set_default: bool = False,
                    wait: float = 120.0) -> dict[str, Any]:
        """`apply`, where `set_default` makes each applied batch deployment its endpoint's default."""
        return self._call("POST", "/apply", json={"documents": documents, "create_only": create_only,
                                                  "all_traffic": False, "wait": wait, "set_default": set_default},
                          timeout=wait + 60 if wait else self.timeout)

    def list_batch_endpoints(self) -> list[dict[str, Any]]:
        return self._call("GET", "/batch-endpoints")

    def get_batch_endpoint(self, name: str) -> dict[str, Any]:
        return self._call("GET", f"/batch-endpoints/{name}")

    def delete_batch_endpoint(self, name: str) -> dict[str, Any]:
        return self._call("DELETE", f"/batch-endpoints/{name}")

    def list_batch_deployments(self, endpoint: str) -> list[dict[str, Any]]:
        return self._call("GET", f"/batch-endpoints/{endpoint}/deployments")

    def get_batch_deployment(self, endpoint: str, name: str) -> dict[str, Any]:
        return self._call("GET", f"/batch-endpoints/{endpoint}/deployments/{name}")

    def delete_batch_deployment(self, endpoint: str, name: str) -> dict[str, Any]:
        return self._call("DELETE", f"/batch-endpoints/{endpoint}/deployments/{name}")

    def invoke_batch_endpoint(self, endpoint: str, input: str, *, input_type: str | None = None,
                              deployment_name: str | None = None, output_path: str | None = None,
                              output_file_name: str | None = None, mini_batch_size: int | None = None,
                              instance_count: int | None = None) -> dict[str, Any]:
        """Start a scoring job; `input` is an absolute local path or `azureml:NAME@latest` / `azureml:NAME:V`."""
        return self._call("POST", f"/batch-endpoints/{endpoint}/jobs", json={
            "input": input, "input_type": input_type, "deployment_name": deployment_name,
            "output_path": output_path, "output_file_name": output_file_name, "mini_batch_size": mini_batch_size,
            "instance_count": instance_count})

    def list_jobs(self, endpoint: str | None = None, deployment: str | None = None) -> list[dict[str, Any]]:
        """Newest first."""
        return self._call("GET", "/jobs", params={"endpoint": endpoint, "deployment": deployment})

    def get_job(self, name: str) -> dict[str, Any]:
        return self._call("GET", f"/jobs/{name}")

    def cancel_job(self, name: str) -> dict[str, Any]:
        """The job once it stopped."""
        return self._call("POST", f"/jobs/{name}/cancel", json={})

    def job_logs(self, name: str, file: str | None = None, lines: int | None = None) -> dict[str, Any]:
        """One log file's last `lines` ({file, lines}), or without `file` the list of them ({files})."""
        return self._call("GET", f"/jobs/{name}/logs", params={"file": file, "lines": lines})

    def create_data(self, body: dict[str, Any], source: str = "<command line>",
                    base: str | None = None) -> dict[str, Any]:
        return self._call("POST", "/data", json={"body": body, "source": source, "base": base or os.getcwd()})

    def list_data(self, name: str | None = None) -> list[dict[str, Any]]:
        return self._call("GET", "/data", params={"name": name})

    def get_data(self, name: str, version: str | None = None) -> dict[str, Any]:
        """One version (default: the latest)."""
        return self._call("GET", f"/data/{name}", params={"version": version})

    # -- data plane -----------------------------------------------------------------------------

    def invoke(self, endpoint: str, body: bytes, deployment: str | None = None) -> Response:
        """Score with the endpoint's primary key (or a fresh token), as a user's client would."""
        if self.get_endpoint(endpoint)["auth_mode"] == "key":
            secret = self.get_credentials(endpoint)["primaryKey"]
        else:
            secret = self.get_token(endpoint)["accessToken"]
        headers = {"authorization": f"Bearer {secret}", "content-type": "application/json"}
        if deployment:
            headers["azureml-model-deployment"] = deployment
        response = self._request("POST", f"/endpoints/{endpoint}/score", content=body, headers=headers)
        try:
            content = response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise self.unreachable(exc) from None
        return Response(response.status, {k.lower(): v for k, v in response.getheaders()}, content)
