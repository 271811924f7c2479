"""The control API (`/api/v1`), a Litestar app. Handlers are thin: parse, call `Control`, view."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
from litestar import Litestar, Request, Response, delete, get, post, put
from litestar.exceptions import HTTPException
from litestar.openapi import OpenAPIConfig
from litestar.response import Stream
from msgspec import Struct

import appliance
from appliance.builder import images
from appliance.builder.run import BuildError
from appliance.daemon import views
from appliance.daemon.control import Control
from appliance.registry.requestlog import RequestLogStore
from appliance.router.dataplane import DataPlane
from appliance.runtime import logs
from appliance.specs import Document, ModelSpec, SpecError, parse
from appliance.telemetry.requestlog import RequestLog

log = logging.getLogger("appliance.api")


class DocumentIn(Struct):
    body: dict[str, Any]
    source: str = "<request>"
    base: str | None = None  # folder that relative paths are relative to; the source's by default


class ApplyIn(Struct):
    documents: list[DocumentIn]
    create_only: bool = False
    all_traffic: bool = False
    wait: float = 120.0


def _control(request: Request[Any, Any, Any]) -> Control:
    return request.app.state.control


def _base_url(request: Request[Any, Any, Any]) -> str:
    return request.app.state.base_url


def _parse(doc: DocumentIn) -> Document:
    return parse(doc.body, doc.source, Path(doc.base) if doc.base else None)


@get("/health")
async def health() -> dict[str, Any]:
    return {"status": "ok", "version": appliance.__version__}


async def _apply(control: Control, data: ApplyIn, progress: Callable[[str], None] | None) -> dict[str, Any]:
    documents = await asyncio.to_thread(lambda: [_parse(d) for d in data.documents])
    outcome = await control.apply(documents, create_only=data.create_only, all_traffic=data.all_traffic,
                                  wait=data.wait, progress=progress)
    deployments = [await _deployment_view(control, ep, name) for ep, name in outcome.deployments]
    return {"applied": outcome.applied, "warnings": outcome.warnings, "deployments": deployments}


@post("/apply", status_code=200)
async def apply(request: Request[Any, Any, Any], data: ApplyIn) -> dict[str, Any]:
    return await _apply(_control(request), data, None)


@post("/apply/stream", status_code=200)
async def apply_streamed(request: Request[Any, Any, Any], data: ApplyIn) -> Stream:
    """`/apply`, with environment builds' output streamed as they happen (NDJSON)."""
    control = _control(request)
    return _stream(lambda say: _apply(control, data, say))


# -- models and environments ------------------------------------------------------------------

@get("/models")
async def list_models(request: Request[Any, Any, Any], name: str | None = None) -> list[dict[str, Any]]:
    records = await asyncio.to_thread(_control(request).registry.list_models, name)
    return [views.model(r) for r in records]


@get("/models/{name:str}")
async def show_model(request: Request[Any, Any, Any], name: str, version: str | None = None) -> dict[str, Any]:
    return views.model(await asyncio.to_thread(_control(request).registry.get_model, name, version))


@post("/models", status_code=201)
async def create_model(request: Request[Any, Any, Any], data: DocumentIn) -> dict[str, Any]:
    doc = _parse(data)
    if not isinstance(doc.spec, ModelSpec):
        raise SpecError(f"expected a model, got a {doc.kind}", source=doc.source)
    return views.model(await asyncio.to_thread(_control(request).register_model, doc.spec))


@get("/environments")
async def list_environments(request: Request[Any, Any, Any]) -> list[dict[str, Any]]:
    return [views.environment(r) for r in await asyncio.to_thread(_control(request).registry.list_environments)]


@get("/environments/{name:str}")
async def show_environment(request: Request[Any, Any, Any], name: str,
                           version: str | None = None) -> dict[str, Any]:
    return views.environment(await asyncio.to_thread(_control(request).registry.get_environment, name, version))


def _stream(work: Callable[[Callable[[str], None]], Awaitable[dict[str, Any]]]) -> Stream:
    """Run `work`, streaming the lines it says (from any thread), then its result or error, as NDJSON."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

    def say(text: str) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, {"log": text})

    async def run() -> None:
        try:
            queue.put_nowait({"result": await work(say)})
        except (SpecError, BuildError, images.DockerUnavailable) as exc:
            queue.put_nowait({"error": str(exc)})
        except Exception as exc:
            log.exception("streamed operation failed")
            queue.put_nowait({"error": f"internal error ({type(exc).__name__}: {exc}); see the daemon log"})
        finally:
            queue.put_nowait(None)

    task = asyncio.create_task(run())

    async def lines() -> AsyncIterator[bytes]:
        while (item := await queue.get()) is not None:
            yield msgspec.json.encode(item) + b"\n"
        await task

    return Stream(lines(), media_type="application/x-ndjson")


@post("/environments/{name:str}/build", status_code=200)
async def build_environment(request: Request[Any, Any, Any], name: str, version: str | None = None) -> Stream:
    control = _control(request)
    return _stream(lambda say: asyncio.to_thread(control.build_environment, name, version, say))


@post("/endpoints/{endpoint:str}/deployments/{name:str}/package", status_code=200)
async def package(request: Request[Any, Any, Any], endpoint: str, name: str, push: str | None = None) -> Stream:
    control = _control(request)
    return _stream(lambda say: asyncio.to_thread(control.package, endpoint, name, push, say))


# -- endpoints ---------------------------------------------------------------------------------

@get("/endpoints")
async def list_endpoints(request: Request[Any, Any, Any]) -> list[dict[str, Any]]:
    records = await asyncio.to_thread(_control(request).registry.list_endpoints)
    return [views.endpoint(r, _base_url(request)) for r in records]


@get("/endpoints/{name:str}")
async def show_endpoint(request: Request[Any, Any, Any], name: str) -> dict[str, Any]:
    rec = await asyncio.to_thread(_control(request).registry.get_endpoint, name)
    return views.endpoint(rec, _base_url(request))


@delete("/endpoints/{name:str}", status_code=200)
async def delete_endpoint(request: Request[Any, Any, Any], name: str) -> dict[str, Any]:
    await _control(request).delete_endpoint(name)
    return {"deleted": name}


@post("/endpoints/{name:str}/credentials", status_code=200)
async def credentials(request: Request[Any, Any, Any], name: str) -> dict[str, Any]:
    rec = await asyncio.to_thread(_control(request).registry.get_endpoint, name)
    if rec.spec.auth_mode != "key":
        raise SpecError(f"endpoint {name!r} uses auth_mode {rec.spec.auth_mode}; ask for a token instead",
                        field="auth_mode")
    return {"primaryKey": rec.primary_key, "secondaryKey": rec.secondary_key}


class TrafficIn(Struct):
    traffic: dict[str, int] | None = None
    mirror_traffic: dict[str, int] | None = None


class RegenerateIn(Struct):
    key_type: str
    value: str | None = None


@post("/endpoints/{name:str}/traffic", status_code=200)
async def update_traffic(request: Request[Any, Any, Any], name: str, data: TrafficIn) -> dict[str, Any]:
    rec = await _control(request).update_traffic(name, data.traffic, data.mirror_traffic)
    return views.endpoint(rec, _base_url(request))


@post("/endpoints/{name:str}/regenerate-keys", status_code=200)
async def regenerate_keys(request: Request[Any, Any, Any], name: str, data: RegenerateIn) -> dict[str, Any]:
    await _control(request).regenerate_key(name, data.key_type, data.value)
    return {"regenerated": data.key_type}


@post("/endpoints/{name:str}/token", status_code=200)
async def get_token(request: Request[Any, Any, Any], name: str, ttl: int = 3600) -> dict[str, Any]:
    return await asyncio.to_thread(_control(request).token, name, ttl)


# -- request log -------------------------------------------------------------------------------

async def _request_log(request: Request[Any, Any, Any], endpoint: str) -> RequestLogStore:
    """The log's store, once the endpoint is known and every request so far is written."""
    await asyncio.to_thread(_control(request).registry.get_endpoint, endpoint)
    writer: RequestLog = request.app.state.request_log
    await asyncio.to_thread(writer.flush)
    return writer.store


class RequestLogSwitch(Struct, forbid_unknown_fields=True):
    enabled: bool


def _request_log_status(request: Request[Any, Any, Any]) -> dict[str, Any]:
    writer: RequestLog = request.app.state.request_log
    return {"enabled": request.app.state.dataplane.recorder is not None, "written": writer.written,
            "waiting": writer.pending, "dropped": writer.dropped, "failed": writer.failed,
            "retention_s": writer.retention, "pruned": writer.pruned}


@get("/request-log")
async def request_log_status(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """Whether requests are being logged, the writer's counts (in requests) since the daemon started, its
    retention (seconds; null keeps every row) and the rows it deleted for being older."""
    return _request_log_status(request)


@put("/request-log")
async def switch_request_log(request: Request[Any, Any, Any], data: RequestLogSwitch) -> dict[str, Any]:
    """Log requests from now on, or stop (for this daemon's life; `up --no-request-log` starts it off).
    Switched off, the data plane records nothing; what it recorded before is still written."""
    dataplane: DataPlane = request.app.state.dataplane
    dataplane.recorder = request.app.state.request_log if data.enabled else None
    log.info("request log switched %s", "on" if data.enabled else "off")
    return _request_log_status(request)


@get("/endpoints/{name:str}/logs")
async def request_logs(request: Request[Any, Any, Any], name: str, since: float | None = None,
                       deployment: str | None = None, after_id: int = 0, limit: int = 200) -> list[dict[str, Any]]:
    store = await _request_log(request, name)
    return await asyncio.to_thread(store.tail, name, since_seconds=since, deployment=deployment,
                                   after_id=after_id, limit=limit)


@get("/endpoints/{name:str}/metrics")
async def metrics(request: Request[Any, Any, Any], name: str, since: float = 300) -> list[dict[str, Any]]:
    store = await _request_log(request, name)
    return await asyncio.to_thread(store.metrics, name, since)


@get("/endpoints/{name:str}/mirror-report")
async def mirror_report(request: Request[Any, Any, Any], name: str, since: float = 600) -> dict[str, Any]:
    store = await _request_log(request, name)
    return await asyncio.to_thread(store.mirror_report, name, since)


# -- deployments -------------------------------------------------------------------------------

async def _deployment_view(control: Control, endpoint: str, name: str) -> dict[str, Any]:
    def read() -> tuple[Any, int]:
        rec = control.registry.get_deployment(endpoint, name)
        return rec, control.registry.get_endpoint(endpoint).spec.traffic.get(name, 0)

    rec, traffic = await asyncio.to_thread(read)
    return views.deployment(rec, control.supervisor.get(endpoint, name), traffic)


@get("/endpoints/{endpoint:str}/deployments")
async def list_deployments(request: Request[Any, Any, Any], endpoint: str) -> list[dict[str, Any]]:
    control = _control(request)
    records = await asyncio.to_thread(lambda: (control.registry.get_endpoint(endpoint),
                                               control.registry.list_deployments(endpoint)))
    ep, deployments = records
    return [views.deployment(d, control.supervisor.get(endpoint, d.spec.name), ep.spec.traffic.get(d.spec.name, 0))
            for d in deployments]


@get("/endpoints/{endpoint:str}/deployments/{name:str}")
async def show_deployment(request: Request[Any, Any, Any], endpoint: str, name: str) -> dict[str, Any]:
    return await _deployment_view(_control(request), endpoint, name)


class UpdateIn(Struct):
    set: dict[str, str]
    wait: float = 120.0


@post("/endpoints/{endpoint:str}/deployments/{name:str}/update", status_code=200)
async def update_deployment(request: Request[Any, Any, Any], endpoint: str, name: str,
                            data: UpdateIn) -> dict[str, Any]:
    control = _control(request)
    outcome = await control.update_deployment(endpoint, name, data.set, data.wait)
    deployments = [await _deployment_view(control, ep, dep) for ep, dep in outcome.deployments]
    return {"applied": outcome.applied, "warnings": outcome.warnings, "deployments": deployments}


@get("/endpoints/{endpoint:str}/deployments/{name:str}/logs")
async def deployment_logs(request: Request[Any, Any, Any], endpoint: str, name: str, instance: str | None = None,
                          since: float | None = None, tail: int | None = None,
                          cursor: str | None = None) -> dict[str, Any]:
    """The workers' output; pass the returned `cursor` back to get only what came after."""
    control = _control(request)
    await asyncio.to_thread(control.registry.get_deployment, endpoint, name)
    start = None
    if since is not None:
        start = (datetime.now(UTC) - timedelta(seconds=since)).isoformat(timespec="milliseconds")
        start = start.replace("+00:00", "Z")
    folder = control.supervisor.logs_dir / endpoint / name
    lines, after = await asyncio.to_thread(logs.read, folder, instance=instance, since=start, tail=tail,
                                           cursor=msgspec.json.decode(cursor) if cursor else None)
    return {"lines": lines, "cursor": msgspec.json.encode(after).decode()}


@delete("/endpoints/{endpoint:str}/deployments/{name:str}", status_code=200)
async def delete_deployment(request: Request[Any, Any, Any], endpoint: str, name: str) -> dict[str, Any]:
    await _control(request).delete_deployment(endpoint, name)
    return {"deleted": f"{endpoint}/{name}"}


@get("/events")
async def events(request: Request[Any, Any, Any], subject: str | None = None,
                 limit: int = 100) -> list[dict[str, Any]]:
    return [views.event(e) for e in await asyncio.to_thread(_control(request).registry.list_events, subject, limit)]


# -- errors ------------------------------------------------------------------------------------

def _spec_error(_: Request[Any, Any, Any], exc: SpecError) -> Response[dict[str, Any]]:
    return Response(exc.to_json(), status_code=exc.status)


def _http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, Any]]:
    extra = exc.extra if isinstance(exc.extra, list | dict) else None
    body: dict[str, Any] = {"message": exc.detail, "field": None}
    if extra:
        body["details"] = extra
    return Response(body, status_code=exc.status_code)


def _server_error(_: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    request_id = uuid.uuid4().hex
    log.exception("request %s failed", request_id, exc_info=exc)
    return Response({"message": f"internal error ({type(exc).__name__}); request id {request_id} is in the "
                                "daemon log", "field": None, "request_id": request_id}, status_code=500)


def create_app(control: Control, request_log: RequestLog, dataplane: DataPlane, base_url: str,
               on_startup: list[Any], on_shutdown: list[Any]) -> Litestar:
    from litestar import Router

    api = Router("/api/v1", route_handlers=[
        health, apply, apply_streamed, build_environment, package, list_models, show_model, create_model,
        list_environments, show_environment,
        list_endpoints, show_endpoint, delete_endpoint, credentials, update_traffic, regenerate_keys, get_token,
        request_log_status, switch_request_log, request_logs, metrics, mirror_report,
        list_deployments, show_deployment, update_deployment, deployment_logs, delete_deployment, events])
    app = Litestar(
        route_handlers=[api], on_startup=on_startup, on_shutdown=on_shutdown,
        exception_handlers={SpecError: _spec_error, HTTPException: _http_error, Exception: _server_error},
        openapi_config=OpenAPIConfig(title="appliance control API", version=appliance.__version__,
                                     path="/api/v1/schema"),
        logging_config=None)
    app.state.control = control
    app.state.request_log = request_log
    app.state.dataplane = dataplane
    app.state.base_url = base_url
    return app
