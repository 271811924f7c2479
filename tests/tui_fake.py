"""A fake data source for the TUI: the control API's methods over fixed, in-memory data (pure and
deterministic: snapshot tests need the same screen every run)."""

from __future__ import annotations

import copy
from typing import Any

from appliance.client import ApiError, Response

T0 = 1_767_225_600.0  # 2026-01-01 00:00:00 UTC: every time shown derives from it


def _deployment(name: str, traffic: int, count: int = 1, state: str = "Succeeded", error: str | None = None,
                ready: int | None = None) -> dict[str, Any]:
    ready = count if ready is None else ready
    return {"name": name, "endpoint_name": "my-ep", "model": "azureml:iris:1", "environment": None,
            "instance_count": count, "runtime": "inprocess", "provisioning_state": state, "error": error,
            "provider": "CPUExecutionProvider", "traffic": traffic,
            "instances": [{"name": f"{name}-{i}", "state": "ready" if i < ready else "starting", "error": None}
                          for i in range(count)]}


class FakeSource:
    url = "http://127.0.0.1:8080"

    def __init__(self, requests: int = 40) -> None:
        self.endpoints = [
            {"name": "my-ep", "auth_mode": "key", "traffic": {"blue": 90, "green": 10},
             "mirror_traffic": {"green": 20}, "provisioning_state": "Succeeded",
             "scoring_uri": "http://localhost:8080/endpoints/my-ep/score"},
            {"name": "fraud", "auth_mode": "aml_token", "traffic": {"prod": 100}, "mirror_traffic": {},
             "provisioning_state": "Succeeded", "scoring_uri": "http://localhost:8080/endpoints/fraud/score"}]
        self.deployments = {"my-ep": [_deployment("blue", 90, 2), _deployment("green", 10, 1)],
                            "fraud": [_deployment("prod", 100, 3, "Failed", "instance prod-2 exited with 1: "
                                                  "ModuleNotFoundError: No module named 'xgboost'", 2)]}
        self.requests = requests
        self.calls: list[tuple[str, Any]] = []

    def status(self) -> dict[str, Any]:
        return {"version": "0.1.0", "url": self.url, "home": "/home/user/.appliance", "pid": 4242,
                "uptime_s": 61.0, "docker": "available (Docker 27.3.1)", "cpu_percent": 23.0,
                "memory_bytes": 1_288_490_188, "cores": 2, "request_log": True, "online_endpoints": 2,
                "batch_endpoints": 1, "jobs_running": 1}

    def list_endpoints(self) -> list[dict[str, Any]]:
        return copy.deepcopy(self.endpoints)

    def get_endpoint(self, name: str) -> dict[str, Any]:
        for ep in self.endpoints:
            if ep["name"] == name:
                return copy.deepcopy(ep)
        raise ApiError(f"online endpoint {name} not found", 404)

    def list_batch_endpoints(self) -> list[dict[str, Any]]:
        return [{"name": "nightly", "auth_mode": "aad_token", "defaults": {"deployment_name": "main"},
                 "provisioning_state": "Succeeded", "scoring_uri": "http://localhost:8080/endpoints/nightly/jobs"}]

    def list_deployments(self, endpoint: str) -> list[dict[str, Any]]:
        return copy.deepcopy(self.deployments.get(endpoint, []))

    def list_batch_deployments(self, endpoint: str) -> list[dict[str, Any]]:
        return [{"name": "main", "endpoint_name": endpoint, "model": "azureml:scorer:2",
                 "environment": "azureml:sklearn:1", "provisioning_state": "Succeeded", "error": None,
                 "resources": {"instance_count": 2}, "instances": []}]

    def metrics(self, endpoint: str, since: float = 300) -> list[dict[str, Any]]:
        if endpoint == "my-ep":
            return [{"deployment": "blue", "requests": 24_720, "requests_per_second": 412.0, "p50_ms": 1.1,
                     "p95_ms": 3.2, "p99_ms": 4.0, "error_rate": 0.0, "server_error_rate": 0.0, "mirrored": 0},
                    {"deployment": "green", "requests": 2_747, "requests_per_second": 45.8, "p50_ms": 1.3,
                     "p95_ms": 3.9, "p99_ms": 5.1, "error_rate": 0.001, "server_error_rate": 0.0, "mirrored": 4_900}]
        return [{"deployment": "prod", "requests": 738, "requests_per_second": 12.3, "p50_ms": 8.2, "p95_ms": 22.0,
                 "p99_ms": 31.0, "error_rate": 0.004, "server_error_rate": 0.004, "mirrored": 0}]

    def mirror_report(self, endpoint: str, since: float = 600) -> dict[str, Any]:
        return {"mirrored": 4_900, "pairs": 4_890, "agreed": 4_880, "agreement_rate": 0.998, "unpaired": 10,
                "live_errors": 0, "mirror_errors": 2, "live_p50_ms": 1.1, "live_p95_ms": 3.2, "mirror_p50_ms": 1.3,
                "mirror_p95_ms": 3.9, "mirror_deployments": ["green"]}

    def live_requests(self, after: int | None = None, endpoint: str | None = None, wait: float = 1.0,
                      limit: int = 5000) -> dict[str, Any]:
        if after is not None:  # one fixed batch, then nothing new (no waiting: tests stay fast)
            return {"next": after, "missed": 0, "logging": True, "rows": []}
        rows = [{"at": T0 + i * 0.0125, "request_id": f"{i:08x}-0000", "endpoint": "my-ep",
                 "deployment": "green" if i % 10 == 9 else "blue", "instance": "blue-0", "mirrored": False,
                 "status": 500 if i % 17 == 16 else 200, "latency_ms": 0.9 + (i % 7) * 0.3, "bytes_in": 55,
                 "bytes_out": 80, "key_id": "primary", "body_digest": None} for i in range(self.requests)]
        return {"next": self.requests, "missed": 3, "logging": True,
                "rows": [r for r in rows if endpoint in (None, r["endpoint"])]}

    def deployment_logs(self, endpoint: str, name: str, *, instance: str | None = None, since: float | None = None,
                        tail: int | None = None, cursor: str | None = None) -> dict[str, Any]:
        if cursor:
            return {"lines": [], "cursor": cursor}
        lines = [{"instance": f"{name}-0", "at": f"2026-01-01T00:00:{i:02d}.000Z",
                  "stream": "stderr" if i % 5 == 4 else "stdout", "text": f"worker {name}-0: line {i} scored 2 rows"}
                 for i in range(30)]
        return {"lines": lines, "cursor": f"{name}-0.log:999"}

    def list_jobs(self, endpoint: str | None = None, deployment: str | None = None) -> list[dict[str, Any]]:
        def job(n: str, status: str, done: int, failed: int, error: str | None = None) -> dict[str, Any]:
            return {"name": n, "status": status, "endpoint_name": "nightly", "deployment_name": "main",
                    "error": error, "progress": {"mini_batches": 40, "mini_batches_done": done,
                                                 "mini_batches_failed": failed, "items": 400,
                                                 "items_succeeded": done * 10, "items_failed": failed * 10,
                                                 "retries": failed * 3, "items_per_second": 2345.0 if status ==
                                                 "Running" else None, "eta_seconds": 42.0},
                    "log_files": ["job_progress_overview.txt"]}
        return [job("batchjob-0002", "Running", 24, 0), job("batchjob-0001", "Failed", 30, 10,
                                                             "error_threshold exceeded: 10 mini-batches failed")]

    def cancel_job(self, name: str) -> dict[str, Any]:
        self.calls.append(("cancel_job", name))
        return {"name": name, "status": "Canceled"}

    def job_logs(self, name: str, file: str | None = None, lines: int | None = None) -> dict[str, Any]:
        if file is None:
            return {"files": ["job_progress_overview.txt"]}
        return {"file": file, "lines": [f"mini-batch {i} done" for i in range(5)]}

    def list_models(self, name: str | None = None) -> list[dict[str, Any]]:
        return [{"name": "iris", "version": "1", "type": "custom_model", "framework": "onnx",
                 "digest": "b5401e00e745bb95",
                 "signature": {"inputs": [{"name": "features", "shape": [-1, 4]}]}, "archived": False,
                 "created_at": "2026-01-01T00:00:00Z"},
                {"name": "scorer", "version": "2", "type": "mlflow_model", "framework": "sklearn",
                 "digest": "0c1d2e3f4a5b6c7d", "signature": None, "archived": False,
                 "created_at": "2026-01-01T00:00:00Z"}]

    def list_environments(self) -> list[dict[str, Any]]:
        return [{"name": "sklearn", "version": "1", "digest": "9f8e7d6c5b4a3210",
                 "spec": {"image": "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04", "conda_file": {"x": 1}},
                 "created_at": "2026-01-01T00:00:00Z"}]

    def events(self, subject: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        return [{"id": 3, "at": "2026-01-01T00:00:02Z", "kind": "traffic.updated", "subject": "my-ep",
                 "detail": {"traffic": {"blue": 90, "green": 10}}},
                {"id": 2, "at": "2026-01-01T00:00:01Z", "kind": "deployment.created", "subject": "my-ep/blue",
                 "detail": {"model": "azureml:iris:1"}},
                {"id": 1, "at": "2026-01-01T00:00:00Z", "kind": "endpoint.created", "subject": "my-ep",
                 "detail": {"auth_mode": "key"}}][:limit]

    def list_monitors(self, endpoint: str | None = None) -> list[dict[str, Any]]:
        drift = {"type": "data_drift", "collection": "model_inputs", "status": "failed", "features": 4,
                 "failed_features": ["features_1", "features_3"], "metrics": []}
        monitors = [{"name": "iris_monitoring", "endpoint_name": "my-ep", "deployment_name": "blue",
                     "trigger": {"type": "recurrence", "frequency": "day", "interval": 1}, "status": "failed",
                     "last_run_at": "2026-01-01T00:00:00Z", "next_run_at": "2026-01-02T03:15:00Z",
                     "summary": ["inputs_drift (data_drift): FAILED features_1, features_3 (2 of 4 features)",
                                 "outputs_drift (prediction_drift): passed (1 feature)"],
                     "last_run": {"status": "failed", "signals": {"inputs_drift": drift, "outputs_drift": {
                         **drift, "type": "prediction_drift", "status": "passed", "failed_features": []}}}}]
        return [m for m in monitors if endpoint in (None, m["endpoint_name"])]

    def update_traffic(self, endpoint: str, traffic: dict[str, int] | None = None,
                       mirror_traffic: dict[str, int] | None = None) -> dict[str, Any]:
        if traffic and sum(traffic.values()) not in (0, 100):
            raise ApiError(f"traffic: live traffic must add up to 0 or 100; "
                           f"{', '.join(f'{k}={v}' for k, v in traffic.items())} adds up to "
                           f"{sum(traffic.values())}", 400, "traffic")
        self.calls.append(("update_traffic", (endpoint, traffic, mirror_traffic)))
        ep = next(e for e in self.endpoints if e["name"] == endpoint)
        if traffic is not None:
            ep["traffic"] = traffic
        if mirror_traffic is not None:
            ep["mirror_traffic"] = mirror_traffic
        return copy.deepcopy(ep)

    def update_deployment(self, endpoint: str, name: str, sets: dict[str, str], wait: float = 120.0) -> dict[str, Any]:
        self.calls.append(("update_deployment", (endpoint, name, sets)))
        return {}

    def restart_deployment(self, endpoint: str, name: str) -> dict[str, Any]:
        self.calls.append(("restart_deployment", (endpoint, name)))
        return {}

    def regenerate_keys(self, endpoint: str, key_type: str, value: str | None = None) -> dict[str, Any]:
        self.calls.append(("regenerate_keys", (endpoint, key_type)))
        return {"regenerated": key_type}

    def get_credentials(self, name: str) -> dict[str, Any]:
        return {"primaryKey": "primary-key-123", "secondaryKey": "secondary-key-456"}

    def get_token(self, endpoint: str, ttl: int = 3600) -> dict[str, Any]:
        return {"accessToken": "token-789"}

    def invoke(self, endpoint: str, body: bytes, deployment: str | None = None) -> Response:
        self.calls.append(("invoke", (endpoint, body)))
        return Response(200, {"x-request-id": "r-1", "azureml-model-deployment": "blue"}, b'{"label": [0, 2]}')

    def delete_endpoint(self, name: str) -> dict[str, Any]:
        self.calls.append(("delete_endpoint", name))
        return {"deleted": name}

    def delete_deployment(self, endpoint: str, name: str) -> dict[str, Any]:
        self.calls.append(("delete_deployment", (endpoint, name)))
        return {"deleted": f"{endpoint}/{name}"}

    def delete_batch_endpoint(self, name: str) -> dict[str, Any]:
        return {"deleted": name}

    def delete_batch_deployment(self, endpoint: str, name: str) -> dict[str, Any]:
        return {"deleted": name}

    def apply(self, documents: list[dict[str, Any]], *, create_only: bool = False, all_traffic: bool = False,
              wait: float = 120.0) -> dict[str, Any]:
        self.calls.append(("apply", documents))
        return {"applied": len(documents)}
