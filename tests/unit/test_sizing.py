"""Sizing from a measured curve (appliance.telemetry.sizing): pure, synthetic curves."""

from __future__ import annotations

import math

from appliance.telemetry.sizing import (
    Step,
    cpu_millicores,
    memory_mib,
    percentile,
    recommend,
)

MIB = 1 << 20


def step(concurrency: int, rps: float, p99: float | None, *, errors: int = 0, cpu: float = 0.5,
         rss: int = 100 * MIB, requests: int | None = None) -> Step:
    n = requests if requests is not None else int(rps * 10)
    return Step(concurrency=concurrency, seconds=10.0, requests=n, errors=errors,
                statuses={"500": errors} if errors else {}, rps=rps, p50_ms=p99, p95_ms=p99, p99_ms=p99,
                mean_ms=p99, cpu_cores_per_instance=cpu, rss_bytes_per_instance=rss, instances=[])


# A 20 ms model at max_concurrent_requests_per_instance 1, one instance: ~50 req/s whatever the
# concurrency; the queue in the router raises p99 instead.
SERIAL = [step(1, 48.0, 21.0, cpu=0.05), step(2, 49.0, 42.0, cpu=0.06), step(4, 49.5, 83.0, cpu=0.06),
          step(8, 49.0, 165.0, cpu=0.06)]


def test_a_serial_model_needs_instances_for_the_rate() -> None:
    rec = recommend(SERIAL, instances=1, max_concurrent=1, target_p99_ms=100, target_rps=120)
    assert rec is not None
    assert rec.at_concurrency == 4 and rec.meets_target_p99  # the most req/s within 100 ms
    assert rec.instance_count == math.ceil(120 / 49.5) == 3
    assert rec.max_concurrent_requests_per_instance == 1  # the instance never had more in flight
    assert any("beyond it waited their turn" in n for n in rec.notes)
    assert rec.cpu == "100m" and rec.memory == "128Mi"  # 0.06 cores → 100m; 100 MiB × 1.25 → 128Mi


def test_a_tight_p99_picks_a_lower_concurrency() -> None:
    rec = recommend(SERIAL, instances=1, max_concurrent=1, target_p99_ms=30, target_rps=100)
    assert rec is not None and rec.at_concurrency == 1 and rec.meets_target_p99
    assert rec.instance_count == math.ceil(100 / 48.0) == 3


def test_a_concurrent_model_gets_its_concurrency() -> None:
    # An instance that serves 4 at once (max_concurrent 8): req/s grows to 4, then latency does.
    curve = [step(1, 50, 21), step(2, 100, 22), step(4, 195, 24, cpu=1.23, rss=300 * MIB), step(8, 198, 48)]
    rec = recommend(curve, instances=1, max_concurrent=8, target_p99_ms=30, target_rps=1000)
    assert rec is not None
    assert rec.at_concurrency == 4 and rec.max_concurrent_requests_per_instance == 4
    assert rec.instance_count == 6  # ceil(1000 / 195)
    assert rec.cpu == "1300m" and rec.cpu_millicores == 1300
    assert rec.memory == "384Mi"  # 375 MiB rounded up to 64Mi
    assert not any("queued" in n for n in rec.notes)


def test_several_measured_instances_are_divided_out() -> None:
    curve = [step(2, 100, 21), step(4, 196, 25), step(8, 200, 60)]
    rec = recommend(curve, instances=2, max_concurrent=2, target_p99_ms=50, target_rps=500)
    assert rec is not None and rec.at_concurrency == 4
    assert rec.per_instance_rps == 98.0
    assert rec.max_concurrent_requests_per_instance == 2  # 4 clients over 2 instances
    assert rec.instance_count == 6  # ceil(500 / 98)


def test_no_step_within_the_target_says_so() -> None:
    rec = recommend(SERIAL, instances=1, max_concurrent=1, target_p99_ms=10, target_rps=50)
    assert rec is not None and not rec.meets_target_p99
    assert rec.at_concurrency == 1  # the lowest p99
    assert any("no concurrency measured had p99 <= 10 ms" in n for n in rec.notes)


def test_steps_with_errors_are_not_capacity() -> None:
    curve = [step(1, 50, 21), step(16, 400, 25, errors=500)]  # fast because it fails (429s)
    rec = recommend(curve, instances=1, max_concurrent=1, target_p99_ms=100, target_rps=100)
    assert rec is not None and rec.at_concurrency == 1 and rec.instance_count == 2
    assert recommend([step(1, 0, None, errors=10, requests=0)], instances=1, max_concurrent=1) is None


def test_without_targets() -> None:
    rec = recommend(SERIAL, instances=2, max_concurrent=1)
    assert rec is not None
    assert rec.instance_count == 2 and rec.at_concurrency == 4  # as measured; the most req/s
    assert any("no target req/s" in n for n in rec.notes)


def test_shared_process_is_said() -> None:
    rec = recommend(SERIAL, instances=1, max_concurrent=1, target_rps=10, shared_process=True)
    assert rec is not None and rec.instance_count == 1
    assert any("share the daemon's process" in n for n in rec.notes)


def test_rounding() -> None:
    assert cpu_millicores(0) == 100 and cpu_millicores(0.1) == 100 and cpu_millicores(0.1000001) == 200
    assert cpu_millicores(2.0) == 2000
    assert memory_mib(0) == 64 and memory_mib(int(51.2 * MIB)) == 64 and memory_mib(52 * MIB) == 128
    assert memory_mib(1024 * MIB) == 1280


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50 and percentile(values, 0.99) == 99 and percentile(values, 1.0) == 100
    assert percentile([7.0], 0.99) == 7.0 and percentile([], 0.5) is None


def test_export_takes_the_profiled_size_instead_of_the_sku() -> None:
    """The renderers are pure: a unit with `sized` gets those requests; explicit resources still win;
    a GPU SKU keeps its GPU."""
    import dataclasses

    from export_fixtures import sample

    from appliance.export import common, kserve, workloads
    from appliance.export.inputs import Sized

    (export,), _ = sample()
    blue, green, _ = export.deployments
    sized = dataclasses.replace(blue, sized=Sized(cpu_millicores=300, memory_mib=192))
    cont, _, _ = workloads.container(sized)
    assert cont["resources"] == {"requests": {"cpu": "300m", "memory": "192Mi"}, "limits": {"memory": "192Mi"}}
    assert workloads.container(blue)[0]["resources"] == common.resources(blue.spec.instance_type, None)[0]  # SKU
    assert kserve.predictor(sized)["model"]["resources"]["requests"] == {"cpu": "300m", "memory": "192Mi"}
    gpu, gpus = common.resources(green.spec.instance_type, None, (500, 128))
    assert gpus == 1 and gpu["requests"]["cpu"] == "500m" and gpu["limits"]["memory"] == "128Mi"
    explicit, _ = common.resources(None, {"requests": {"cpu": "2"}}, (500, 128))
    assert explicit == {"requests": {"cpu": "2"}}
