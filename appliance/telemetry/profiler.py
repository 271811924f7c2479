"""The load of `deployment profile`: clients with keep-alive connections to the daemon's own data plane,
each sending the next request as soon as the last is answered, `concurrency` of them for a step; the
instances' CPU and RSS sampled with psutil meanwhile.

`run` blocks: the daemon calls it in a worker thread, where it runs an event loop of its own, so the
load's clients are not scheduled on the loop that serves the requests they measure (they still share
the interpreter: at very high rates the measurement costs the daemon some CPU, said in the result).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import psutil

from appliance.runtime.transport import HTTPClient
from appliance.telemetry.sizing import InstanceUsage, Step, percentile

SAMPLE_EVERY = 0.2  # s: CPU and RSS of the instances
WARMUP = 1.0  # s at the first concurrency, not measured: connections opened, caches warm
MIB = 1 << 20

# (name, pid, shared): the instances serving now; shared: the daemon's own process (in-process runtime)
Instances = Callable[[], list[tuple[str, int | None, bool]]]


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    path: str  # /endpoints/<endpoint>/score
    headers: tuple[tuple[bytes, bytes], ...]  # authorization, content type, azureml-model-deployment, host
    body: bytes
    timeout: float  # s, one request's most


class _Usage:
    """CPU time and peak RSS of each instance's process (and its children) over a step."""

    def __init__(self, instances: list[tuple[str, int | None, bool]]) -> None:
        self.instances = instances
        self.procs: dict[int, psutil.Process] = {}
        for _, pid, _ in instances:
            if pid is not None:
                with contextlib.suppress(psutil.Error):
                    self.procs[pid] = psutil.Process(pid)
        self.start: dict[int, float] = {}
        self.peak: dict[int, int] = {}
        self.started = time.monotonic()
        for pid in self.procs:
            cpu, rss = self._read(pid)
            if cpu is not None:
                self.start[pid] = cpu
                self.peak[pid] = rss
        self.last: dict[int, float] = dict(self.start)

    def _read(self, pid: int) -> tuple[float | None, int]:
        proc = self.procs[pid]
        try:
            with proc.oneshot():
                times = proc.cpu_times()
                cpu = times.user + times.system + times.children_user + times.children_system
                rss = proc.memory_info().rss
            for child in proc.children(recursive=True):
                try:
                    with child.oneshot():
                        t = child.cpu_times()
                        cpu += t.user + t.system
                        rss += child.memory_info().rss
                except psutil.Error:
                    continue
        except psutil.Error:
            return None, 0
        return cpu, rss

    def sample(self) -> None:
        for pid in self.procs:
            cpu, rss = self._read(pid)
            if cpu is not None:
                self.last[pid] = cpu
                self.peak[pid] = max(self.peak.get(pid, 0), rss)

    def result(self) -> list[InstanceUsage]:
        self.sample()
        elapsed = max(time.monotonic() - self.started, 1e-6)
        out = []
        for name, pid, shared in self.instances:
            cores = 0.0
            if pid in self.start and pid in self.last:
                cores = max(0.0, (self.last[pid] - self.start[pid]) / elapsed)
            out.append(InstanceUsage(name=name, pid=pid, cpu_cores=round(cores, 3),
                                     rss_bytes=self.peak.get(pid, 0) if pid is not None else 0, shared=shared))
        return out


async def _step(target: Target, concurrency: int, seconds: float, instances: Instances,
                stop: threading.Event) -> Step:
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    usage = _Usage(instances())
    started = time.perf_counter()
    deadline = started + seconds

    async def client() -> None:
        http = HTTPClient(host=target.host, port=target.port, max_idle=1)
        try:
            while not stop.is_set():
                sent = time.perf_counter()
                if sent >= deadline:
                    return
                try:
                    response = await http.request("POST", target.path, target.body, target.headers,
                                                  timeout=target.timeout)
                    outcome: str | None = None if 200 <= response.status < 300 else str(response.status)
                except Exception as exc:  # no answer: the connection failed or the request timed out
                    outcome = type(exc).__name__
                    await asyncio.sleep(0.01)  # a refused connection must not spin
                done = time.perf_counter()
                if done > deadline:  # counted only when it completes within the step
                    return
                if outcome is None:
                    latencies.append((done - sent) * 1000)
                else:
                    errors[outcome] += 1
        finally:
            http.close()

    async def sampler() -> None:
        while True:
            await asyncio.sleep(SAMPLE_EVERY)
            usage.sample()

    sampling = asyncio.create_task(sampler())
    try:
        await asyncio.gather(*(client() for _ in range(concurrency)))
    finally:
        sampling.cancel()
    elapsed = min(time.perf_counter(), deadline) - started
    per_instance = usage.result()
    latencies.sort()
    served = [u for u in per_instance if u.pid is not None]
    return Step(concurrency=concurrency, seconds=round(elapsed, 3), requests=len(latencies),
                errors=sum(errors.values()), statuses=dict(errors),
                rps=round(len(latencies) / elapsed, 2) if elapsed > 0 else 0.0,
                p50_ms=_ms(percentile(latencies, 0.50)), p95_ms=_ms(percentile(latencies, 0.95)),
                p99_ms=_ms(percentile(latencies, 0.99)),
                mean_ms=_ms(sum(latencies) / len(latencies) if latencies else None),
                cpu_cores_per_instance=round(sum(u.cpu_cores for u in served) / len(served), 3) if served else 0.0,
                rss_bytes_per_instance=max((u.rss_bytes for u in served), default=0),
                instances=per_instance)


def _ms(value: float | None) -> float | None:
    return round(value, 2) if value is not None else None


def describe(step: Step) -> str:
    """One progress line."""
    def ms(v: float | None) -> str:
        return f"{v:.1f}" if v is not None else "-"

    errors = f", errors {step.errors} ({', '.join(f'{k}: {v}' for k, v in sorted(step.statuses.items()))})" \
        if step.errors else ", no errors"
    return (f"concurrency {step.concurrency}: {step.rps:.1f} req/s, p50 {ms(step.p50_ms)} ms, p95 {ms(step.p95_ms)} "
            f"ms, p99 {ms(step.p99_ms)} ms{errors}; per instance CPU {step.cpu_cores_per_instance:.2f} cores, "
            f"RSS {step.rss_bytes_per_instance / MIB:.0f} MiB")


async def _run(target: Target, concurrencies: Sequence[int], seconds: float, instances: Instances,
               say: Callable[[str], None], stop: threading.Event) -> list[Step]:
    warmup = min(WARMUP, seconds)
    say(f"warming up: {warmup:g} s at concurrency {concurrencies[0]}")
    await _step(target, concurrencies[0], warmup, instances, stop)
    steps = []
    for concurrency in concurrencies:
        if stop.is_set():
            break
        say(f"concurrency {concurrency}: {seconds:g} s ...")
        step = await _step(target, concurrency, seconds, instances, stop)
        say(describe(step))
        steps.append(step)
    return steps


def run(target: Target, concurrencies: Sequence[int], seconds: float, instances: Instances,
        say: Callable[[str], None], stop: threading.Event | None = None) -> list[Step]:
    """The steps, one per concurrency, in order (blocking: call it in a thread of its own)."""
    return asyncio.run(_run(target, concurrencies, seconds, instances, say, stop or threading.Event()))
