"""Scheduled model monitors against a real daemon: an Azure ML monitor schedule created with
`appliance monitor create -f`, run now, its signals in `monitor show`, `endpoint show` and the API;
documents refused with the field named and nothing stored. (The scheduler running a due monitor by
itself is tested with an injected clock in tests/unit/test_monitor_schedule.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import Daemon
from tests.e2e.test_data_collection import COLLECTOR, _settled

pytestmark = pytest.mark.e2e

MONITOR = """\
$schema: http://azureml/sdk-2-0/Schedule.json
name: iris_monitoring
display_name: Iris model monitoring
trigger:
  type: recurrence
  frequency: day
  interval: 1
  schedule:
    hours: 3
    minutes: 15
create_monitor:
  compute:
    instance_type: standard_e4s_v3
    runtime_version: "3.4"
  monitoring_target:
    ml_task: classification
    endpoint_deployment_id: azureml:my-ep:blue
  monitoring_signals:
    inputs_drift:
      type: data_drift
      production_data:
        data_context: model_inputs
        data_window:
          lookback_window_size: PT1H
      reference_data:
        input_data:
          path: ./baseline.parquet
          type: uri_file
        data_context: training
      alert_enabled: true
      metric_thresholds:
        numerical:
          normalized_wasserstein_distance: 0.1
    outputs_drift:
      type: prediction_drift
      production_data:
        data_window:
          lookback_window_size: PT1H
      reference_data:
        data_window:
          lookback_window_size: P1D
  alert_notification:
    emails:
      - abc@example.com
"""
SHIFTED = ["features_1", "features_3"]


def test_monitor_from_azure_yaml_flags_the_shifted_features(daemon: Daemon, iris_project: Path,
                                                            tmp_path: Path) -> None:
    blue = iris_project / "blue.yml"
    blue.write_text(blue.read_text() + "runtime: process\n" + COLLECTOR.format(rate=1.0))
    daemon.cli("apply", "-f", "endpoint.yml", "-f", "blue.yml", cwd=iris_project)
    daemon.cli("online-endpoint", "update", "-n", "my-ep", "--traffic", "blue=100")
    rng = np.random.default_rng(5)
    with httpx.Client(base_url=daemon.url, headers={"authorization": f"Bearer {daemon.key('my-ep')}"},
                      timeout=30) as http:
        for _ in range(600):
            row = [float(v) for v in rng.normal([5.8, 3.0, 3.8, 1.2], [0.8, 0.4, 1.7, 0.7]).round(2)]
            assert http.post("/endpoints/my-ep/score", json={"data": [row]}).status_code == 200
    _settled(daemon.home, "my-ep", "blue", ("model_inputs",), 600)

    # The training data: drawn like the requests but for two shifted features.
    folder = tmp_path / "monitoring"
    folder.mkdir()
    base_rng = np.random.default_rng(9)
    columns = {f"features_{i}": base_rng.normal(m, s, 5000) for i, (m, s) in
               enumerate([(5.8, 0.8), (3.0, 0.4), (3.8, 1.7), (1.2, 0.7)])}
    columns["features_1"] = columns["features_1"] + 1.0
    columns["features_3"] = columns["features_3"] - 1.5
    pq.write_table(pa.table(columns), folder / "baseline.parquet")
    (folder / "monitor.yml").write_text(MONITOR)

    created = json.loads(daemon.cli("monitor", "create", "-f", "monitor.yml", "-o", "json", cwd=folder).stdout)
    assert created["status"] is None and created["next_run_at"].endswith("03:15:00Z")
    assert created["signals"]["inputs_drift"]["reference"]["path"] == str(folder / "baseline.parquet")
    listed = daemon.cli("monitor", "list")
    assert "iris_monitoring" in listed.stdout and "every day at 03:15" in listed.stdout

    ran = daemon.cli("monitor", "run", "iris_monitoring")
    assert "inputs_drift (data_drift): FAILED features_1, features_3 (2 of 4 features)" in ran.stdout, ran.stdout
    assert "outputs_drift (prediction_drift): no collected model_outputs data" in ran.stdout

    shown = json.loads(daemon.cli("monitor", "show", "iris_monitoring", "-o", "json").stdout)
    assert shown["status"] == "failed" and len(shown["runs"]) == 1
    signal = shown["last_run"]["signals"]["inputs_drift"]
    assert signal["status"] == "failed" and sorted(signal["failed_features"]) == SHIFTED
    failing = {m["feature"] for m in signal["metrics"] if not m["passed"]}
    assert failing == set(SHIFTED)
    assert all(m["metric"] == "normalized_wasserstein_distance" and m["threshold"] == 0.1 for m in signal["metrics"])
    assert shown["last_run"]["signals"]["outputs_drift"]["status"] == "no_data"
    table = daemon.cli("monitor", "show", "iris_monitoring").stdout
    assert "FAIL" in table and "normalized_wasserstein_distance" in table

    endpoint = daemon.cli("endpoint", "show", "my-ep").stdout
    assert "iris_monitoring (blue, every day at 03:15): failed" in endpoint
    assert "inputs_drift (data_drift): FAILED features_1, features_3" in endpoint
    as_json = json.loads(daemon.cli("endpoint", "show", "my-ep", "-o", "json").stdout)
    (summary,) = as_json["monitors"]
    assert sorted(summary["signals"]["inputs_drift"]["failed_features"]) == SHIFTED

    api = daemon.api("GET", "/monitors/iris_monitoring")
    assert api.status_code == 200
    assert sorted(api.json()["last_run"]["signals"]["inputs_drift"]["failed_features"]) == SHIFTED
    assert [m["name"] for m in daemon.api("GET", "/monitors", params={"endpoint": "my-ep"}).json()] == [
        "iris_monitoring"]
    events = daemon.api("GET", "/events", params={"subject": "my-ep/blue"}).json()
    alert = next(e for e in events if e["kind"] == "monitor.signal")
    assert alert["detail"]["monitor"] == "iris_monitoring" and sorted(alert["detail"]["failed_features"]) == SHIFTED

    daemon.cli("monitor", "delete", "iris_monitoring", "--yes")
    assert daemon.api("GET", "/monitors").json() == []
    assert daemon.api("GET", "/monitors/iris_monitoring").status_code == 404


REFUSALS = [
    (("frequency: day", "frequency: fortnight"), "trigger.frequency", "minute, hour, day, week, month"),
    (("      alert_enabled: true", "      alert_enabled: true\n      colour: blue"),
     "create_monitor.monitoring_signals.inputs_drift.colour", "no such field"),
    (("normalized_wasserstein_distance: 0.1", "two_sample_kolmogorov_smirnov_test: 0.1"),
     "metric_thresholds.numerical.two_sample_kolmogorov_smirnov_test", "normalized_wasserstein_distance"),
    (("type: prediction_drift", "type: feature_attribution_drift"), "outputs_drift.type", "not computed here"),
    (("./baseline.parquet", "./missing.parquet"), "input_data.path", "no such file"),
    (("azureml:my-ep:blue", "azureml:my-ep"), "endpoint_deployment_id", "azureml:ENDPOINT:DEPLOYMENT"),
]


def test_bad_monitor_documents_are_refused_naming_the_field(daemon: Daemon, tmp_path: Path) -> None:
    (tmp_path / "baseline.parquet").write_bytes(b"")
    for change, field, words in REFUSALS:
        (tmp_path / "monitor.yml").write_text(MONITOR.replace(*change))
        bad = daemon.cli("monitor", "create", "-f", "monitor.yml", cwd=tmp_path, check=False)
        assert bad.returncode != 0 and field in bad.stderr and words in bad.stderr, (change, bad.stderr)
    (tmp_path / "monitor.yml").write_text(MONITOR)  # valid, but my-ep/blue does not exist
    missing = daemon.cli("monitor", "create", "-f", "monitor.yml", cwd=tmp_path, check=False)
    assert missing.returncode != 0 and "my-ep" in missing.stderr, missing.stderr
    answer = daemon.api("POST", "/monitors", json={"body": {"name": "x", "trigger": {"type": "cron"}}})
    assert answer.status_code == 400 and answer.json()["field"] == "trigger.expression"
    assert daemon.cli("monitor", "list", "-o", "json").stdout.strip() == "[]"  # nothing stored
