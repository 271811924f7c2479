"""What the registry returns: stored entities with their bookkeeping."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from msgspec import Struct

from appliance.specs import (
    BatchDeploymentSpec,
    BatchEndpointSpec,
    EnvironmentSpec,
    OnlineDeploymentSpec,
    OnlineEndpointSpec,
)


class ModelRecord(Struct, kw_only=True):
    name: str
    version: str
    type: str
    framework: str
    digest: str
    path_name: str
    signature: dict[str, Any] | None
    tags: dict[str, str]
    description: str
    created_at: datetime
    archived: bool = False  # `model archive`: hidden from `model list`, usable by name:version

    @property
    def ref(self) -> str:
        return f"azureml:{self.name}:{self.version}"


class EnvironmentRecord(Struct, kw_only=True):
    name: str
    version: str
    digest: str
    spec: EnvironmentSpec
    created_at: datetime

    @property
    def ref(self) -> str:
        return f"azureml:{self.name}:{self.version}"


class EndpointRecord(Struct, kw_only=True):
    spec: OnlineEndpointSpec
    id: str  # random, given at creation: a re-created endpoint of the same name has another (tokens sign it)
    primary_key: str  # plaintext here; sealed in the database
    secondary_key: str
    created_at: datetime
    updated_at: datetime

    @property
    def name(self) -> str:
        return self.spec.name


class DeploymentRecord(Struct, kw_only=True):
    spec: OnlineDeploymentSpec  # model/environment are azureml:name:version references
    code_digest: str | None
    created_at: datetime
    updated_at: datetime

    @property
    def key(self) -> tuple[str, str]:
        return self.spec.endpoint_name, self.spec.name


class Event(Struct, kw_only=True):
    id: int
    at: datetime
    kind: str
    subject: str
    detail: dict[str, Any]


class BatchEndpointRecord(Struct, kw_only=True):
    spec: BatchEndpointSpec
    id: str
    primary_key: str  # plaintext here; sealed in the database
    secondary_key: str
    created_at: datetime
    updated_at: datetime

    @property
    def name(self) -> str:
        return self.spec.name


class BatchDeploymentRecord(Struct, kw_only=True):
    spec: BatchDeploymentSpec  # model/environment are azureml:name:version references
    code_digest: str | None
    created_at: datetime
    updated_at: datetime

    @property
    def key(self) -> tuple[str, str]:
        return self.spec.endpoint_name, self.spec.name


class DataRecord(Struct, kw_only=True):
    name: str
    version: str
    type: str
    digest: str
    path_name: str  # the stored file or folder's name
    description: str
    tags: dict[str, str]
    created_at: datetime

    @property
    def ref(self) -> str:
        return f"azureml:{self.name}:{self.version}"


FINAL_STATES = ("Completed", "Failed", "Canceled")


class JobRecord(Struct, kw_only=True):
    name: str
    endpoint_name: str
    deployment_name: str
    status: str  # Azure's: Preparing, Running, Completed, Failed, Canceled
    spec: BatchDeploymentSpec  # the deployment at invoke, with the invoke's overrides
    code_digest: str | None
    input: dict[str, Any]  # {path, type, asset}
    output_dir: str
    error: str | None
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATES


class MiniBatch(Struct, kw_only=True):
    idx: int
    files: list[str]
    status: str  # pending, running, done, failed
    attempts: int = 0
    succeeded: int = 0
    failed: int = 0
    error: str | None = None


class MonitorRecord(Struct, kw_only=True):
    name: str
    endpoint_name: str
    deployment_name: str
    spec: dict[str, Any]  # appliance.telemetry.signals.parse's
    created_at: datetime
    updated_at: datetime
    last_run_at: datetime | None
    next_run_at: datetime | None  # None: its trigger fires no more


class MonitorRun(Struct, kw_only=True):
    id: int
    monitor: str
    at: datetime
    status: str  # passed, failed, error, no_data
    result: dict[str, Any]  # {signals: {name: {status, failed_features, metrics, ...}}}
