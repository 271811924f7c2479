"""GET /metrics on a real daemon: after a known load, the counts per deployment and status are what was
sent, the latency histogram holds every request, an unknown endpoint leaves no label; the admin token is
needed unless the daemon was started with --metrics-open."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from conftest import Daemon
from prometheus_client.parser import text_string_to_metric_families

ROW = [5.1, 3.5, 1.4, 0.2]


def scrape(daemon: Daemon, headers: dict[str, str] | None = None) -> dict[str, dict[tuple[Any, ...], float]]:
    answer = httpx.get(f"{daemon.url}/metrics", headers=daemon.admin if headers is None else headers, timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    out: dict[str, dict[tuple[Any, ...], float]] = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def value(samples: dict[str, dict[tuple[Any, ...], float]], name: str, **labels: str) -> float:
    return samples[name][tuple(sorted(labels.items()))]


def test_counts_after_a_known_load(daemon: Daemon, iris_project: Path) -> None:
    green = iris_project / "green.yml"
    green.write_text((iris_project / "blue.yml").read_text().replace("name: blue", "name: green"))
    daemon.cli("apply", "-f", "endpoint.yml", "-f", "blue.yml", "-f", "green.yml", cwd=iris_project)
    key = daemon.key("my-ep")
    sent = {("blue", 200): 7, ("green", 200): 4, ("blue", 400): 3, ("green", 400): 2}
    for (deployment, status), n in sent.items():
        body = {"data": [ROW]} if status == 200 else {"nothing": "useful"}  # a bad body: the model's 400
        for _ in range(n):
            answer = daemon.score("my-ep", body, key, **{"azureml-model-deployment": deployment})
            assert answer.status_code == status, answer.text
    for _ in range(5):  # strangers: no such endpoint
        assert daemon.score("nope", {"data": [ROW]}, "whatever").status_code == 404

    samples = scrape(daemon)
    for deployment in ("blue", "green"):
        labels = {"endpoint": "my-ep", "deployment": deployment}
        ok, bad = sent[deployment, 200], sent[deployment, 400]
        assert value(samples, "appliance_requests_total", **labels, status_class="2xx") == ok
        assert value(samples, "appliance_requests_total", **labels, status_class="4xx") == bad
        assert value(samples, "appliance_requests_total", **labels, status_class="5xx") == 0
        for code in ("408", "424", "429"):
            assert value(samples, "appliance_requests_by_code_total", **labels, code=code) == 0
        assert value(samples, "appliance_request_duration_seconds_count", **labels) == ok + bad
        assert value(samples, "appliance_request_duration_seconds_bucket", **labels, le="+Inf") == ok + bad
        buckets = sorted((float(dict(k)["le"]), v) for k, v in samples["appliance_request_duration_seconds_bucket"]
                         .items() if dict(k)["deployment"] == deployment)
        assert [v for _, v in buckets] == sorted(v for _, v in buckets)  # cumulative
        assert buckets[-2][1] == ok + bad  # all within the last finite bound (60 s)
        assert value(samples, "appliance_requests_in_flight", **labels) == 0
        instance = next(dict(k) for k, v in samples["appliance_instance_state"].items()
                        if dict(k)["deployment"] == deployment and dict(k)["state"] == "ready" and v == 1)
        assert value(samples, "appliance_instance_restarts_total", **{k: instance[k] for k in
                                                                      ("endpoint", "deployment", "instance")}) == 0
    total = sum(sent.values())
    assert sum(samples["appliance_request_duration_seconds_count"].values()) == total
    assert value(samples, "appliance_requests_refused_total", reason="unknown_endpoint") == 5
    labels = {v for series in samples.values() for key in series for _, v in key}
    assert "nope" not in labels
    assert value(samples, "appliance_request_log_enabled") == 1
    assert "process_resident_memory_bytes" in samples

    # counted with the request log off too
    daemon.cli("request-log", "off")
    assert daemon.score("my-ep", {"data": [ROW]}, key, **{"azureml-model-deployment": "blue"}).status_code == 200
    samples = scrape(daemon)
    blue = {"endpoint": "my-ep", "deployment": "blue"}
    assert value(samples, "appliance_requests_total", **blue, status_class="2xx") == sent["blue", 200] + 1
    assert value(samples, "appliance_request_log_enabled") == 0


def test_metrics_need_the_admin_token(daemon: Daemon) -> None:
    assert httpx.get(f"{daemon.url}/metrics", timeout=10).status_code == 401
    wrong = {"authorization": "Bearer not-the-token"}
    assert httpx.get(f"{daemon.url}/metrics", headers=wrong, timeout=10).status_code == 401
    assert "appliance_requests_refused_total" in scrape(daemon)
    assert httpx.post(f"{daemon.url}/metrics", headers=daemon.admin, timeout=10).status_code == 405


def test_metrics_open_flag(tmp_path: Path) -> None:
    daemon = Daemon(tmp_path / "home", "--metrics-open").start()
    try:
        samples = scrape(daemon, headers={})
        assert "appliance_requests_refused_total" in samples
        # exactly /metrics, read only: the control API still needs the token
        assert httpx.get(f"{daemon.url}/api/v1/endpoints", timeout=10).status_code == 401
        assert httpx.get(f"{daemon.url}/Metrics", timeout=10).status_code == 401
        assert httpx.post(f"{daemon.url}/metrics", timeout=10).status_code == 401
    finally:
        daemon.stop()
