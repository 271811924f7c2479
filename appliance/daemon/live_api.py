"""What live views need from the control API: the daemon's status (for a header), and the newest
requests as they happen (a long poll on the request log's live tap, ahead of the log's writer)."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Annotated, Any

import psutil
from litestar import Request, get
from litestar.params import Parameter
from msgspec import Struct

import appliance
from appliance.builder import images
from appliance.daemon.api import _BAD, MAX_ROWS, _answers, _base_url, _control
from appliance.telemetry.requestlog import RequestLog

_DOCKER_EVERY = 30.0  # s: asking the engine costs a round trip; its state changes rarely


class Status(Struct):
    version: str
    url: str
    home: str
    pid: int
    uptime_s: float
    docker: str  # "available (Docker 27.x)", or why not
    cpu_percent: float  # the daemon and its workers, of one core
    memory_bytes: int  # resident, the daemon and its workers
    cores: int
    request_log: bool
    online_endpoints: int
    batch_endpoints: int
    jobs_running: int


class _Sampler:
    """CPU is a rate: measured between two calls; the first answers 0."""

    def __init__(self) -> None:
        self.me = psutil.Process()
        self.started = time.time()
        self.last: tuple[float, float] | None = None
        self.docker: tuple[float, str] = (0.0, "")

    def cpu_and_memory(self) -> tuple[float, int]:
        procs = [self.me, *self.me.children(recursive=True)]
        cpu = 0.0
        memory = 0
        for p in procs:
            try:
                with p.oneshot():
                    times = p.cpu_times()
                    cpu += times.user + times.system + times.children_user + times.children_system
                    memory += p.memory_info().rss
            except psutil.Error:
                continue
        now = time.monotonic()
        percent = 0.0
        if self.last is not None and now > self.last[0]:
            percent = max(0.0, (cpu - self.last[1]) / (now - self.last[0]) * 100)
        self.last = (now, cpu)
        return round(percent, 1), memory

    def docker_state(self) -> str:
        at, said = self.docker
        if said and time.monotonic() - at < _DOCKER_EVERY:
            return said
        try:
            said = f"available (Docker {images.engine().version().get('Version', '?')})"
        except images.DockerUnavailable:
            said = "not available"
        except Exception as exc:
            said = f"not available ({type(exc).__name__})"
        self.docker = (time.monotonic(), said)
        return said


_SAMPLER = _Sampler()


@get("/status", responses=_answers())
async def status(request: Request[Any, Any, Any]) -> Status:
    """The daemon at a glance: version, URL, home, Docker, CPU and memory (with its workers), counts."""
    control = _control(request)
    cpu, memory = await asyncio.to_thread(_SAMPLER.cpu_and_memory)
    docker = await asyncio.to_thread(_SAMPLER.docker_state)
    online = await asyncio.to_thread(control.registry.list_endpoints)
    batch = await asyncio.to_thread(control.registry.list_batch_endpoints)
    return Status(version=appliance.__version__, url=_base_url(request), home=str(control.registry.home),
                  pid=os.getpid(), uptime_s=round(time.time() - _SAMPLER.started, 1), docker=docker,
                  cpu_percent=cpu, memory_bytes=memory, cores=psutil.cpu_count() or 1,
                  request_log=request.app.state.dataplane.recorder is not None, online_endpoints=len(online),
                  batch_endpoints=len(batch), jobs_running=len(control.jobs.tasks))


class LiveRequests(Struct):
    next: int  # pass it back as `after`
    missed: int  # requests that came and went (more than `limit`, or older than the ring) since `after`
    logging: bool  # false: the request log is off, so nothing is seen (appliance request-log on)
    rows: list[dict[str, Any]]  # the request log's columns, oldest first


@get("/requests/live", responses=_answers(_BAD))
async def live_requests(request: Request[Any, Any, Any], endpoint: str | None = None,
                        after: Annotated[int | None, Parameter(ge=0, schema_extra={"minimum": 0}, description=(
                            "The `next` of the previous answer; omitted: from now"))] = None,
                        limit: Annotated[int, Parameter(ge=1, le=MAX_ROWS, description=(
                            f"At most this many rows (1-{MAX_ROWS})"))] = 5000,
                        wait: Annotated[float, Parameter(ge=0, le=5, description=(
                            "Seconds to wait for a first new request (0-5)"))] = 1.0) -> LiveRequests:
    """The requests since `after`, as they are recorded (before the log's writer has stored them):
    what a live tail polls. Waits up to `wait` seconds when there is nothing new yet."""
    writer: RequestLog = request.app.state.request_log
    logging = request.app.state.dataplane.recorder is not None
    tap = writer.watch()
    deadline = time.monotonic() + wait
    while True:
        seq, missed, rows = tap.since(after, endpoint, limit)
        if rows or missed or after is None or time.monotonic() >= deadline:
            return LiveRequests(next=seq, missed=missed, logging=logging, rows=rows)
        await asyncio.sleep(0.05)


HANDLERS = [status, live_requests]
