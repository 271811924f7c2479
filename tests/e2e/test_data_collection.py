"""Azure's data collector against a real daemon: no-code ONNX inputs and outputs sampled at
`sampling_rate`, joinable to the request log; a score.py's `azureml.ai.monitoring.Collector`; nothing
when disabled; and `appliance monitor drift` on what was collected."""

from __future__ import annotations

import json
import random
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import Daemon

pytestmark = pytest.mark.e2e

COLLECTOR = ("data_collector:\n  collections:\n    model_inputs:\n      enabled: 'True'\n      sampling_rate: {rate}\n"
             "    model_outputs:\n      enabled: true\n      sampling_rate: {rate}\n")
SCRIPT = '''import json

import pandas as pd
from azureml.ai.monitoring import Collector


def init():
    global inputs_collector, outputs_collector
    inputs_collector = Collector(name="model_inputs")
    outputs_collector = Collector(name="model_outputs")


def run(data):
    input_df = pd.DataFrame(json.loads(data)["data"])
    context = inputs_collector.collect(input_df)
    output_df = pd.DataFrame({"total": input_df.sum(axis=1)})
    outputs_collector.collect(output_df, context)
    return output_df.to_dict(orient="list")
'''


def _rows(home: Path, endpoint: str, deployment: str, collection: str) -> list[dict[str, object]]:
    folder = home / "data-collector" / f"endpoint={endpoint}" / f"deployment={deployment}" / f"collection={collection}"
    rows: list[dict[str, object]] = []
    for path in sorted(folder.glob("hour=*/*.parquet")):
        rows += pq.read_table(path, partitioning=None).to_pylist()
    return rows


def _settled(home: Path, endpoint: str, deployment: str, collections: tuple[str, ...], at_least: int,
             timeout: float = 30) -> dict[str, list[dict[str, object]]]:
    """The collected rows, once every collection has `at_least` and no more came for 3 s."""
    deadline, last, stable_since = time.monotonic() + timeout, None, time.monotonic()
    while True:
        found = {c: _rows(home, endpoint, deployment, c) for c in collections}
        counts = tuple(len(v) for v in found.values())
        if counts != last:
            last, stable_since = counts, time.monotonic()
        elif min(counts) >= at_least and time.monotonic() - stable_since > 3:
            return found
        if time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def test_no_code_sampling_joins_the_request_log_and_drift(daemon: Daemon, iris_project: Path,
                                                          tmp_path: Path) -> None:
    blue = iris_project / "blue.yml"
    blue.write_text(blue.read_text() + "runtime: process\n" + COLLECTOR.format(rate=0.5))
    (iris_project / "green.yml").write_text(
        blue.read_text().replace("name: blue", "name: green").replace("enabled: 'True'", "enabled: false")
        .replace("enabled: true", "enabled: false"))
    daemon.cli("apply", "-f", "endpoint.yml", "-f", "blue.yml", "-f", "green.yml", cwd=iris_project)
    daemon.cli("online-endpoint", "update", "-n", "my-ep", "--traffic", "blue=100 green=0")
    key = daemon.key("my-ep")
    ids = random.Random(23)
    rng = np.random.default_rng(5)
    with httpx.Client(base_url=daemon.url, headers={"authorization": f"Bearer {key}"}, timeout=30) as http:
        for _ in range(2000):
            rid = str(uuid.UUID(int=ids.getrandbits(128), version=4))
            row = [float(v) for v in rng.normal([5.8, 3.0, 3.8, 1.2], [0.8, 0.4, 1.7, 0.7]).round(2)]
            r = http.post("/endpoints/my-ep/score", json={"data": [row]}, headers={"x-request-id": rid})
            assert r.status_code == 200, r.text
        for _ in range(200):  # green: collection disabled
            r = http.post("/endpoints/my-ep/score", json={"data": [[5.0, 3.0, 1.5, 0.2]]},
                          headers={"azureml-model-deployment": "green"})
            assert r.status_code == 200
    found = _settled(daemon.home, "my-ep", "blue", ("model_inputs", "model_outputs"), 950)
    inputs, outputs = found["model_inputs"], found["model_outputs"]
    print(f"collected: {len(inputs)} inputs, {len(outputs)} outputs of 2000 requests at sampling_rate 0.5")
    assert 950 <= len(inputs) <= 1050 and 950 <= len(outputs) <= 1050
    assert {"correlation_id", "timestamp", "features_0", "features_3"} <= set(inputs[0])
    assert "label" in outputs[0] or "output_label" in outputs[0]
    in_ids, out_ids = {r["correlation_id"] for r in inputs}, {r["correlation_id"] for r in outputs}
    assert in_ids == out_ids  # one draw a request: its inputs and outputs together
    logged = {r["request_id"] for r in daemon.api("GET", "/endpoints/my-ep/logs", params={"limit": 10_000}).json()}
    assert in_ids <= logged  # joinable to the request log
    assert not (daemon.home / "data-collector" / "endpoint=my-ep" / "deployment=green").exists()

    # Drift: the collected inputs against a baseline drawn like them but for two shifted features.
    base_rng = np.random.default_rng(9)
    columns = {f"features_{i}": base_rng.normal(m, s, 5000) for i, (m, s) in
               enumerate([(5.8, 0.8), (3.0, 0.4), (3.8, 1.7), (1.2, 0.7)])}
    columns["features_1"] = columns["features_1"] + 1.0
    columns["features_3"] = columns["features_3"] - 1.5
    baseline = tmp_path / "baseline.parquet"
    pq.write_table(pa.table(columns), baseline)
    result = daemon.cli("monitor", "drift", "my-ep", "--deployment", "blue", "--baseline", str(baseline),
                        "--window", "1h", "-o", "json")
    report = json.loads(result.stdout)
    (data,) = [c for c in report["collections"] if c["collection"] == "model_inputs"]
    assert {f["feature"] for f in data["features"] if f["drift"]} == {"features_1", "features_3"}
    table = daemon.cli("monitor", "drift", "my-ep", "--baseline", str(baseline), "--window", "1h")
    assert "features_1" in table.stdout and "DRIFT" in table.stdout and "|" in table.stdout
    window = daemon.cli("monitor", "drift", "my-ep", "--baseline-window", "24h", "--window", "1h", check=False)
    assert window.returncode == 0  # nothing before the window yet: an empty report, said on stderr
    bad = daemon.cli("monitor", "drift", "my-ep", "--window", "1h", check=False)
    assert bad.returncode != 0 and "--baseline" in bad.stderr


def test_score_py_collector_unchanged(daemon: Daemon, tmp_path: Path) -> None:
    project = tmp_path / "p"
    (project / "src").mkdir(parents=True)
    (project / "src" / "score.py").write_text(SCRIPT)
    (project / "endpoint.yml").write_text("name: sc-ep\nauth_mode: key\n")
    (project / "blue.yml").write_text("name: blue\nendpoint_name: sc-ep\ncode_configuration:\n  code: ./src\n"
                                      "  scoring_script: score.py\n" + COLLECTOR.format(rate=1.0))
    (project / "plain.yml").write_text("name: plain\nendpoint_name: sc-ep\ncode_configuration:\n  code: ./src\n"
                                     "  scoring_script: score.py\n")
    daemon.cli("apply", "-f", "endpoint.yml", "-f", "blue.yml", "-f", "plain.yml", cwd=project)
    daemon.cli("online-endpoint", "update", "-n", "sc-ep", "--traffic", "blue=100")
    for i in range(20):
        r = daemon.score("sc-ep", {"data": {"a": [i, i + 1], "b": [1.5, 2.5]}}, **{"x-request-id": f"script-{i}"})
        assert r.status_code == 200, r.text
        assert r.json() == {"total": [i + 1.5, i + 3.5]}
        plain = daemon.score("sc-ep", {"data": {"a": [1], "b": [2]}}, **{"azureml-model-deployment": "plain"})
        assert plain.status_code == 200
    found = _settled(daemon.home, "sc-ep", "blue", ("model_inputs", "model_outputs"), 40)
    assert len(found["model_inputs"]) == 40 and len(found["model_outputs"]) == 40
    assert {r["correlation_id"] for r in found["model_outputs"]} == {f"script-{i}" for i in range(20)}
    assert {(r["a"], r["b"]) for r in found["model_inputs"] if r["correlation_id"] == "script-3"} == {
        (3, 1.5), (4, 2.5)}
    assert not (daemon.home / "data-collector" / "endpoint=sc-ep" / "deployment=plain").exists()
