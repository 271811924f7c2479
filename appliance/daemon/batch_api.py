"""The control API's batch half (`/api/v1`): batch endpoints and deployments, data assets, jobs."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Annotated, Any

from litestar import Request, delete, get, post
from litestar.params import Parameter
from msgspec import Meta, Struct

from appliance.daemon import views
from appliance.daemon.api import (
    _BAD,
    _BODY,
    _CONFLICT,
    _MISSING,
    AssetName,
    AssetVersion,
    Deleted,
    DocumentIn,
    EndpointName,
    Keys,
    Tail,
    _answers,
    _base_url,
    _control,
    _parse,
)
from appliance.daemon.jobs import Invocation
from appliance.registry import JobRecord
from appliance.specs import Conflict, DataSpec, SpecError

JobName = Annotated[str, Parameter(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$", description="A job's name")]
LogFile = Annotated[str | None, Parameter(max_length=300, description="A file under the job's logs folder")]


# -- batch endpoints ------------------------------------------------------------------------------

@get("/batch-endpoints", responses=_answers())
async def list_batch_endpoints(request: Request[Any, Any, Any]) -> list[views.BatchEndpointView]:
    records = await asyncio.to_thread(_control(request).registry.list_batch_endpoints)
    return [views.batch_endpoint(r, _base_url(request)) for r in records]


@get("/batch-endpoints/{name:str}", responses=_answers(_BAD, _MISSING))
async def show_batch_endpoint(request: Request[Any, Any, Any], name: EndpointName) -> views.BatchEndpointView:
    rec = await asyncio.to_thread(_control(request).registry.get_batch_endpoint, name)
    return views.batch_endpoint(rec, _base_url(request))


@delete("/batch-endpoints/{name:str}", status_code=200, responses=_answers(_BAD, _MISSING))
async def delete_batch_endpoint(request: Request[Any, Any, Any], name: EndpointName) -> Deleted:
    """Its running jobs are canceled first; its deployments go with it (jobs stay, to be read)."""
    control = _control(request)
    await asyncio.to_thread(control.registry.get_batch_endpoint, name)
    await control.jobs.cancel_endpoint(name)

    def remove() -> None:
        with control.registry.transaction():
            control.registry.delete_batch_endpoint(name)
            control.registry.add_event("batch_endpoint.deleted", name)

    await asyncio.to_thread(remove)
    await control.remove_unused_artifacts()
    return Deleted(deleted=name)


@get("/batch-endpoints/{endpoint:str}/deployments", responses=_answers(_BAD, _MISSING))
async def list_batch_deployments(request: Request[Any, Any, Any],
                                 endpoint: EndpointName) -> list[views.BatchDeploymentView]:
    registry = _control(request).registry
    ep = await asyncio.to_thread(registry.get_batch_endpoint, endpoint)
    records = await asyncio.to_thread(registry.list_batch_deployments, endpoint)
    return [views.batch_deployment(r, ep.spec.defaults.deployment_name) for r in records]


@get("/batch-endpoints/{endpoint:str}/deployments/{name:str}", responses=_answers(_BAD, _MISSING))
async def show_batch_deployment(request: Request[Any, Any, Any], endpoint: EndpointName,
                                name: EndpointName) -> views.BatchDeploymentView:
    registry = _control(request).registry
    ep = await asyncio.to_thread(registry.get_batch_endpoint, endpoint)
    rec = await asyncio.to_thread(registry.get_batch_deployment, endpoint, name)
    return views.batch_deployment(rec, ep.spec.defaults.deployment_name)


@delete("/batch-endpoints/{endpoint:str}/deployments/{name:str}", status_code=200,
        responses=_answers(_BAD, _MISSING, _CONFLICT))
async def delete_batch_deployment(request: Request[Any, Any, Any], endpoint: EndpointName,
                                  name: EndpointName) -> Deleted:
    """Refused for the endpoint's default deployment while it has others (Azure's rule)."""
    control = _control(request)

    def remove() -> None:
        with control.registry.transaction():
            ep = control.registry.get_batch_endpoint(endpoint)
            control.registry.get_batch_deployment(endpoint, name)
            others = [d.spec.name for d in control.registry.list_batch_deployments(endpoint) if d.spec.name != name]
            if ep.spec.defaults.deployment_name == name and others:
                raise Conflict(f"deployment {name!r} is batch endpoint {endpoint!r}'s default; make another the "
                               f"default first: appliance batch-endpoint update -n {endpoint} --set "
                               f"defaults.deployment_name={others[0]}", field="defaults.deployment_name")
            control.registry.delete_batch_deployment(endpoint, name)
            control.registry.add_event("batch_deployment.deleted", f"{endpoint}/{name}")

    await asyncio.to_thread(remove)
    await control.remove_unused_artifacts()
    return Deleted(deleted=name)


@post("/batch-endpoints/{name:str}/credentials", status_code=200, responses=_answers(_BAD, _MISSING))
async def batch_credentials(request: Request[Any, Any, Any], name: EndpointName) -> Keys:
    """Keys for `POST /endpoints/{name}/jobs` (Azure's REST invoke), whatever the endpoint's auth_mode:
    Azure's Entra token has no local counterpart."""
    rec = await asyncio.to_thread(_control(request).registry.get_batch_endpoint, name)
    return Keys(primaryKey=rec.primary_key, secondaryKey=rec.secondary_key)


# -- jobs -------------------------------------------------------------------------------------------

class InvokeIn(Struct, forbid_unknown_fields=True):
    """`batch-endpoint invoke`'s options, Azure's names."""

    input: Annotated[str, Meta(min_length=1, max_length=4096)]
    input_type: Annotated[str, Meta(pattern="^(uri_folder|uri_file)$")] | None = None
    deployment_name: Annotated[str, Meta(pattern=r"^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$", max_length=32)] | None = None
    output_path: Annotated[str, Meta(min_length=1, max_length=4096)] | None = None
    output_file_name: Annotated[str, Meta(min_length=1, max_length=255)] | None = None
    mini_batch_size: Annotated[int, Meta(ge=1, le=1_000_000)] | None = None
    instance_count: Annotated[int, Meta(ge=1, le=64)] | None = None


async def _job_view(request: Request[Any, Any, Any], job: JobRecord) -> views.JobView:
    jobs = _control(request).jobs
    progress = await asyncio.to_thread(jobs.progress, job)
    files = await asyncio.to_thread(jobs.log_files, job.name)
    return views.job(job, progress.__dict__, files)


@post("/batch-endpoints/{endpoint:str}/jobs", status_code=201, responses=_answers(*_BODY, _MISSING))
async def invoke_batch(request: Request[Any, Any, Any], endpoint: EndpointName, data: InvokeIn) -> views.JobView:
    """A job scoring `input` with the endpoint's default deployment (or `deployment_name`); it runs in the
    background: follow it with `GET /jobs/{name}`."""
    how = Invocation(**{f: getattr(data, f) for f in data.__struct_fields__})
    job = await _control(request).jobs.invoke(endpoint, how)
    return await _job_view(request, job)


@get("/jobs", responses=_answers(_BAD))
async def list_jobs(request: Request[Any, Any, Any], endpoint: str | None = None,
                    deployment: str | None = None) -> list[views.JobView]:
    records = await asyncio.to_thread(_control(request).registry.list_jobs, endpoint, deployment)
    return [await _job_view(request, r) for r in records]


@get("/jobs/{name:str}", responses=_answers(_BAD, _MISSING))
async def show_job(request: Request[Any, Any, Any], name: JobName) -> views.JobView:
    job = await asyncio.to_thread(_control(request).registry.get_job, name)
    return await _job_view(request, job)


class CancelIn(Struct, forbid_unknown_fields=True):
    pass


@post("/jobs/{name:str}/cancel", status_code=200, responses=_answers(*_BODY, _MISSING))
async def cancel_job(request: Request[Any, Any, Any], name: JobName, data: CancelIn | None = None) -> views.JobView:
    """Stops the job's workers (at once) and answers once it is Canceled; a finished job stays as it ended."""
    job = await _control(request).jobs.cancel(name)
    return await _job_view(request, job)


class JobLog(Struct, omit_defaults=True):
    files: list[str] | None = None  # without `file`: what there is to read
    file: str | None = None
    lines: list[str] | None = None


@get("/jobs/{name:str}/logs", responses=_answers(_BAD, _MISSING))
async def job_logs(request: Request[Any, Any, Any], name: JobName, file: LogFile = None,
                   lines: Tail = None) -> JobLog:
    control = _control(request)
    await asyncio.to_thread(control.registry.get_job, name)
    files = await asyncio.to_thread(control.jobs.log_files, name)
    if file is None:
        return JobLog(files=files)
    if file not in files:
        raise SpecError(f"job {name} has no log file {file!r}; it has: {', '.join(files) or 'none yet'}", field="file")
    path = control.jobs.folder(name) / "logs" / file

    def read() -> list[str]:
        with path.open(errors="replace") as src:
            return [line.rstrip("\n") for line in (deque(src, lines) if lines is not None else src)]

    return JobLog(file=file, lines=await asyncio.to_thread(read))


# -- data assets ----------------------------------------------------------------------------------

def _data_view(request: Request[Any, Any, Any], rec: Any) -> views.DataView:
    store = _control(request).registry.artifacts
    return views.data(rec, str(store.path(rec.digest) / rec.path_name))


@post("/data", status_code=201, responses=_answers(*_BODY, _CONFLICT))
async def create_data(request: Request[Any, Any, Any], data: DocumentIn) -> views.DataView:
    """A data asset: the file or folder copied into the store (a snapshot, as Azure's upload is)."""
    control = _control(request)
    document = await asyncio.to_thread(_parse, data)
    if not isinstance(document.spec, DataSpec):
        raise SpecError(f"expected a data asset document (type: uri_folder or uri_file, path), got a "
                        f"{document.kind.replace('_', ' ')}", field="$schema")
    outcome = await control.apply([document])
    applied = outcome.applied[0]
    rec = await asyncio.to_thread(control.registry.get_data, applied["name"], applied["version"])
    return _data_view(request, rec)


@get("/data", responses=_answers(_BAD))
async def list_data(request: Request[Any, Any, Any], name: str | None = None) -> list[views.DataView]:
    records = await asyncio.to_thread(_control(request).registry.list_data, name)
    return [_data_view(request, r) for r in records]


@get("/data/{name:str}", responses=_answers(_BAD, _MISSING))
async def show_data(request: Request[Any, Any, Any], name: AssetName, version: AssetVersion = None) -> views.DataView:
    rec = await asyncio.to_thread(_control(request).registry.get_data, name, version)
    return _data_view(request, rec)


HANDLERS = [list_batch_endpoints, show_batch_endpoint, delete_batch_endpoint, batch_credentials, list_batch_deployments,
            show_batch_deployment, delete_batch_deployment, invoke_batch, list_jobs, show_job, cancel_job, job_logs,
            create_data, list_data, show_data]
