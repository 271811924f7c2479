"""Sizing from a profile (pure, no I/O): what a deployment measured at each concurrency, and the
instance count, per-instance concurrency and CPU/memory requests that follow for a target p99 and req/s.

The rule, for a curve measured on `instances` instances each serving `max_concurrent` requests at once
(more waited: at the instance, as Azure lets twice that in, then in the router's queue):
- the step used is the one with the most req/s among those without errors (at most 1%) whose p99 is
  within the target (without a target: the most req/s); none within it: the lowest p99, and it says so;
- per-instance capacity is that step's req/s / `instances`; instance_count = ceil(target_rps / it), at
  least 1 (without a target req/s: the instances measured);
- max_concurrent_requests_per_instance is that step's concurrency per instance, at most what the
  instance actually served at once (`max_concurrent`: beyond it requests waited);
- CPU request: that step's CPU cores per instance, rounded up to 100m (at least 100m); memory: its peak
  RSS per instance × 1.25, rounded up to 64Mi (at least 64Mi).
"""

from __future__ import annotations

import math

from msgspec import Struct

MAX_ERROR_RATE = 0.01  # a step with more errors than this is not capacity
MEMORY_HEADROOM = 1.25
CPU_STEP_M = 100  # millicores
MEMORY_STEP_MI = 64
MIB = 1 << 20


class InstanceUsage(Struct):
    name: str
    pid: int | None
    cpu_cores: float  # mean over the step, of the instance's process and its children
    rss_bytes: int  # peak over the step
    shared: bool = False  # in-process instance: the daemon's own process (the router and the load too)


class Step(Struct):
    """One concurrency of a profile: `concurrency` clients, each sending its next request when the last answers."""

    concurrency: int
    seconds: float
    requests: int  # answered 2xx within the step
    errors: int  # answered otherwise, or not at all
    statuses: dict[str, int]  # the errors by status code, or by exception name when there was no answer
    rps: float  # 2xx answers per second
    p50_ms: float | None  # latencies of the 2xx answers, as the client saw them (through the router)
    p95_ms: float | None
    p99_ms: float | None
    mean_ms: float | None
    cpu_cores_per_instance: float  # mean over the instances
    rss_bytes_per_instance: int  # peak over the instances
    instances: list[InstanceUsage]

    @property
    def error_rate(self) -> float:
        total = self.requests + self.errors
        return self.errors / total if total else 1.0


class Recommendation(Struct):
    instance_count: int
    max_concurrent_requests_per_instance: int
    cpu: str  # a Kubernetes quantity: "300m"
    memory: str  # "192Mi"
    cpu_millicores: int
    memory_mib: int
    per_instance_rps: float  # what one instance serves at the chosen step
    at_concurrency: int  # the step used (its client concurrency)
    expected_p99_ms: float | None  # that step's p99
    meets_target_p99: bool  # false: no step was within the target p99
    notes: list[str]


class Profile(Struct, kw_only=True):
    """What `deployment profile` measured and recommends; stored with the deployment."""

    endpoint: str
    deployment: str
    at: str  # when it was measured, RFC 3339 UTC
    runtime: str  # process | docker | inprocess
    instance_count: int  # the instances it was measured on
    max_concurrent_requests_per_instance: int  # the admission limit it was measured with
    request_bytes: int
    seconds_per_step: float
    target_p99_ms: float | None
    target_rps: float | None
    shared_process: bool  # in-process instances: CPU and RSS are the whole daemon's
    steps: list[Step]
    recommendation: Recommendation | None  # None: no step answered without errors
    notes: list[str]


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest rank: the smallest value with at least `q` of the values at or below it."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def cpu_millicores(cores: float) -> int:
    """Rounded up to CPU_STEP_M, at least CPU_STEP_M (a tiny fraction over a step is noise: 1e-9)."""
    steps = math.ceil(max(cores, 0.0) * 1000 / CPU_STEP_M - 1e-9)
    return max(1, steps) * CPU_STEP_M


def memory_mib(rss_bytes: int) -> int:
    """Peak RSS × 1.25, rounded up to MEMORY_STEP_MI MiB, at least MEMORY_STEP_MI."""
    steps = math.ceil(rss_bytes * MEMORY_HEADROOM / MIB / MEMORY_STEP_MI - 1e-9)
    return max(1, steps) * MEMORY_STEP_MI


def usable(step: Step) -> bool:
    return step.requests > 0 and step.error_rate <= MAX_ERROR_RATE


def choose(steps: list[Step], target_p99_ms: float | None) -> tuple[Step | None, bool]:
    """(the step capacity is read from, whether it is within the target p99)."""
    candidates = [s for s in steps if usable(s)]
    if not candidates:
        return None, False
    within = [s for s in candidates if target_p99_ms is None or (s.p99_ms is not None and s.p99_ms <= target_p99_ms)]
    if within:
        return max(within, key=lambda s: (s.rps, -s.concurrency)), True
    return min(candidates, key=lambda s: (s.p99_ms if s.p99_ms is not None else math.inf, s.concurrency)), False


def recommend(steps: list[Step], *, instances: int, max_concurrent: int, target_p99_ms: float | None = None,
              target_rps: float | None = None, shared_process: bool = False) -> Recommendation | None:
    """The sizing that follows from the curve (see the module's doc); None if no step served without errors."""
    step, met = choose(steps, target_p99_ms)
    if step is None:
        return None
    instances = max(1, instances)
    notes: list[str] = []
    per_instance = step.rps / instances
    per_instance_concurrency = math.ceil(step.concurrency / instances)
    concurrency = min(per_instance_concurrency, max(1, max_concurrent))
    if not met and target_p99_ms is not None:
        notes.append(f"no concurrency measured had p99 <= {target_p99_ms:g} ms (the lowest was "
                     f"{step.p99_ms:.1f} ms at concurrency {step.concurrency}): the model itself is slower than the "
                     "target; sized from that step")
    if per_instance_concurrency > max_concurrent:
        notes.append(f"measured with max_concurrent_requests_per_instance {max_concurrent}: at concurrency "
                     f"{step.concurrency} requests beyond it waited their turn (p99 includes the wait); raise it "
                     "and profile again to see whether an instance serves more at once")
    if target_rps is not None:
        count = max(1, math.ceil(target_rps / per_instance - 1e-9)) if per_instance > 0 else instances
        notes.append(f"{target_rps:g} req/s at {per_instance:.1f} req/s per instance: {count} instance(s)")
    else:
        count = instances
        notes.append("no target req/s (--target-rps): instance_count stays as measured")
    if shared_process:
        notes.append("in-process instances share the daemon's process: CPU and memory are the whole daemon's "
                     "(router and load generator included), an upper bound")
    cpu_m = cpu_millicores(step.cpu_cores_per_instance)
    mem = memory_mib(step.rss_bytes_per_instance)
    return Recommendation(instance_count=count, max_concurrent_requests_per_instance=concurrency,
                          cpu=f"{cpu_m}m", memory=f"{mem}Mi", cpu_millicores=cpu_m, memory_mib=mem,
                          per_instance_rps=round(per_instance, 2), at_concurrency=step.concurrency,
                          expected_p99_ms=step.p99_ms, meets_target_p99=met, notes=notes)
