"""The control API (`/api/v1`), a Litestar app. Handlers are thin: parse, call `Control`, view."""

from __future__ import annotations

import asyncio
import logging
import re
import reprlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
from litestar import Litestar, Request, Response, delete, get, post, put, route
from litestar._openapi.schema_generation.plugins.struct import StructSchemaPlugin
from litestar.exceptions import HTTPException, ValidationException
from litestar.handlers import HTTPRouteHandler
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.openapi.spec import Reference, Schema
from litestar.params import Parameter
from litestar.response import Stream
from msgspec import Meta, Struct

import appliance
from appliance.builder import images
from appliance.builder.run import BuildError
from appliance.daemon import background, views
from appliance.daemon.control import Control
from appliance.registry import EndpointRecord, Event
from appliance.registry.requestlog import RequestLogStore
from appliance.router.dataplane import DataPlane
from appliance.runtime import logs
from appliance.specs import Conflict, Document, ModelSpec, SpecError, parse
from appliance.specs.names import ASSET_NAME, ASSET_VERSION, ENDPOINT_NAME
from appliance.telemetry.requestlog import RequestLog

log = logging.getLogger("appliance.api")

# -- what every operation may answer, for the OpenAPI schema ------------------------------------


class ErrorBody(Struct):
    """Every error answer: a message naming the value at fault and what is allowed, and its field."""

    message: str
    field: str | None  # the parameter or (dotted) document field at fault, if one is
    file: str | None = None  # the document's source, for an error in an applied file
    details: list[dict[str, Any]] | None = None  # request validation: each {key, source, message}
    request_id: str | None = None  # a server fault: its traceback is under this id in the daemon log


def _error(description: str) -> ResponseSpec:
    return ResponseSpec(ErrorBody, description=description, generate_examples=False)


# What the daemon's front door (appliance.daemon.asgi) answers before a request reaches the API.
_FRONT_DOOR = {
    403: _error("A foreign `Origin` (or `Host`): the control API serves the daemon's own origin only"),
    415: _error("A request body that is not `application/json`"),
    431: _error("Request headers larger than 16 KiB"),
    500: _error("A server fault; `request_id` names it in the daemon log"),
    503: _error("Too many connections; try again shortly"),
}
_ADMIN = {401: _error("No `Authorization: Bearer <admin token>`, or a wrong one (the token is in the "
                      "home's admin.token file)")}
_BAD = {400: _error("A parameter or body field that is malformed or out of range; `field` names it")}
_MISSING = {404: _error("The model, environment, endpoint or deployment named does not exist")}
_CONFLICT = {409: _error("Conflicts with what is stored: it exists already with other content, or "
                         "takes live traffic")}
_TOO_LARGE = {413: _error("A request body larger than the daemon accepts")}


def _answers(*more: dict[int, ResponseSpec]) -> dict[int, ResponseSpec]:
    """The error answers of an operation behind the admin token, with `more` of its own."""
    answers = {**_FRONT_DOOR, **_ADMIN}
    for extra in more:
        answers |= extra
    return answers


_BODY = (_BAD, _TOO_LARGE)  # what an operation with a JSON body may answer besides


# -- parameters, with the bounds they are checked against ---------------------------------------

MAX_WINDOW = 10 * 365 * 86_400  # seconds: ten years, the furthest back a window reaches
MAX_ROWS = 10_000  # request-log rows and events in one answer
MAX_ID = 2**53 - 1  # the largest integer every JSON reader keeps exact
MAX_LINES = 1_000_000  # log lines in one answer

# The name rules of appliance.specs.names, in words for messages and the schema.
_RULES = {ENDPOINT_NAME.pattern: "3-32 letters, digits and '-', a letter first, not ending with '-'",
          ASSET_NAME.pattern: "up to 255 letters, digits, '-', '_' and '.', a letter or digit first",
          ASSET_VERSION.pattern: "up to 30 letters, digits, '-', '_' and '.', a letter or digit first"}
EndpointName = Annotated[str, Parameter(pattern=ENDPOINT_NAME.pattern, min_length=3, max_length=32,
                                        description=f"An endpoint or deployment name: {_RULES[ENDPOINT_NAME.pattern]}")]
AssetName = Annotated[str, Parameter(pattern=ASSET_NAME.pattern,
                                     description=f"A model or environment name: {_RULES[ASSET_NAME.pattern]}")]
AssetVersion = Annotated[str | None, Parameter(
    pattern=ASSET_VERSION.pattern, description=f"A version ({_RULES[ASSET_VERSION.pattern]}); the latest if omitted")]
Window = Annotated[float, Parameter(gt=0, le=MAX_WINDOW, description=f"Seconds back from now (at most {MAX_WINDOW})")]
# Optional and bounded: Litestar checks the bounds but leaves the lower one out of the schema.
SinceWindow = Annotated[float | None, Parameter(gt=0, le=MAX_WINDOW, schema_extra={"exclusiveMinimum": 0}, description=(
    f"Only what is newer than this many seconds (at most {MAX_WINDOW}); everything if omitted"))]
Tail = Annotated[int | None, Parameter(ge=0, le=MAX_LINES, schema_extra={"minimum": 0},
                                       description=f"Only the last N lines (0-{MAX_LINES})")]
Wait = Annotated[float, Meta(ge=0, le=3600, description="Seconds to wait for new instances to be ready (0-3600)")]


class DocumentIn(Struct, forbid_unknown_fields=True):
    body: dict[str, Any]  # one Azure ML CLI v2 YAML document, as JSON
    source: str = "<request>"
    base: str | None = None  # folder that relative paths are relative to; the source's by default


class ApplyIn(Struct, forbid_unknown_fields=True):
    documents: list[DocumentIn]
    create_only: bool = False
    all_traffic: bool = False
    wait: Wait = 120.0
    set_default: bool = False  # each batch deployment applied becomes its endpoint's default


class ApplyOut(Struct):
    applied: list[dict[str, Any]]  # each {kind, name, ...}: model, environment, online_endpoint, ...
    warnings: list[str]
    deployments: list[views.DeploymentView]  # those the apply created or changed, as they are now


def _control(request: Request[Any, Any, Any]) -> Control:
    return request.app.state.control


def _base_url(request: Request[Any, Any, Any]) -> str:
    return request.app.state.base_url


MAX_DEPTH = 100  # collections nested in a document, as in a YAML file


def _check_document(value: Any, field: str) -> None:
    """No string of a document holds a NUL (YAML can't, no file can be named so, and the loader's paths
    would fail on one), and its collections nest at most MAX_DEPTH deep. Walked without recursion."""
    stack: list[tuple[Any, str, int]] = [(value, field, 0)]
    while stack:
        item, at, depth = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                raise SpecError(f"{item[:100]!r} holds a NUL character, which no document or file name can",
                                field=at or None)
        elif isinstance(item, dict | list):
            if depth >= MAX_DEPTH:
                raise SpecError(f"collections nested more than {MAX_DEPTH} levels deep (the nesting depth limit)",
                                field=(at if len(at) <= 60 else at[:60] + "...") or None)
            for key, sub in (item.items() if isinstance(item, dict) else enumerate(item)):
                where = f"{at}[{key}]" if isinstance(item, list) else f"{at}.{key}" if at else str(key)
                stack.extend([(key, where, depth + 1), (sub, where, depth + 1)])


def _parse(doc: DocumentIn) -> Document:
    _check_document(doc.source, "source")
    _check_document(doc.base, "base")
    _check_document(doc.body, "")
    return parse(doc.body, doc.source, Path(doc.base) if doc.base else None)


async def _parse_all(data: ApplyIn) -> list[Document]:
    return await asyncio.to_thread(lambda: [_parse(d) for d in data.documents])


class Health(Struct):
    status: Literal["ok"]
    version: str


@get("/health", responses=_FRONT_DOOR)
async def health() -> Health:
    return Health(status="ok", version=appliance.__version__)


async def _apply(control: Control, documents: list[Document], data: ApplyIn,
                 progress: Callable[[str], None] | None) -> ApplyOut:
    outcome = await control.apply(documents, create_only=data.create_only, all_traffic=data.all_traffic,
                                  wait=data.wait, progress=progress, set_default=data.set_default)
    deployments = [await _deployment_view(control, ep, name) for ep, name in outcome.deployments]
    return ApplyOut(applied=outcome.applied, warnings=outcome.warnings, deployments=deployments)


@post("/apply", status_code=200, responses=_answers(*_BODY, _MISSING, _CONFLICT))
async def apply(request: Request[Any, Any, Any], data: ApplyIn) -> ApplyOut:
    return await _apply(_control(request), await _parse_all(data), data, None)


class ApplyLine(Struct, omit_defaults=True):
    """A line of a streamed apply: each `log` line as it happens, then the `result` or the `error`."""

    log: str | None = None
    result: ApplyOut | None = None
    error: str | None = None


class BuildLine(Struct, omit_defaults=True):
    """A line of a streamed build: each `log` line as it happens, then the `result` ({image, id, cached}
    for an environment; {image, id, reference} for a package) or the `error`."""

    log: str | None = None
    result: dict[str, Any] | None = None
    error: str | None = None


NDJSON = "application/x-ndjson"


def _ndjson(line: type[Struct]) -> dict[int, ResponseSpec]:
    return {200: ResponseSpec(list[line], media_type=NDJSON, generate_examples=False,  # type: ignore[valid-type]
                              description="Newline-delimited JSON, one object a line: the stream is the list of "
                                          "its lines")}


@post("/apply/stream", status_code=200, media_type=NDJSON,
      responses=_answers(*_BODY, _MISSING, _CONFLICT, _ndjson(ApplyLine)))
async def apply_streamed(request: Request[Any, Any, Any], data: ApplyIn) -> Stream:
    """`/apply`, with environment builds' output streamed as they happen (NDJSON). Documents that don't
    parse are refused (400) before the stream starts; what fails after that is its last line's `error`."""
    control = _control(request)
    documents = await _parse_all(data)
    return _stream(lambda say: _apply(control, documents, data, say))


# -- models and environments ------------------------------------------------------------------

@get("/models", responses=_answers(_BAD))
async def list_models(request: Request[Any, Any, Any], name: str | None = None) -> list[views.ModelView]:
    records = await asyncio.to_thread(_control(request).registry.list_models, name)
    return [views.model(r) for r in records]


@get("/models/{name:str}", responses=_answers(_BAD, _MISSING))
async def show_model(request: Request[Any, Any, Any], name: AssetName, version: AssetVersion = None) -> views.ModelView:
    return views.model(await asyncio.to_thread(_control(request).registry.get_model, name, version))


@post("/models", status_code=201, responses=_answers(*_BODY, _CONFLICT))
async def create_model(request: Request[Any, Any, Any], data: DocumentIn) -> views.ModelView:
    doc = await asyncio.to_thread(_parse, data)
    if not isinstance(doc.spec, ModelSpec):
        raise SpecError(f"expected a model, got a {doc.kind}", source=doc.source)
    return views.model(await background.run(_control(request).register_model, doc))


class ArchiveIn(Struct, forbid_unknown_fields=True):
    archived: bool = True
    version: str | None = None  # default: every version


@post("/models/{name:str}/archive", status_code=200, responses=_answers(*_BODY, _MISSING))
async def archive_model(request: Request[Any, Any, Any], name: AssetName, data: ArchiveIn) -> list[views.ModelView]:
    """`model archive` / `model restore`: hidden from listings, still usable by name:version."""
    registry = _control(request).registry
    records = await asyncio.to_thread(registry.archive_model, name, data.version, data.archived)
    return [views.model(r) for r in records]


@get("/environments", responses=_answers())
async def list_environments(request: Request[Any, Any, Any]) -> list[views.EnvironmentView]:
    return [views.environment(r) for r in await asyncio.to_thread(_control(request).registry.list_environments)]


@get("/environments/{name:str}", responses=_answers(_BAD, _MISSING))
async def show_environment(request: Request[Any, Any, Any], name: AssetName,
                           version: AssetVersion = None) -> views.EnvironmentView:
    return views.environment(await asyncio.to_thread(_control(request).registry.get_environment, name, version))


def _stream(work: Callable[[Callable[[str], None]], Awaitable[Any]]) -> Stream:
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

    return Stream(lines(), media_type=NDJSON)


@post("/environments/{name:str}/build", status_code=200, media_type=NDJSON,
      responses=_answers(_BAD, _MISSING, _ndjson(BuildLine)))
async def build_environment(request: Request[Any, Any, Any], name: AssetName, version: AssetVersion = None) -> Stream:
    """The environment's image (needs Docker), its build output streamed as NDJSON."""
    control = _control(request)
    await asyncio.to_thread(control.registry.get_environment, name, version)  # a 404 before the stream starts
    return _stream(lambda say: asyncio.to_thread(control.build_environment, name, version, say))


@post("/endpoints/{endpoint:str}/deployments/{name:str}/package", status_code=200, media_type=NDJSON,
      responses=_answers(_BAD, _MISSING, _ndjson(BuildLine)))
async def package(request: Request[Any, Any, Any], endpoint: EndpointName, name: EndpointName,
                  push: str | None = None) -> Stream:
    """The deployment as one image, model and code baked in (needs Docker); output streamed as NDJSON."""
    control = _control(request)
    await asyncio.to_thread(control.registry.get_deployment, endpoint, name)  # a 404 before the stream starts
    return _stream(lambda say: asyncio.to_thread(control.package, endpoint, name, push, say))


# -- endpoints ---------------------------------------------------------------------------------

class Deleted(Struct):
    deleted: str  # <endpoint> or <endpoint>/<deployment>


@get("/endpoints", responses=_answers())
async def list_endpoints(request: Request[Any, Any, Any]) -> list[views.EndpointView]:
    records = await asyncio.to_thread(_control(request).registry.list_endpoints)
    return [views.endpoint(r, _base_url(request)) for r in records]


@get("/endpoints/{name:str}", responses=_answers(_BAD, _MISSING))
async def show_endpoint(request: Request[Any, Any, Any], name: EndpointName) -> views.EndpointView:
    rec = await asyncio.to_thread(_control(request).registry.get_endpoint, name)
    return views.endpoint(rec, _base_url(request))


@delete("/endpoints/{name:str}", status_code=200, responses=_answers(_BAD, _MISSING))
async def delete_endpoint(request: Request[Any, Any, Any], name: EndpointName) -> Deleted:
    await _control(request).delete_endpoint(name)
    return Deleted(deleted=name)


class Keys(Struct):
    primaryKey: str
    secondaryKey: str


def _auth(control: Control, name: str, keys: bool) -> EndpointRecord:
    """The endpoint, if it has keys (`keys`) or gives tokens (not `keys`). Asking the other kind is a well-formed
    request that conflicts with how the endpoint is set up: 409."""
    rec = control.registry.get_endpoint(name)
    if (rec.spec.auth_mode == "key") != keys:
        raise Conflict(f"endpoint {name!r} uses auth_mode {rec.spec.auth_mode}: "
                       + ("it has no keys; ask for a token instead (appliance endpoint get-token)" if keys
                          else "it takes keys, not tokens (appliance endpoint get-credentials)"), field="auth_mode")
    return rec


@post("/endpoints/{name:str}/credentials", status_code=200, responses=_answers(_BAD, _MISSING, _CONFLICT))
async def credentials(request: Request[Any, Any, Any], name: EndpointName) -> Keys:
    """The endpoint's keys (auth_mode key; a token endpoint answers 409: ask it for a token)."""
    rec = await asyncio.to_thread(_auth, _control(request), name, True)
    return Keys(primaryKey=rec.primary_key, secondaryKey=rec.secondary_key)


Percent = Annotated[int, Meta(ge=0, le=100)]


class TrafficIn(Struct, forbid_unknown_fields=True):
    traffic: dict[str, Percent] | None = None  # deployment → percent of live traffic; the sum is 0 or 100
    mirror_traffic: dict[str, Percent] | None = None  # deployment → percent copied to it (at most 50)


class RegenerateIn(Struct, forbid_unknown_fields=True):
    key_type: Literal["primary", "secondary"]
    value: Annotated[str, Meta(min_length=16, max_length=256)] | None = None  # the new key; a random one if null


class Regenerated(Struct):
    regenerated: Literal["primary", "secondary"]


@post("/endpoints/{name:str}/traffic", status_code=200, responses=_answers(*_BODY, _MISSING))
async def update_traffic(request: Request[Any, Any, Any], name: EndpointName, data: TrafficIn) -> views.EndpointView:
    rec = await _control(request).update_traffic(name, data.traffic, data.mirror_traffic)
    return views.endpoint(rec, _base_url(request))


@post("/endpoints/{name:str}/regenerate-keys", status_code=200, responses=_answers(*_BODY, _MISSING, _CONFLICT))
async def regenerate_keys(request: Request[Any, Any, Any], name: EndpointName, data: RegenerateIn) -> Regenerated:
    await asyncio.to_thread(_auth, _control(request), name, True)
    await _control(request).regenerate_key(name, data.key_type, data.value)
    return Regenerated(regenerated=data.key_type)


class Token(Struct):
    """Azure's token answer; times are Unix seconds."""

    accessToken: str
    tokenType: str
    expiryTimeUtc: int
    refreshAfterTimeUtc: int


@post("/endpoints/{name:str}/token", status_code=200, responses=_answers(_BAD, _MISSING, _CONFLICT))
async def get_token(request: Request[Any, Any, Any], name: EndpointName,
                    ttl: Annotated[int, Parameter(ge=60, le=86_400, description="Seconds the token lives")] = 3600,
                    ) -> Token:
    """A token for an aml_token/aad_token endpoint (a key endpoint answers 409: use its keys)."""
    await asyncio.to_thread(_auth, _control(request), name, False)
    return msgspec.convert(await asyncio.to_thread(_control(request).token, name, ttl), Token)


# -- request log -------------------------------------------------------------------------------

async def _request_log(request: Request[Any, Any, Any], endpoint: str) -> RequestLogStore:
    """The log's store, once the endpoint is known and every request so far is written."""
    await asyncio.to_thread(_control(request).registry.get_endpoint, endpoint)
    writer: RequestLog = request.app.state.request_log
    await asyncio.to_thread(writer.flush)
    return writer.store


class RequestLogSwitch(Struct, forbid_unknown_fields=True):
    enabled: bool


class RequestLogStatus(Struct):
    enabled: bool
    written: int
    waiting: int
    dropped: int
    failed: int
    retention_s: float | None
    max_bytes: int | None
    pruned: int
    not_logged_unauthenticated: int  # answered 401, never logged: the log can't be filled from outside
    not_logged_unknown_endpoint: int  # answered 404 likewise


def _request_log_status(request: Request[Any, Any, Any]) -> RequestLogStatus:
    writer: RequestLog = request.app.state.request_log
    dataplane: DataPlane = request.app.state.dataplane
    return RequestLogStatus(enabled=dataplane.recorder is not None, written=writer.written,
                            waiting=writer.pending, dropped=writer.dropped, failed=writer.failed,
                            retention_s=writer.retention, max_bytes=writer.max_bytes, pruned=writer.pruned,
                            not_logged_unauthenticated=dataplane.refused_unauthenticated,
                            not_logged_unknown_endpoint=dataplane.refused_unknown_endpoint)


@get("/request-log", responses=_answers())
async def request_log_status(request: Request[Any, Any, Any]) -> RequestLogStatus:
    """Whether requests are being logged, the writer's counts (in requests) since the daemon started, its
    retention (seconds; null keeps every row), its size cap (bytes; null: none), the rows it deleted past
    either, and the requests refused before reaching an endpoint, which are counted here, not logged."""
    return _request_log_status(request)


@put("/request-log", responses=_answers(*_BODY))
async def switch_request_log(request: Request[Any, Any, Any], data: RequestLogSwitch) -> RequestLogStatus:
    """Log requests from now on, or stop (for this daemon's life; `up --no-request-log` starts it off).
    Switched off, the data plane records nothing; what it recorded before is still written."""
    dataplane: DataPlane = request.app.state.dataplane
    dataplane.recorder = request.app.state.request_log if data.enabled else None
    log.info("request log switched %s", "on" if data.enabled else "off")
    return _request_log_status(request)


@get("/endpoints/{name:str}/logs", responses=_answers(_BAD, _MISSING))
async def request_logs(request: Request[Any, Any, Any], name: EndpointName, since: SinceWindow = None,
                       deployment: str | None = None,
                       after_id: Annotated[int, Parameter(ge=0, le=MAX_ID, description=(
                           "0: the newest rows; else the rows after this id, oldest first"))] = 0,
                       limit: Annotated[int, Parameter(ge=1, le=MAX_ROWS, description=(
                           f"At most this many rows (1-{MAX_ROWS})"))] = 200) -> list[dict[str, Any]]:
    """Logged requests of the endpoint: each row's id, at, request_id, endpoint, deployment, instance,
    mirrored, status, latency_ms, bytes_in, bytes_out, key_id and body_digest."""
    store = await _request_log(request, name)
    return await asyncio.to_thread(store.tail, name, since_seconds=since, deployment=deployment,
                                   after_id=after_id, limit=limit)


@get("/endpoints/{name:str}/metrics", responses=_answers(_BAD, _MISSING))
async def metrics(request: Request[Any, Any, Any], name: EndpointName, since: Window = 300) -> list[dict[str, Any]]:
    """Per deployment over the window: requests, requests_per_second, p50_ms, p95_ms, p99_ms, error_rate,
    server_error_rate and mirrored."""
    store = await _request_log(request, name)
    return await asyncio.to_thread(store.metrics, name, since)


@get("/endpoints/{name:str}/mirror-report", responses=_answers(_BAD, _MISSING))
async def mirror_report(request: Request[Any, Any, Any], name: EndpointName, since: Window = 600) -> dict[str, Any]:
    """Mirrored answers over the window, each against the live answer to the same request."""
    store = await _request_log(request, name)
    return await asyncio.to_thread(store.mirror_report, name, since)


# -- deployments -------------------------------------------------------------------------------

async def _deployment_view(control: Control, endpoint: str, name: str) -> views.DeploymentView:
    def read() -> tuple[Any, int, Any]:
        rec = control.registry.get_deployment(endpoint, name)
        return (rec, control.registry.get_endpoint(endpoint).spec.traffic.get(name, 0),
                control.registry.find_profile(endpoint, name))

    rec, traffic, profile = await asyncio.to_thread(read)
    return views.deployment(rec, control.supervisor.get(endpoint, name), traffic, views.stored_profile(profile))


@get("/endpoints/{endpoint:str}/deployments", responses=_answers(_BAD, _MISSING))
async def list_deployments(request: Request[Any, Any, Any], endpoint: EndpointName) -> list[views.DeploymentView]:
    control = _control(request)
    records = await asyncio.to_thread(lambda: (control.registry.get_endpoint(endpoint),
                                               control.registry.list_deployments(endpoint)))
    ep, deployments = records
    return [views.deployment(d, control.supervisor.get(endpoint, d.spec.name), ep.spec.traffic.get(d.spec.name, 0))
            for d in deployments]


@get("/endpoints/{endpoint:str}/deployments/{name:str}", responses=_answers(_BAD, _MISSING))
async def show_deployment(request: Request[Any, Any, Any], endpoint: EndpointName,
                          name: EndpointName) -> views.DeploymentView:
    return await _deployment_view(_control(request), endpoint, name)


class UpdateIn(Struct, forbid_unknown_fields=True):
    set: dict[str, str]  # dotted field → new value, as `--set instance_count=2`
    wait: Wait = 120.0


@post("/endpoints/{endpoint:str}/deployments/{name:str}/update", status_code=200,
      responses=_answers(*_BODY, _MISSING, _CONFLICT))
async def update_deployment(request: Request[Any, Any, Any], endpoint: EndpointName, name: EndpointName,
                            data: UpdateIn) -> ApplyOut:
    control = _control(request)
    _check_document(data.set, "set")
    outcome = await control.update_deployment(endpoint, name, data.set, data.wait)
    deployments = [await _deployment_view(control, ep, dep) for ep, dep in outcome.deployments]
    return ApplyOut(applied=outcome.applied, warnings=outcome.warnings, deployments=deployments)


class LogsOut(Struct):
    lines: list[dict[str, str]]  # each {instance, at, stream, text}, oldest first
    cursor: str  # pass it back as `cursor` for only what comes after


# A cursor: `<log file>:<bytes read>` for each file, comma-separated. Every string of this shape is one the
# API accepts (a file that isn't there is skipped), so the schema can say exactly what is allowed.
_CURSOR_ITEM = r"[A-Za-z0-9._-]+:[0-9]{1,15}"
CURSOR = re.compile(rf"^({_CURSOR_ITEM}(,{_CURSOR_ITEM})*)?$")
Cursor = Annotated[str | None, Parameter(pattern=CURSOR.pattern, max_length=10_000, description=(
    "The `cursor` of an earlier answer, for only what came after it"))]


def _cursor(text: str) -> logs.Cursor:
    # Checked whole here too: the schema's `$` (and so Litestar's check of it) lets a trailing newline by.
    if not CURSOR.fullmatch(text):
        raise SpecError(f"invalid cursor {text[:100]!r}: pass back the `cursor` of an earlier answer", field="cursor")
    return {name: int(read) for name, _, read in (item.rpartition(":") for item in text.split(",") if item)}


def _cursor_text(cursor: logs.Cursor) -> str:
    return ",".join(f"{name}:{read}" for name, read in cursor.items())


@get("/endpoints/{endpoint:str}/deployments/{name:str}/logs", responses=_answers(_BAD, _MISSING))
async def deployment_logs(request: Request[Any, Any, Any], endpoint: EndpointName, name: EndpointName,
                          instance: str | None = None, since: SinceWindow = None,
                          tail: Tail = None,
                          cursor: Cursor = None) -> LogsOut:
    """The workers' output; pass the returned `cursor` back to get only what came after."""
    control = _control(request)
    start = None
    if since is not None:
        start = (datetime.now(UTC) - timedelta(seconds=since)).isoformat(timespec="milliseconds")
        start = start.replace("+00:00", "Z")
    after_cursor = _cursor(cursor) if cursor is not None else None
    await asyncio.to_thread(control.registry.get_deployment, endpoint, name)
    folder = control.supervisor.logs_dir / endpoint / name
    lines, after = await asyncio.to_thread(logs.read, folder, instance=instance, since=start, tail=tail,
                                           cursor=after_cursor)
    return LogsOut(lines=lines, cursor=_cursor_text(after))


@post("/endpoints/{endpoint:str}/deployments/{name:str}/restart", status_code=200,
      responses=_answers(_BAD, _MISSING, _CONFLICT))
async def restart_deployment(request: Request[Any, Any, Any], endpoint: EndpointName,
                             name: EndpointName) -> views.DeploymentView:
    """Fresh instances (as `kubectl rollout restart`): ready before the old ones drain; answers once they serve."""
    control = _control(request)
    await control.restart_deployment(endpoint, name)
    return await _deployment_view(control, endpoint, name)


@delete("/endpoints/{endpoint:str}/deployments/{name:str}", status_code=200,
        responses=_answers(_BAD, _MISSING, _CONFLICT))
async def delete_deployment(request: Request[Any, Any, Any], endpoint: EndpointName, name: EndpointName) -> Deleted:
    await _control(request).delete_deployment(endpoint, name)
    return Deleted(deleted=f"{endpoint}/{name}")


@get("/events", responses=_answers(_BAD))
async def events(request: Request[Any, Any, Any], subject: str | None = None,
                 limit: Annotated[int, Parameter(ge=1, le=MAX_ROWS, description=(
                     f"At most this many of the newest events (1-{MAX_ROWS})"))] = 100) -> list[Event]:
    """What happened, newest first; `subject` an endpoint (with its deployments), `<endpoint>/<deployment>`,
    or `<model>:<version>`."""
    return [views.event(e) for e in await asyncio.to_thread(_control(request).registry.list_events, subject, limit)]


# -- errors ------------------------------------------------------------------------------------

def _spec_error(_: Request[Any, Any, Any], exc: SpecError) -> Response[dict[str, Any]]:
    return Response(exc.to_json(), status_code=exc.status)


def _invalid(request: Request[Any, Any, Any], problems: list[Any]) -> tuple[str, str | None]:
    """Litestar's validation problems ({key, source, message}) as one message naming each parameter, its
    value and what is allowed, and the first one's field."""
    said: list[str] = []
    fields: list[str] = []
    for problem in problems:
        if not isinstance(problem, dict):
            continue
        key = str(problem.get("key") or "")
        source = str(getattr(problem.get("source"), "value", problem.get("source")) or "request")
        why = str(problem.get("message") or "invalid")
        if why[1:2].islower():  # "Expected ..." → "expected ...", but "JSON ..." stays
            why = why[:1].lower() + why[1:]
        if ("matching regex" in why or "of length" in why) and (rule := _rule(request, key)):
            why = f"use {rule}"  # msgspec names the pattern or the length; say the name rule
        if source == "body" and key == "data" and why.strip("'") == "data":
            said.append("a JSON body is required")
            continue
        if source == "body":
            key = ".".join(_dotted(key))
            if not key:
                said.append(f"body: {why}")
                continue
        shown = ", ".join(reprlib.repr(v) for v in _values(request, source, key))
        said.append(f"{source} {'field' if source == 'body' else 'parameter'} {key}"
                    f"{'=' + shown if shown else ''}: {why}")
        fields.append(key)
    return "; ".join(said) or "invalid request", next((f for f in fields if f), None)


def _rule(request: Request[Any, Any, Any], key: str) -> str | None:
    """The name rule (in words) of the handler's parameter `key`, if it has one."""
    parameter = request.route_handler.parsed_fn_signature.parameters.get(key)
    return _RULES.get(getattr(getattr(parameter, "kwarg_definition", None), "pattern", None) or "")


def _values(request: Request[Any, Any, Any], source: str, key: str) -> list[Any]:
    """What the request gave for `key`, to show it in the message."""
    if source == "query":
        return request.query_params.getall(key, [])
    if source == "path":
        return [v] if (v := request.path_params.get(key)) is not None else []
    if source == "body" and key:  # read already; Litestar keeps it in the connection's state
        body = getattr(getattr(request, "_connection_state", None), "body", None)
        if isinstance(body, bytes) and len(body) < 1_000_000:
            try:
                data = msgspec.json.decode(body)
            except (msgspec.DecodeError, RecursionError):
                return []
            for part in _dotted(key):
                if isinstance(data, dict) and part in data:
                    data = data[part]
                elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
                    data = data[int(part)]
                else:
                    return []
            return [data]
    return []


def _http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, Any]]:
    extra = exc.extra if isinstance(exc.extra, list | dict) else None
    body: dict[str, Any] = {"message": exc.detail, "field": None}
    if isinstance(exc, ValidationException) and isinstance(extra, list):
        body["message"], body["field"] = _invalid(request, extra)
    if extra:
        body["details"] = extra
    # Headers too: a 405 says in `Allow` what the path does take.
    return Response(body, status_code=exc.status_code, headers=exc.headers)


def _integral(value: Any) -> Any:
    """`value` (decoded JSON) with every float that has no fraction made an int."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _integral(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral(v) for v in value]
    return value


async def _strict_body(request: Request[Any, Any, Any]) -> None:
    """Litestar converts a body leniently (0 passes for false, "5" for 5); the schema promises JSON's own
    types, so a body is first decoded strictly against the handler's `data` type."""
    data = request.route_handler.parsed_fn_signature.parameters.get("data")
    if data is None:
        return
    body = await request.body()  # kept: Litestar's own parsing reads it again from the request
    if not body.strip():
        return  # Litestar says a body is required
    try:
        try:
            msgspec.json.decode(body, type=data.annotation)
        except msgspec.ValidationError as exc:
            if "got `float`" not in str(exc):
                raise
            # JSON Schema's `integer` takes 15644.0: an integral number is one, however it is written
            msgspec.convert(_integral(msgspec.json.decode(body)), data.annotation, strict=True)
    except msgspec.ValidationError as exc:
        why, _, at = str(exc).partition(" - at `$")
        key = at.rstrip("`").lstrip(".")
        if unknown := re.search(r"unknown field `(.*)`$", why):
            key = f"{key}.{unknown.group(1)}" if key else unknown.group(1)
            why = "no such field here; check its spelling"
        if why.startswith("Invalid enum value") and (allowed := _choices(data.annotation, key)):
            why += f"; use {' or '.join(map(repr, allowed))}"
        raise ValidationException("invalid body", extra=[{"message": why, "key": key, "source": "body"}]) from None
    except msgspec.DecodeError:
        return  # not JSON: Litestar's own message says where
    except RecursionError:
        raise ValidationException("invalid body", extra=[{"message": "JSON nested too deeply to read", "key": "",
                                                          "source": "body"}]) from None


def _choices(struct: Any, key: str) -> tuple[Any, ...]:
    """The values a struct's Literal field allows."""
    try:
        info = msgspec.inspect.type_info(struct)
    except TypeError:
        return ()
    for field in getattr(info, "fields", ()):
        for kind in (field.type.types if isinstance(field.type, msgspec.inspect.UnionType) else (field.type,)):
            if field.name == key and isinstance(kind, msgspec.inspect.LiteralType):
                return kind.values
    return ()


def _dotted(key: str) -> list[str]:
    """`documents[0].source` → [documents, 0, source]; `traffic[...]` (any key of a mapping) → [traffic]."""
    return [part for part in re.sub(r"\[(\d+)\]", r".\1", key.replace("[...]", "")).split(".") if part]


class _ClosedStructs(StructSchemaPlugin):
    """A struct that refuses unknown fields says so in the schema (`additionalProperties: false`)."""

    def is_plugin_supported_field(self, field_definition: Any) -> bool:
        return (super().is_plugin_supported_field(field_definition)
                and field_definition.type_.__struct_config__.forbid_unknown_fields)

    def to_openapi_schema(self, field_definition: Any, schema_creator: Any) -> Schema:
        schema = super().to_openapi_schema(field_definition, schema_creator)
        target = schema_creator.schema_registry.from_reference(schema).schema if isinstance(schema, Reference) \
            else schema
        target.additional_properties = False
        return schema


def _options(path: str, methods: set[str]) -> HTTPRouteHandler:
    """OPTIONS for a path several handlers share: Litestar's own lists only the first handler's methods."""
    allow = ", ".join(sorted({*methods, "OPTIONS"}))

    @route(path, http_method="OPTIONS", include_in_schema=False, status_code=204, sync_to_thread=False,
           name=f"options {path}")
    def options() -> Response[None]:
        return Response(None, status_code=204, headers={"Allow": allow})

    return options


def _server_error(_: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    request_id = uuid.uuid4().hex
    log.exception("request %s failed", request_id, exc_info=exc)
    return Response({"message": f"internal error ({type(exc).__name__}); request id {request_id} is in the "
                                "daemon log", "field": None, "request_id": request_id}, status_code=500)


def create_app(control: Control, request_log: RequestLog, dataplane: DataPlane, base_url: str,
               on_startup: list[Any], on_shutdown: list[Any]) -> Litestar:
    from litestar import Router

    from appliance.daemon import batch_api, export_api, live_api, monitor_api, profile_api

    handlers = [*batch_api.HANDLERS, *live_api.HANDLERS, *export_api.HANDLERS, *profile_api.HANDLERS,
        *monitor_api.HANDLERS,
        health, apply, apply_streamed, build_environment, package, list_models, show_model, create_model,
        archive_model, list_environments, show_environment,
        list_endpoints, show_endpoint, delete_endpoint, credentials, update_traffic, regenerate_keys, get_token,
        request_log_status, switch_request_log, request_logs, metrics, mirror_report,
        list_deployments, show_deployment, update_deployment, restart_deployment, deployment_logs, delete_deployment,
        events]
    methods: dict[str, set[str]] = {}
    for handler in handlers:
        for path in handler.paths:
            methods.setdefault(path, set()).update(handler.http_methods)
    shared = [_options(path, m) for path, m in methods.items() if len(m) > 1]
    api = Router("/api/v1", route_handlers=[*shared, *handlers], before_request=_strict_body)
    app = Litestar(
        route_handlers=[api], on_startup=on_startup, on_shutdown=on_shutdown,
        exception_handlers={SpecError: _spec_error, HTTPException: _http_error, Exception: _server_error},
        plugins=[_ClosedStructs()],
        openapi_config=OpenAPIConfig(title="appliance control API", version=appliance.__version__,
                                     path="/api/v1/schema"),
        logging_config=None)
    app.state.control = control
    app.state.request_log = request_log
    app.state.dataplane = dataplane
    app.state.base_url = base_url
    return app
