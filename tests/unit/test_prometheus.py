"""GET /metrics without a server: the data plane's counting (whether or not the request log is on), and
the collector's exposition parsed back with prometheus_client's own parser."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from test_dataplane_refusals import KEY, OK, call, plane

from appliance.runtime import Response
from appliance.telemetry.prometheus import BOUNDS, ApplianceCollector, InstanceView, Metrics, Snapshot, Traffic, bucket


def scrape(metrics: Metrics) -> dict[str, Any]:
    """name → {labels tuple → value} of every sample, from the exposition text."""
    body, content_type = asyncio.run(metrics.exposition())
    assert content_type.startswith("text/plain")
    out: dict[str, Any] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def value(samples: dict[str, Any], name: str, **labels: str) -> float:
    return samples[name][tuple(sorted(labels.items()))]


def test_bucket_follows_prometheus_le() -> None:
    assert bucket(BOUNDS, 0.0) == 0 and bucket(BOUNDS, BOUNDS[0]) == 0  # x <= le
    assert bucket(BOUNDS, BOUNDS[0] * 1.01) == 1
    assert bucket(BOUNDS, 1e9) == len(BOUNDS)  # +Inf


@pytest.mark.parametrize("logging", [True, False])
def test_counts_per_deployment_and_status(logging: bool) -> None:
    dataplane, recorder, deployments = plane()
    if not logging:
        dataplane.recorder = None  # `appliance request-log off`: still counted
    for _ in range(5):
        assert call(dataplane)[0] == 200
    deployments["blue"].client.answer = Response(500, [], b"boom")  # the model's error: 424
    for _ in range(3):
        assert call(dataplane)[0] == 424
    assert call(dataplane, rest="nothing-here")[0] == 404  # known caller, bad path: before a deployment
    assert call(dataplane, endpoint="nope")[0] == 404  # a stranger: no label
    assert call(dataplane, key=b"wrong")[0] == 401
    assert len(recorder.rows) == (9 if logging else 0)

    samples = scrape(Metrics(dataplane, gpus=False))
    blue = {"endpoint": "ep", "deployment": "blue"}
    assert value(samples, "appliance_requests_total", **blue, status_class="2xx") == 5
    assert value(samples, "appliance_requests_total", **blue, status_class="4xx") == 3
    assert value(samples, "appliance_requests_total", **blue, status_class="5xx") == 0
    assert value(samples, "appliance_requests_by_code_total", **blue, code="424") == 3
    assert value(samples, "appliance_requests_by_code_total", **blue, code="429") == 0
    assert value(samples, "appliance_requests_total", endpoint="ep", deployment="", status_class="4xx") == 1
    assert value(samples, "appliance_request_duration_seconds_count", **blue) == 8
    assert value(samples, "appliance_request_duration_seconds_bucket", **blue, le="+Inf") == 8
    assert 0 < value(samples, "appliance_request_duration_seconds_sum", **blue) < 8
    assert value(samples, "appliance_requests_refused_total", reason="unknown_endpoint") == 1
    assert value(samples, "appliance_requests_refused_total", reason="unauthenticated") == 1
    assert value(samples, "appliance_requests_in_flight", **blue) == 0
    assert value(samples, "appliance_request_log_enabled") == (1 if logging else 0)
    labels = {v for series in samples.values() for key in series for _, v in key}
    assert "nope" not in labels
    assert "process_cpu_seconds_total" in samples  # the daemon's own process


def test_mirror_agreement_and_deleted_endpoints() -> None:
    dataplane, _, deployments = plane(mirror=OK)
    for _ in range(4):
        assert call(dataplane)[0] == 200
    deployments["green"].client.answer = Response(200, [], b'{"other":1}')
    assert call(dataplane)[0] == 200
    metrics = Metrics(dataplane, gpus=False)
    samples = scrape(metrics)
    green = {"endpoint": "ep", "deployment": "green"}
    assert value(samples, "appliance_mirror_requests_total", **green) == 5
    assert value(samples, "appliance_mirror_agreed_total", **green) == 4
    assert value(samples, "appliance_requests_total", **green, status_class="2xx") == 0  # copies apart
    assert value(samples, "appliance_requests_total", endpoint="ep", deployment="blue", status_class="2xx") == 5
    dataplane.table.remove("ep")
    samples = scrape(metrics)
    assert "appliance_requests_total" not in samples and dataplane.traffic == {}


def test_queued_while_waiting_for_a_slot() -> None:
    dataplane, _, deployments = plane()
    blue = deployments["blue"]
    blue.plan = SimpleNamespace(request_settings=SimpleNamespace(max_concurrent_requests_per_instance=1,
                                                                 max_queue_wait_ms=50, request_timeout_ms=5000),
                                instance_count=1)
    metrics = Metrics(dataplane, gpus=False)

    async def run() -> tuple[float, float, list[int]]:
        release = asyncio.Event()

        class Slow:
            async def request(self, *args: Any, **kwargs: Any) -> Response:
                await release.wait()
                return OK

        blue.ready[0].client = Slow()
        statuses: list[int] = []

        async def one() -> None:
            sent: list[dict[str, Any]] = []

            async def receive() -> dict[str, Any]:
                return {"type": "http.request", "body": b"{}", "more_body": False}

            async def send(message: dict[str, Any]) -> None:
                sent.append(message)

            scope = {"type": "http", "method": "POST", "path": "/endpoints/ep/score", "query_string": b"",
                     "headers": [(b"authorization", b"Bearer " + KEY)]}
            await dataplane(scope, receive, send, "ep", "score")
            statuses.append(sent[0]["status"])

        tasks = [asyncio.create_task(one()) for _ in range(3)]  # Azure admits 2 × max_concurrent (1 here)
        await asyncio.sleep(0.01)
        snap = metrics.snapshot()
        in_flight, queued = snap.in_flight["ep", "blue"], snap.traffic["ep", "blue"].queued
        await asyncio.gather(tasks[2])  # the third waits 50 ms, then 429
        release.set()
        await asyncio.gather(*tasks)
        return in_flight, queued, statuses

    in_flight, queued, statuses = asyncio.run(run())
    assert (in_flight, queued) == (2, 1) and sorted(statuses) == [200, 200, 429]
    samples = scrape(metrics)
    blue_labels = {"endpoint": "ep", "deployment": "blue"}
    assert value(samples, "appliance_requests_by_code_total", **blue_labels, code="429") == 1
    assert value(samples, "appliance_requests_queued", **blue_labels) == 0


def test_instances_and_request_log_in_the_collector() -> None:
    import os

    traffic = Traffic()
    traffic.codes = {200: 2, 408: 1}
    traffic.latency[0], traffic.latency[-1], traffic.seconds = 2, 1, 120.0
    snap = Snapshot(traffic={("ep", "blue"): traffic}, in_flight={("ep", "blue"): 3},
                    instances=[InstanceView("ep", "blue", "blue-0", "ready", 2, 1, os.getpid()),
                               InstanceView("ep", "blue", "blue-1", "restarting", 5, 0, None)],
                    request_log={"written": 10, "failed": 1, "dropped": 2, "pruned": 0, "pending": 4},
                    request_log_enabled=True)
    metrics = Metrics(SimpleNamespace(), gpus=False)  # type: ignore[arg-type]
    body, _ = metrics.render(snap)
    samples: dict[str, Any] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    b0 = {"endpoint": "ep", "deployment": "blue", "instance": "blue-0"}
    b1 = {**b0, "instance": "blue-1"}
    assert value(samples, "appliance_instance_state", **b0, state="ready") == 1
    assert value(samples, "appliance_instance_state", **b0, state="failed") == 0
    assert value(samples, "appliance_instance_state", **b1, state="restarting") == 1
    assert value(samples, "appliance_instance_restarts_total", **b1) == 5
    assert value(samples, "appliance_instance_resident_memory_bytes", **b0) > 0
    assert value(samples, "appliance_instance_cpu_seconds_total", **b0) > 0
    assert tuple(sorted(b1.items())) not in samples["appliance_instance_cpu_seconds_total"]  # no own process
    blue = {"endpoint": "ep", "deployment": "blue"}
    assert value(samples, "appliance_requests_by_code_total", **blue, code="408") == 1
    assert value(samples, "appliance_request_duration_seconds_bucket", **blue, le=repr(BOUNDS[0])) == 2
    assert value(samples, "appliance_request_duration_seconds_bucket", **blue, le="60.0") == 2
    assert value(samples, "appliance_request_duration_seconds_bucket", **blue, le="+Inf") == 3
    assert value(samples, "appliance_requests_in_flight", **blue) == 3
    assert value(samples, "appliance_request_log_events_total", outcome="dropped") == 2
    assert value(samples, "appliance_request_log_pending") == 4
    assert "appliance_gpu_utilization_ratio" not in samples


def test_gpus_absent_without_nvml_and_present_with_one() -> None:
    collector = ApplianceCollector(Snapshot(), None, lambda: [])
    assert not [m for m in collector.collect() if m.name.startswith("appliance_gpu")]
    collector = ApplianceCollector(Snapshot(), None, lambda: [("0", "Fake GPU", 0.5, 100, 1000)])
    gpu = {m.name: m.samples for m in collector.collect() if m.name.startswith("appliance_gpu")}
    assert gpu["appliance_gpu_utilization_ratio"][0].value == 0.5
    assert gpu["appliance_gpu_memory_total_bytes"][0].labels == {"gpu": "0", "name": "Fake GPU"}
    # this machine: whatever it has, sampling never raises
    assert isinstance(Metrics(SimpleNamespace()).gpus(), list)  # type: ignore[arg-type]

