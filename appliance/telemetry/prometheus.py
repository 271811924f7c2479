"""`GET /metrics`: the daemon's state and traffic in Prometheus' text exposition.

The data plane counts in plain structures of its own as requests are answered (a `Traffic` per
endpoint and deployment: a dict of status codes, a list of latency buckets, updated with `bisect`; a
few integers), which costs a request well under a microsecond and takes no lock. Nothing is rendered
until a scrape: then `Metrics.snapshot` copies what the scrape needs on the event loop (where the
data plane writes them, so the copy is consistent), and `Metrics.render` samples the instances'
processes (psutil) and the GPUs (pynvml) and renders it all through a `prometheus_client` collector,
off the event loop.

Labels are bounded: an endpoint or deployment is named only once it exists (a stranger's request
to an unknown endpoint, or one refused its credentials, is counted under no endpoint label), statuses
are classes (2xx, 4xx, 5xx) and three codes of their own (408, 424, 429), instances are those running
now, and no request id or caller's value is ever a label.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import threading
from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import psutil
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

if TYPE_CHECKING:  # the router imports this module: no import of it at run time
    from appliance.router.dataplane import DataPlane
    from appliance.runtime.supervisor import Supervisor
    from appliance.telemetry.requestlog import RequestLog

log = logging.getLogger("appliance.telemetry")

# Upper bounds (seconds) of the latency buckets; the last bucket, +Inf, is implied. Fine at the low
# end: an in-process model answers through the router in a few hundred microseconds.
BOUNDS: tuple[float, ...] = (0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                             2.5, 5.0, 10.0, 30.0, 60.0)
CODES = (408, 424, 429)  # timed out, the model's own error, over the deployment's concurrency limit
STATES = ("starting", "ready", "unhealthy", "restarting", "failed", "stopped")  # an Instance's
bucket = bisect_left  # bucket(BOUNDS, seconds): the index of the first bound >= seconds (Prometheus' `le`)


class Traffic:
    """One endpoint's deployment as the data plane counts it (deployment "" for requests answered
    before one was chosen: a 413, a 431, a pin to no deployment). Written on the event loop only."""

    __slots__ = ("agreed", "codes", "latency", "mirrored", "queued", "seconds")

    def __init__(self) -> None:
        self.codes: dict[int, int] = {}  # status → requests answered with it
        self.latency = [0] * (len(BOUNDS) + 1)  # requests per bucket (not cumulative), +Inf last
        self.seconds = 0.0  # the latencies' sum
        self.queued = 0  # requests waiting for an admission slot now
        self.mirrored = 0  # mirrored copies sent to this deployment (counted apart from live requests)
        self.agreed = 0  # ... that answered 200 with the live answer's exact body, the live one a 200 too

    def copy(self) -> Traffic:
        other = Traffic()
        other.codes, other.latency, other.seconds = dict(self.codes), list(self.latency), self.seconds
        other.queued, other.mirrored, other.agreed = self.queued, self.mirrored, self.agreed
        return other


@dataclass
class InstanceView:
    endpoint: str
    deployment: str
    name: str
    state: str
    restarts: int
    outstanding: int
    pid: int | None  # its own process (None: a model in the daemon's process, or not running)


@dataclass
class Snapshot:
    """What one scrape renders, copied on the event loop."""

    traffic: dict[tuple[str, str], Traffic] = field(default_factory=dict)
    in_flight: dict[tuple[str, str], int] = field(default_factory=dict)
    refused: dict[str, int] = field(default_factory=dict)  # reason → stranger requests (no endpoint label)
    mirrors_dropped: int = 0
    mirrors_in_flight: int = 0
    instances: list[InstanceView] = field(default_factory=list)
    request_log: dict[str, int] | None = None  # the writer's counters; None: no writer
    request_log_enabled: bool = False


class Metrics:
    """The scrape: `await exposition(accept)` → (body, content type)."""

    def __init__(self, dataplane: DataPlane, supervisor: Supervisor | None = None,
                 request_log: RequestLog | None = None, gpus: bool = True) -> None:
        self.dataplane = dataplane
        self.supervisor = supervisor
        self.request_log = request_log
        self._processes: dict[int, psutil.Process] = {}  # by pid: kept, so a reused pid is told apart
        self._gpu = _Gpus() if gpus else None
        self._lock = threading.Lock()  # renders one at a time (they share the process cache)

    async def exposition(self, accept: str | None = None) -> tuple[bytes, str]:
        snapshot = self.snapshot()
        return await asyncio.to_thread(self.render, snapshot, accept)

    def snapshot(self) -> Snapshot:
        """On the event loop: the data plane's counters and the instances as they are now. An endpoint
        that no longer exists loses its counters here (a re-created one starts again from zero)."""
        dp = self.dataplane
        endpoints = dp.table.endpoints
        snap = Snapshot(refused={"unknown_endpoint": dp.refused_unknown_endpoint,
                                 "unauthenticated": dp.refused_unauthenticated},
                        mirrors_dropped=dp.mirrors_dropped, mirrors_in_flight=dp.mirrors_in_flight,
                        request_log_enabled=dp.recorder is not None)
        for key in [k for k in dp.traffic if k[0] not in endpoints]:
            del dp.traffic[key]
        snap.traffic = {key: t.copy() for key, t in dp.traffic.items()}
        for name, route in endpoints.items():
            for deployment in {*route.traffic, *route.mirror_traffic, *route.deployments}:
                runtime = route.deployments.get(deployment)
                gate = dp.gate(runtime) if runtime is not None else None
                snap.in_flight[name, deployment] = gate.in_flight if gate is not None else 0
                snap.traffic.setdefault((name, deployment), Traffic())
        if self.supervisor is not None:
            me = os.getpid()
            for (endpoint, deployment), runtime in list(self.supervisor.deployments.items()):
                if endpoint not in endpoints:
                    continue
                for i in runtime.instances:
                    pid = i.backend.pid
                    snap.instances.append(InstanceView(endpoint, deployment, i.name, i.state, i.restarts,
                                                       i.outstanding, pid if pid != me else None))
        if self.request_log is not None:
            w = self.request_log
            snap.request_log = {"written": w.written, "failed": w.failed, "dropped": w.dropped,
                                "pruned": w.pruned, "pending": w.pending}
        return snap

    def render(self, snapshot: Snapshot, accept: str | None = None) -> tuple[bytes, str]:
        """Off the event loop: the exposition of `snapshot`, with processes and GPUs sampled now."""
        encoder, content_type = choose_encoder(accept or "")
        registry = CollectorRegistry(auto_describe=False)
        registry.register(ApplianceCollector(snapshot, self._sample, self.gpus))
        registry.register(ProcessCollector(registry=None))  # the daemon's own: process_cpu_seconds_total, ...
        with self._lock:
            return encoder(registry), content_type

    def _sample(self, pids: set[int]) -> dict[int, tuple[float, int]]:
        """pid → (CPU seconds, resident bytes), for the processes that still run."""
        for gone in self._processes.keys() - pids:
            del self._processes[gone]
        out: dict[int, tuple[float, int]] = {}
        for pid in pids:
            try:
                proc = self._processes.get(pid)
                if proc is None:
                    proc = self._processes[pid] = psutil.Process(pid)
                with proc.oneshot():
                    times = proc.cpu_times()
                    out[pid] = times.user + times.system, proc.memory_info().rss
            except psutil.Error:
                self._processes.pop(pid, None)
        return out

    def gpus(self) -> list[tuple[str, str, float, int, int]]:
        return self._gpu.sample() if self._gpu is not None else []


class ApplianceCollector(Collector):
    """A snapshot as metric families (rendered at scrape time, never kept between scrapes)."""

    def __init__(self, snapshot: Snapshot, sample: Any = None, gpus: Any = None) -> None:
        self.snapshot = snapshot
        self.sample = sample  # pids → {pid: (cpu seconds, rss)}; None: no process metrics
        self.gpus = gpus

    def collect(self) -> Iterator[Metric]:
        s = self.snapshot
        yield from self._traffic(s)
        yield from self._instances(s)
        refused = CounterMetricFamily("appliance_requests_refused", "Requests refused before an endpoint was "
                                      "known to be theirs: no such endpoint, or no valid credentials for it "
                                      "(counted without endpoint labels)", labels=["reason"])
        for reason, n in sorted(s.refused.items()):
            refused.add_metric([reason], n)
        yield refused
        yield CounterMetricFamily("appliance_mirror_dropped", "Mirrored copies not sent: too many in flight",
                                  value=s.mirrors_dropped)
        yield GaugeMetricFamily("appliance_mirror_in_flight", "Mirrored copies in flight now",
                                value=s.mirrors_in_flight)
        yield GaugeMetricFamily("appliance_request_log_enabled", "1 while the request log records requests",
                                value=int(s.request_log_enabled))
        if s.request_log is not None:
            log_events = CounterMetricFamily("appliance_request_log_events", "Request-log events by outcome: "
                                             "written, failed (the store refused their batch), dropped",
                                             labels=["outcome"])
            for outcome in ("written", "failed", "dropped"):
                log_events.add_metric([outcome], s.request_log[outcome])
            yield log_events
            yield GaugeMetricFamily("appliance_request_log_pending", "Events waiting for the request-log writer",
                                    value=s.request_log["pending"])
            yield CounterMetricFamily("appliance_request_log_pruned_rows", "Rows deleted by retention or the "
                                      "size cap", value=s.request_log["pruned"])
        if self.gpus is not None:
            yield from self._gpus()

    def _traffic(self, s: Snapshot) -> Iterator[Metric]:
        labels = ["endpoint", "deployment"]
        requests = CounterMetricFamily("appliance_requests", "Requests answered, by endpoint, deployment and "
                                       "status class (deployment empty: answered before one was chosen)",
                                       labels=[*labels, "status_class"])
        codes = CounterMetricFamily("appliance_requests_by_code", "Requests answered 408 (timed out), 424 (the "
                                    "model's error) and 429 (over the concurrency limit)", labels=[*labels, "code"])
        latency = HistogramMetricFamily("appliance_request_duration_seconds", "Time from a request's arrival "
                                        "to its answer, as the router saw it", labels=labels)
        mirrored = CounterMetricFamily("appliance_mirror_requests", "Mirrored copies sent to a deployment "
                                       "(not counted in appliance_requests)", labels=labels)
        agreed = CounterMetricFamily("appliance_mirror_agreed", "Mirrored copies answered 200 with the live "
                                     "answer's exact body (the live answer a 200 too)", labels=labels)
        in_flight = GaugeMetricFamily("appliance_requests_in_flight", "Requests admitted and not yet answered",
                                      labels=labels)
        queued = GaugeMetricFamily("appliance_requests_queued", "Requests waiting for an admission slot",
                                   labels=labels)
        for (endpoint, deployment), t in sorted(s.traffic.items()):
            values = [endpoint, deployment]
            classes = {"2xx": 0, "4xx": 0, "5xx": 0}
            for code, n in t.codes.items():
                name = f"{code // 100}xx"
                classes[name] = classes.get(name, 0) + n
            for name, n in sorted(classes.items()):
                requests.add_metric([*values, name], n)
            for code in CODES:
                codes.add_metric([*values, str(code)], t.codes.get(code, 0))
            cumulative, buckets = 0, []
            for bound, n in zip((*BOUNDS, float("inf")), t.latency, strict=True):
                cumulative += n
                buckets.append((_le(bound), cumulative))
            latency.add_metric(values, buckets, t.seconds)
            mirrored.add_metric(values, t.mirrored)
            agreed.add_metric(values, t.agreed)
            if deployment:
                in_flight.add_metric(values, s.in_flight.get((endpoint, deployment), 0))
                queued.add_metric(values, t.queued)
        yield from (requests, codes, latency, in_flight, queued, mirrored, agreed)

    def _instances(self, s: Snapshot) -> Iterator[Metric]:
        labels = ["endpoint", "deployment", "instance"]
        state = GaugeMetricFamily("appliance_instance_state", "1 for the state each instance is in",
                                  labels=[*labels, "state"])
        restarts = CounterMetricFamily("appliance_instance_restarts", "Times an instance's worker was restarted "
                                       "by its supervisor", labels=labels)
        outstanding = GaugeMetricFamily("appliance_instance_requests_in_flight", "Requests an instance is "
                                        "answering now", labels=labels)
        cpu = CounterMetricFamily("appliance_instance_cpu_seconds", "CPU time of an instance's own process (user "
                                  "+ system; absent for models served in the daemon's process)", labels=labels)
        rss = GaugeMetricFamily("appliance_instance_resident_memory_bytes", "Resident memory of an instance's own "
                                "process", labels=labels)
        sampled = self.sample({i.pid for i in s.instances if i.pid}) if self.sample else {}
        for i in s.instances:
            values = [i.endpoint, i.deployment, i.name]
            for name in STATES:
                state.add_metric([*values, name], 1 if i.state == name else 0)
            restarts.add_metric(values, i.restarts)
            outstanding.add_metric(values, i.outstanding)
            if i.pid in sampled:
                seconds, resident = sampled[i.pid]
                cpu.add_metric(values, seconds)
                rss.add_metric(values, resident)
        yield from (state, restarts, outstanding, cpu, rss)

    def _gpus(self) -> Iterator[Metric]:
        devices = self.gpus()
        if not devices:
            return
        labels = ["gpu", "name"]
        busy = GaugeMetricFamily("appliance_gpu_utilization_ratio", "Share of the last sample period the GPU "
                                 "was busy (0-1)", labels=labels)
        used = GaugeMetricFamily("appliance_gpu_memory_used_bytes", "GPU memory in use", labels=labels)
        total = GaugeMetricFamily("appliance_gpu_memory_total_bytes", "GPU memory in all", labels=labels)
        for index, name, utilisation, memory_used, memory_total in devices:
            busy.add_metric([index, name], utilisation)
            used.add_metric([index, name], memory_used)
            total.add_metric([index, name], memory_total)
        yield from (busy, used, total)


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


_NVIDIA_DRIVER = ("/dev/nvidiactl", "/proc/driver/nvidia/version")


class _Gpus:
    """NVIDIA GPUs through NVML (the nvidia-ml-py package), when it imports and a driver answers;
    otherwise nothing, said once at debug level. NVML is initialised on the first scrape, not before."""

    def __init__(self) -> None:
        self._nvml: Any = None
        self._tried = False

    def sample(self) -> list[tuple[str, str, float, int, int]]:
        """(index, name, utilisation 0-1, memory used, memory total) per device."""
        if not self._tried:
            self._tried = True
            if sys.platform == "linux" and not any(os.path.exists(p) for p in _NVIDIA_DRIVER):
                return []  # no driver: not even the import (60 ms of the GIL, on a scrape)
            try:
                import pynvml

                pynvml.nvmlInit()
                self._nvml = pynvml
            except Exception as exc:  # no package, no driver, no device: no GPU metrics
                log.debug("no GPU metrics: %s", exc)
        nvml = self._nvml
        if nvml is None:
            return []
        out = []
        with contextlib.suppress(Exception):
            for index in range(nvml.nvmlDeviceGetCount()):
                try:
                    handle = nvml.nvmlDeviceGetHandleByIndex(index)
                    name = nvml.nvmlDeviceGetName(handle)
                    name = name.decode() if isinstance(name, bytes) else str(name)
                    rates = nvml.nvmlDeviceGetUtilizationRates(handle)
                    memory = nvml.nvmlDeviceGetMemoryInfo(handle)
                except Exception as exc:  # one device that does not answer: the others still do
                    log.debug("GPU %d: %s", index, exc)
                    continue
                out.append((str(index), name, rates.gpu / 100, int(memory.used), int(memory.total)))
        return out
