"""JSON views of stored entities, joined with what the runtime knows. Each is a typed struct, so the
control API's OpenAPI schema says exactly what it returns (and a fuzzer can hold it to that)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec

from appliance.registry import (
    BatchDeploymentRecord,
    BatchEndpointRecord,
    DataRecord,
    DeploymentRecord,
    EndpointRecord,
    EnvironmentRecord,
    Event,
    JobRecord,
    ModelRecord,
)
from appliance.runtime import DeploymentRuntime
from appliance.specs import (
    BatchDeploymentSpec,
    BatchEndpointSpec,
    BatchSettings,
    OnlineDeploymentSpec,
    OnlineEndpointSpec,
)
from appliance.telemetry.sizing import Profile


def _utc(at: datetime) -> datetime:
    """The registry keeps naive UTC times; the API writes them as RFC 3339 (`...Z`)."""
    return at if at.tzinfo else at.replace(tzinfo=UTC)


class ModelView(ModelRecord, kw_only=True):
    id: str  # azureml:<name>:<version>


class EnvironmentView(EnvironmentRecord, kw_only=True):
    id: str


class EndpointView(OnlineEndpointSpec, kw_only=True):
    scoring_uri: str
    swagger_uri: str
    openapi_uri: str  # Azure's name for the same document
    provisioning_state: str
    created_at: datetime
    updated_at: datetime


class DeploymentView(OnlineDeploymentSpec, kw_only=True):
    provisioning_state: str  # Azure's: Creating, Updating, Succeeded, Failed
    error: str | None
    provider: str | None  # the instances' execution providers, e.g. CPUExecutionProvider
    instances: list[dict[str, Any]]  # name, state, pid, provider, restarts, outstanding, error, log, ...
    traffic: int  # percent of the endpoint's live traffic
    created_at: datetime
    updated_at: datetime
    profile: Profile | None = None  # the last `deployment profile`: its curve and recommended size


def model(rec: ModelRecord) -> ModelView:
    return ModelView(**{**msgspec.structs.asdict(rec), "created_at": _utc(rec.created_at)}, id=rec.ref)


def environment(rec: EnvironmentRecord) -> EnvironmentView:
    return EnvironmentView(**{**msgspec.structs.asdict(rec), "created_at": _utc(rec.created_at)}, id=rec.ref)


def endpoint(rec: EndpointRecord, base_url: str) -> EndpointView:
    return EndpointView(**msgspec.structs.asdict(rec.spec), scoring_uri=f"{base_url}/endpoints/{rec.name}/score",
                        swagger_uri=f"{base_url}/endpoints/{rec.name}/swagger.json",
                        openapi_uri=f"{base_url}/endpoints/{rec.name}/swagger.json",
                        provisioning_state="Succeeded",
                        created_at=_utc(rec.created_at), updated_at=_utc(rec.updated_at))


def deployment(rec: DeploymentRecord, runtime: DeploymentRuntime | None, traffic: int,
               profile: Profile | None = None) -> DeploymentView:
    status = runtime.describe() if runtime else {}
    spec = msgspec.structs.asdict(rec.spec)
    if status.get("runtime"):  # what it runs on, once chosen (the spec's may be unset)
        spec["runtime"] = status["runtime"]
    return DeploymentView(**spec, provisioning_state=status.get("provisioning_state", "Creating"),
                          error=status.get("error"), provider=status.get("provider"),
                          instances=status.get("instances", []), traffic=traffic,
                          created_at=_utc(rec.created_at), updated_at=_utc(rec.updated_at), profile=profile)


def stored_profile(value: dict[str, Any] | None) -> Profile | None:
    """A stored profile as its struct (None: none stored, or one this version can't read)."""
    if value is None:
        return None
    try:
        return msgspec.convert(value, Profile)
    except msgspec.ValidationError:
        return None


def event(ev: Event) -> Event:
    return msgspec.structs.replace(ev, at=_utc(ev.at))


class BatchEndpointView(BatchEndpointSpec, kw_only=True):
    scoring_uri: str  # POST a job here (Azure's REST invoke), with the endpoint's key or token
    provisioning_state: str
    created_at: datetime
    updated_at: datetime


class BatchDeploymentView(BatchDeploymentSpec, kw_only=True):
    provisioning_state: str
    default: bool  # the endpoint's default deployment
    created_at: datetime
    updated_at: datetime


class DataView(DataRecord, kw_only=True):
    id: str  # azureml:<name>:<version>
    path: str  # the stored copy jobs read


class JobView(msgspec.Struct, kw_only=True):
    name: str
    type: str  # Azure's batch jobs are pipeline jobs
    status: str  # Preparing, Running, Completed, Failed, Canceled
    endpoint_name: str
    deployment_name: str
    input: dict[str, Any]  # {path, type, asset}
    outputs: dict[str, dict[str, str]]  # {score: {path}}
    output_file_name: str
    output_action: str
    settings: BatchSettings
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    error: str | None
    progress: dict[str, Any]
    log_files: list[str]  # under the job's logs folder: job_progress_overview.txt, job_error.txt, ...


def batch_endpoint(rec: BatchEndpointRecord, base_url: str) -> BatchEndpointView:
    return BatchEndpointView(**msgspec.structs.asdict(rec.spec), scoring_uri=f"{base_url}/endpoints/{rec.name}/jobs",
                             provisioning_state="Succeeded", created_at=_utc(rec.created_at),
                             updated_at=_utc(rec.updated_at))


def batch_deployment(rec: BatchDeploymentRecord, default: str | None) -> BatchDeploymentView:
    return BatchDeploymentView(**msgspec.structs.asdict(rec.spec), provisioning_state="Succeeded",
                               default=rec.spec.name == default, created_at=_utc(rec.created_at),
                               updated_at=_utc(rec.updated_at))


def data(rec: DataRecord, path: str) -> DataView:
    return DataView(**{**msgspec.structs.asdict(rec), "created_at": _utc(rec.created_at)}, id=rec.ref, path=path)


def job(rec: JobRecord, progress: dict[str, Any], log_files: list[str]) -> JobView:
    settings = rec.spec.settings
    return JobView(name=rec.name, type="pipeline", status=rec.status, endpoint_name=rec.endpoint_name,
                   deployment_name=rec.deployment_name, input=rec.input, outputs={"score": {"path": rec.output_dir}},
                   output_file_name=settings.output_file_name, output_action=settings.output_action,
                   settings=settings, created_at=_utc(rec.created_at),
                   started_at=_utc(rec.started_at) if rec.started_at else None,
                   ended_at=_utc(rec.ended_at) if rec.ended_at else None, error=rec.error, progress=progress,
                   log_files=log_files)
