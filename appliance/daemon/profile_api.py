"""`POST .../deployments/{name}/profile`: drive a deployment through the daemon's own data plane at each
concurrency (appliance.telemetry.profiler, in a thread with its own event loop), measure req/s, latency
percentiles and the instances' CPU and RSS, and recommend a size (appliance.telemetry.sizing, pure).
Progress streamed as NDJSON; the result (a `Profile`) is stored with the deployment unless `store` is false."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlsplit

import msgspec
from litestar import Request, post
from litestar.response import Stream
from msgspec import Meta, Struct

from appliance.daemon.api import _BODY, _CONFLICT, _MISSING, EndpointName, _answers, _control, _ndjson, _stream
from appliance.daemon.control import Control
from appliance.specs import Conflict
from appliance.telemetry import profiler, sizing

MAX_CONCURRENCY = 256
MAX_STEPS = 12
MAX_STEP_SECONDS = 120.0
MAX_REQUEST = 1_000_000  # characters of the request body

Concurrency = Annotated[int, Meta(ge=1, le=MAX_CONCURRENCY)]


class ProfileIn(Struct, forbid_unknown_fields=True):
    request: Annotated[str, Meta(max_length=MAX_REQUEST)]  # the body each request sends to /score
    concurrency: Annotated[list[Concurrency], Meta(min_length=1, max_length=MAX_STEPS)] = msgspec.field(
        default_factory=lambda: [1, 2, 4, 8, 16])
    duration: Annotated[float, Meta(ge=0.5, le=MAX_STEP_SECONDS)] = 10.0  # seconds per concurrency
    content_type: Annotated[str, Meta(pattern=r"^[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+$", max_length=100)] = \
        "application/json"
    target_p99_ms: Annotated[float, Meta(gt=0, le=3_600_000)] | None = None
    target_rps: Annotated[float, Meta(gt=0, le=10_000_000)] | None = None
    store: bool = True  # keep the result with the deployment (shown by `show`, used by `export`)


class ProfileLine(Struct, omit_defaults=True):
    """A line of a streamed profile: each `log` line (a step started, a step's numbers), then the `result`
    (a Profile) or the `error`."""

    log: str | None = None
    result: sizing.Profile | None = None
    error: str | None = None


_RUNNING: set[tuple[str, str]] = set()  # one profile at a time per daemon: two would measure each other


def _address(request: Request[Any, Any, Any]) -> tuple[str, int]:
    """Where this daemon listens: the address this request reached (a wildcard bind answers there too)."""
    server = request.scope.get("server")
    if server and server[1]:
        host = str(server[0])
        return ("127.0.0.1" if host in ("0.0.0.0", "") else "::1" if host == "::" else host), int(server[1])
    parts = urlsplit(request.app.state.base_url)
    return ("127.0.0.1" if parts.hostname in (None, "localhost") else parts.hostname), parts.port or 80


def _secret(control: Control, endpoint: str) -> str:
    rec = control.registry.get_endpoint(endpoint)
    if rec.spec.auth_mode == "key":
        return rec.primary_key
    return str(control.token(endpoint, 3600)["accessToken"])


@post("/endpoints/{endpoint:str}/deployments/{name:str}/profile", status_code=200,
      media_type="application/x-ndjson", responses=_answers(*_BODY, _MISSING, _CONFLICT, _ndjson(ProfileLine)))
async def profile(request: Request[Any, Any, Any], endpoint: EndpointName, name: EndpointName,
                  data: ProfileIn) -> Stream:
    """Load the deployment (through the router, with the endpoint's key, pinned by `azureml-model-deployment`)
    at each concurrency for `duration` seconds; stream each step's req/s, p50/p95/p99, errors and per-instance
    CPU and RSS; answer with the curve and the recommended instance_count, max_concurrent_requests_per_instance
    and CPU/memory requests for `target_p99_ms` and `target_rps`. One profile at a time (409 otherwise)."""
    control = _control(request)
    rec = await asyncio.to_thread(control.registry.get_deployment, endpoint, name)  # 404 before the stream
    secret = await asyncio.to_thread(_secret, control, endpoint)
    runtime = control.supervisor.get(endpoint, name)
    if runtime is None or not runtime.ready:
        state = runtime.state if runtime else "not started"
        raise Conflict(f"deployment {endpoint}/{name} has no ready instance to profile ({state})", field="deployment")
    if _RUNNING:
        busy = ", ".join(f"{e}/{d}" for e, d in sorted(_RUNNING))
        raise Conflict(f"a profile is already running ({busy}); one at a time, or they measure each other",
                       field="deployment")
    host, port = _address(request)
    settings = rec.spec.request_settings
    timeout = (settings.request_timeout_ms + settings.max_queue_wait_ms) / 1000 + 5
    target = profiler.Target(
        host=host, port=port, path=f"/endpoints/{endpoint}/score", body=data.request.encode(), timeout=timeout,
        headers=((b"authorization", f"Bearer {secret}".encode()), (b"content-type", data.content_type.encode()),
                 (b"azureml-model-deployment", name.encode()),
                 (b"host", f"{'[' + host + ']' if ':' in host else host}:{port}".encode())))
    shared = runtime.plan.runtime == "inprocess"
    measured_count = len(runtime.ready)
    max_concurrent = settings.max_concurrent_requests_per_instance

    def instances() -> list[tuple[str, int | None, bool]]:
        return [(i.name, i.backend.pid, shared) for i in list(runtime.ready)]

    key = (endpoint, name)
    stop = threading.Event()
    _RUNNING.add(key)

    async def work(say: Any) -> sizing.Profile:
        try:
            say(f"profiling {endpoint}/{name}: {measured_count} {runtime.plan.runtime} instance(s), "
                f"max_concurrent_requests_per_instance {max_concurrent}, concurrency "
                f"{','.join(map(str, data.concurrency))}, {data.duration:g} s each")
            steps = await asyncio.to_thread(profiler.run, target, data.concurrency, data.duration, instances, say,
                                            stop)
        finally:
            stop.set()
            _RUNNING.discard(key)
        notes = []
        if shared:
            notes.append("runtime inprocess: the instances run in the daemon's own process, so CPU and RSS are "
                         "the daemon's (router and load generator included)")
        recommendation = sizing.recommend(steps, instances=measured_count, max_concurrent=max_concurrent,
                                          target_p99_ms=data.target_p99_ms, target_rps=data.target_rps,
                                          shared_process=shared)
        if recommendation is None:
            notes.append("no step was answered without errors: nothing to recommend (see `statuses`)")
        result = sizing.Profile(
            endpoint=endpoint, deployment=name, at=datetime.now(UTC).isoformat(timespec="seconds").replace(
                "+00:00", "Z"), runtime=runtime.plan.runtime, instance_count=measured_count,
            max_concurrent_requests_per_instance=max_concurrent, request_bytes=len(target.body),
            seconds_per_step=data.duration, target_p99_ms=data.target_p99_ms, target_rps=data.target_rps,
            shared_process=shared, steps=steps, recommendation=recommendation, notes=notes)
        if data.store:
            def keep() -> None:
                with control.registry.transaction():
                    control.registry.get_deployment(endpoint, name)  # deleted meanwhile: nothing is stored
                    control.registry.put_profile(endpoint, name, result)
                    control.registry.add_event("deployment.profiled", f"{endpoint}/{name}",
                                               recommendation=msgspec.to_builtins(recommendation))
            await asyncio.to_thread(keep)
        return result

    try:
        return _stream(work)
    except BaseException:
        _RUNNING.discard(key)
        raise


HANDLERS = [profile]
