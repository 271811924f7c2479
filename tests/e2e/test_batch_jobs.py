"""Batch jobs on a real daemon, real worker processes and real files: Azure's contract (mini-batches,
concurrency, append_row, retries, timeouts, error_threshold, the REST invoke), resume after `kill -9`,
and cancel."""

from __future__ import annotations

import importlib.util
import os
import pickle
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from conftest import Daemon, wait_until

SCHEMA = "https://azuremlschemas.azureedge.net/latest"

SKLEARN_SCORE = """\
import glob, os, pickle
import pandas as pd

def init():
    global model
    path = glob.glob(os.path.join(os.environ["AZUREML_MODEL_DIR"], "*", "model.pkl"))[0]
    with open(path, "rb") as f:
        model = pickle.load(f)
    print("init in", os.getpid())

def run(mini_batch):
    frames = []
    for path in mini_batch:
        data = pd.read_csv(path)
        frames.append(pd.DataFrame({"file": os.path.basename(path), "prediction": model.predict(data.values)}))
    return pd.concat(frames)
"""

# Fails on files named bad*, outlives any timeout on slow*, records each init's pid (for the kill tests),
# takes DELAY seconds a file.
FLAKY_SCORE = """\
import os, time

def init():
    folder = os.environ.get("PIDS")
    if folder:
        open(os.path.join(folder, str(os.getpid())), "w").close()

def run(mini_batch):
    out = []
    for path in mini_batch:
        name = os.path.basename(path)
        if name.startswith("bad"):
            raise ValueError("cannot score " + name)
        if name.startswith("slow"):
            time.sleep(60)
        time.sleep(float(os.environ.get("DELAY", "0")))
        out.append(name)
    return out
"""


def write_project(root: Path, name: str, script: str, settings: str, env: dict[str, str] | None = None,
                  model: Path | None = None) -> Path:
    (root / "code").mkdir(parents=True, exist_ok=True)
    (root / "code" / "score.py").write_text(script)
    (root / "endpoint.yml").write_text(f"$schema: {SCHEMA}/batchEndpoint.schema.json\nname: {name}\n"
                                       "auth_mode: aad_token\n")
    variables = "".join(f"    {k}: '{v}'\n" for k, v in (env or {}).items())
    (root / "deployment.yml").write_text(
        f"$schema: {SCHEMA}/modelBatchDeployment.schema.json\nname: main\nendpoint_name: {name}\ntype: model\n"
        + (f"model:\n  name: {name}-model\n  path: {model}\n" if model else "")
        + "code_configuration:\n  code: code\n  scoring_script: score.py\ncompute: azureml:batch-cluster\n"
        "resources:\n  instance_count: 1\nsettings:\n" + settings
        + (f"  environment_variables:\n{variables}" if variables else ""))
    return root


def csv_folder(folder: Path, names: list[str], rows: int = 3) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        lines = ["a,b,c,d"] + [f"{5 + (i + r) % 3}.1,3.5,{1 + (i * r) % 5}.4,0.{r % 3}" for r in range(rows)]
        (folder / name).write_text("\n".join(lines) + "\n")
    return folder


def apply(daemon: Daemon, project: Path) -> None:
    docs = [{"body": body, "source": str(project / f)} for f in ("endpoint.yml", "deployment.yml")
            for body in [__import__("yaml").safe_load((project / f).read_text())]]
    answer = daemon.api("POST", "/apply", json={"documents": docs})
    assert answer.status_code == 200, answer.text


def invoke(daemon: Daemon, endpoint: str, folder: Path, **options: Any) -> dict[str, Any]:
    answer = daemon.api("POST", f"/batch-endpoints/{endpoint}/jobs", json={"input": str(folder), **options})
    assert answer.status_code == 201, answer.text
    return answer.json()


def finished(daemon: Daemon, name: str, timeout: float = 60) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        job = daemon.api("GET", f"/jobs/{name}").json()
        return job if job["status"] in ("Completed", "Failed", "Canceled") else None

    return wait_until(done, timeout, f"job {name} to end")


@pytest.fixture(scope="module")
def batch_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    d = Daemon(tmp_path_factory.mktemp("batch") / "home").start()
    yield d
    d.stop()


@pytest.fixture(scope="module")
def sklearn_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    x, y = load_iris(return_X_y=True)
    folder = tmp_path_factory.mktemp("sk") / "model"
    folder.mkdir()
    (folder / "model.pkl").write_bytes(pickle.dumps(LogisticRegression(max_iter=500).fit(x, y)))
    return folder


def test_azure_batch_deployment_scores_as_the_script_does_by_hand(batch_daemon: Daemon, tmp_path: Path,
                                                                  sklearn_model: Path) -> None:
    project = write_project(tmp_path / "p", "heart-batch", SKLEARN_SCORE,
                            "  max_concurrency_per_instance: 2\n  mini_batch_size: 2\n  output_action: append_row\n"
                            "  output_file_name: predictions.csv\n  retry_settings:\n    max_retries: 3\n"
                            "    timeout: 300\n  error_threshold: -1\n  logging_level: info\n", model=sklearn_model)
    apply(batch_daemon, project)
    files = [f"part-{i}.csv" for i in range(5)]
    data = csv_folder(tmp_path / "data", files)
    job = finished(batch_daemon, invoke(batch_daemon, "heart-batch", data)["name"])
    assert job["status"] == "Completed", job
    assert job["progress"]["mini_batches"] == 3 and job["progress"]["items_succeeded"] == 15  # 5 files × 3 rows
    written = (Path(job["outputs"]["score"]["path"]) / "predictions.csv").read_text()

    # The same script, called by hand in this process the way Azure calls it: init(), then run() per
    # mini-batch of 2 files; append_row writes a DataFrame's rows space-separated, without a header.
    os.environ["AZUREML_MODEL_DIR"] = str(sklearn_model.parent)
    try:
        spec = importlib.util.spec_from_file_location("by_hand", project / "code" / "score.py")
        assert spec and spec.loader
        script = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(script)
        script.init()
        paths = [str(data / f) for f in files]
        expected = "".join(script.run(paths[i:i + 2]).to_csv(sep=" ", header=False, index=False)
                           for i in range(0, 5, 2))
    finally:
        del os.environ["AZUREML_MODEL_DIR"]
    assert written == expected
    assert written.count("\n") == 15

    logs = Path(batch_daemon.home / "jobs" / job["name"] / "logs")
    assert sorted(p.name for p in (logs / "user" / "stdout").iterdir()) == ["worker-0.txt", "worker-1.txt"]
    assert "init in" in (logs / "user" / "stdout" / "worker-0.txt").read_text()
    assert {"job_progress_overview.txt", "job_result.txt", "sys/job_report/processed_mini-batches.csv"} <= set(
        job["log_files"])
    assert (logs / "job_result.txt").read_text().startswith("Completed")


def test_rest_invoke_with_the_endpoint_key_and_azures_body(batch_daemon: Daemon, tmp_path: Path) -> None:
    apply(batch_daemon, write_project(tmp_path / "p", "rest-batch", FLAKY_SCORE, "  mini_batch_size: 3\n"))
    data = csv_folder(tmp_path / "data", ["a.csv", "b.csv", "c.csv", "d.csv"])
    url = f"{batch_daemon.url}/endpoints/rest-batch/jobs"
    body = {"properties": {"InputData": {"heart_dataset": {"JobInputType": "UriFolder", "Uri": str(data)}}}}
    import httpx

    assert httpx.post(url, json=body, timeout=30).status_code == 401
    assert httpx.post(url, json=body, headers={"authorization": "Bearer wrong"}, timeout=30).status_code == 401
    key = batch_daemon.api("POST", "/batch-endpoints/rest-batch/credentials").json()["primaryKey"]
    bad = httpx.post(url, json={"properties": {}}, headers={"authorization": f"Bearer {key}"}, timeout=30)
    assert bad.status_code == 400 and bad.json()["field"] == "properties.InputData"
    answer = httpx.post(url, json=body, headers={"authorization": f"Bearer {key}"}, timeout=30)
    assert answer.status_code == 200, answer.text
    job = finished(batch_daemon, answer.json()["name"])
    assert job["status"] == "Completed"
    assert (Path(job["outputs"]["score"]["path"]) / "predictions.csv").read_text() == "a.csv\nb.csv\nc.csv\nd.csv\n"


@pytest.mark.parametrize(("threshold", "status"), [(-1, "Completed"), (0, "Failed")])
def test_retries_timeouts_and_the_error_threshold(batch_daemon: Daemon, tmp_path: Path, threshold: int,
                                                  status: str) -> None:
    name = f"flaky{threshold + 1}"
    apply(batch_daemon, write_project(
        tmp_path / "p", name, FLAKY_SCORE, f"  mini_batch_size: 1\n  max_concurrency_per_instance: 2\n"
        f"  retry_settings:\n    max_retries: 2\n    timeout: 2\n  error_threshold: {threshold}\n"))
    data = csv_folder(tmp_path / "data", ["a.csv", "bad.csv", "c.csv", "slow.csv", "e.csv"])
    job = finished(batch_daemon, invoke(batch_daemon, name, data)["name"], timeout=90)
    assert job["status"] == status, job
    errors = (batch_daemon.home / "jobs" / job["name"] / "logs" / "job_error.txt").read_text()
    if threshold == -1:
        progress = job["progress"]
        assert (progress["items_succeeded"], progress["items_failed"]) == (3, 2)
        assert progress["mini_batches_failed"] == 2 and progress["retries"] == 4  # 2 each: 3 attempts in all
        assert errors.count("cannot score bad.csv") == 3 and errors.count("timed out") == 3
        assert "attempt 3 of 3" in errors and "no retry left" in errors
        output = Path(job["outputs"]["score"]["path"]) / "predictions.csv"
        assert sorted(output.read_text().split()) == ["a.csv", "c.csv", "e.csv"]
        ledger = (batch_daemon.home / "jobs" / job["name"] / "logs" / "sys" / "job_report" /
                  "processed_mini-batches.csv").read_text()
        assert '1,failed,3,0,1,"bad.csv"' in ledger
    else:
        assert "exceed error_threshold 0" in job["error"]
        assert not (Path(job["outputs"]["score"]["path"]) / "predictions.csv").exists()


def _alive(pids: list[int]) -> list[int]:
    return [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]


def test_resume_after_kill_9_scores_every_item_exactly_once(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    pids.mkdir()
    daemon = Daemon(tmp_path / "home").start()
    try:
        apply(daemon, write_project(tmp_path / "p", "resume", FLAKY_SCORE,
                                    "  mini_batch_size: 2\n  max_concurrency_per_instance: 2\n",
                                    env={"PIDS": str(pids), "DELAY": "0.15"}))
        names = [f"f{i:03d}.csv" for i in range(40)]
        job = invoke(daemon, "resume", csv_folder(tmp_path / "data", names, rows=1))["name"]
        wait_until(lambda: daemon.api("GET", f"/jobs/{job}").json()["progress"]["mini_batches_done"] >= 4, 30,
                   "a few mini-batches done")
        daemon.stop(signal.SIGKILL)
        before = [int(p.name) for p in pids.iterdir()]
        wait_until(lambda: not _alive(before), 5, f"workers {before} to end with their daemon")
        done_at_kill = sum(1 for p in (tmp_path / "home" / "jobs" / job / "parts").glob("*.txt"))
        assert 0 < done_at_kill < 20
        daemon.start()  # the same home: the job runs on from its ledger
        ended = finished(daemon, job)
        assert ended["status"] == "Completed"
        lines = (Path(ended["outputs"]["score"]["path"]) / "predictions.csv").read_text().split()
        assert lines == names  # every input once, in order
        assert ended["progress"]["items_succeeded"] == 40
    finally:
        daemon.stop()


def test_cancel_stops_the_workers_within_2_seconds(batch_daemon: Daemon, tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    pids.mkdir()
    apply(batch_daemon, write_project(tmp_path / "p", "cancel-me", FLAKY_SCORE,
                                      "  mini_batch_size: 1\n  max_concurrency_per_instance: 2\n",
                                      env={"PIDS": str(pids), "DELAY": "30"}))
    job = invoke(batch_daemon, "cancel-me", csv_folder(tmp_path / "data", [f"{i}.csv" for i in range(6)]))["name"]
    wait_until(lambda: len(list(pids.iterdir())) == 2 and
               batch_daemon.api("GET", f"/jobs/{job}").json()["progress"]["mini_batches_running"] == 2, 30,
               "both workers scoring")
    workers = [int(p.name) for p in pids.iterdir()]
    started = time.monotonic()
    answer = batch_daemon.api("POST", f"/jobs/{job}/cancel", json={})
    wait_until(lambda: not _alive(workers), 2, "the workers to stop")
    assert time.monotonic() - started < 2.5
    assert answer.json()["status"] == "Canceled"
    assert batch_daemon.api("GET", f"/jobs/{job}").json()["status"] == "Canceled"


def test_no_code_onnx_batch_on_csv_and_parquet(batch_daemon: Daemon, tmp_path: Path, iris_onnx: Path) -> None:
    """An ONNX model and no scoring script: tabular files scored in large batches, predictions beside the
    key columns (a string column is one; `row` is named in settings.key_columns), Parquet or Azure's CSV."""
    import numpy as np
    import onnxruntime as ort
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(7)
    features = rng.uniform(0.1, 7.9, size=(1000, 4)).astype(np.float32)
    label, probabilities = ort.InferenceSession(str(iris_onnx)).run(None, {"features": features})
    table = pa.table({"id": [f"r{i}" for i in range(1000)], "row": np.arange(1000),
                      **{f"f{j}": features[:, j] for j in range(4)}})
    (tmp_path / "parquet").mkdir()
    (tmp_path / "csv").mkdir()
    for k in range(4):  # 4 files of 250 rows
        part = table.slice(250 * k, 250)
        pq.write_table(part, tmp_path / "parquet" / f"part-{k}.parquet")
        part.to_pandas().to_csv(tmp_path / "csv" / f"part-{k}.csv", index=False)
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model.onnx").write_bytes(iris_onnx.read_bytes())
    (tmp_path / "endpoint.yml").write_text(f"$schema: {SCHEMA}/batchEndpoint.schema.json\nname: onnx-batch\n")
    for name, output in (("to-parquet", "predictions.parquet"), ("to-csv", "predictions.csv")):
        (tmp_path / f"{name}.yml").write_text(
            f"$schema: {SCHEMA}/modelBatchDeployment.schema.json\nname: {name}\nendpoint_name: onnx-batch\n"
            "type: model\nmodel:\n  name: iris-batch\n  path: model\nsettings:\n  mini_batch_size: 1\n"
            f"  max_concurrency_per_instance: 2\n  output_file_name: {output}\n  key_columns: [row]\n")
    docs = [{"body": __import__("yaml").safe_load((tmp_path / f).read_text()), "source": str(tmp_path / f)}
            for f in ("endpoint.yml", "to-parquet.yml", "to-csv.yml")]
    assert batch_daemon.api("POST", "/apply", json={"documents": docs}).status_code == 200

    job = finished(batch_daemon, invoke(batch_daemon, "onnx-batch", tmp_path / "parquet",
                                        deployment_name="to-parquet")["name"])
    assert job["status"] == "Completed", job
    out = pq.read_table(Path(job["outputs"]["score"]["path"]) / "predictions.parquet")
    assert out.column_names == ["file", "id", "row", "label", "probabilities_0", "probabilities_1", "probabilities_2"]
    assert out.column("id").to_pylist() == [f"r{i}" for i in range(1000)]
    assert out.column("label").to_pylist() == label.tolist()
    assert np.allclose(out.column("probabilities_2").to_numpy(), probabilities[:, 2], atol=1e-6)
    assert out.column("file").to_pylist()[::250] == [f"part-{k}.parquet" for k in range(4)]

    job = finished(batch_daemon, invoke(batch_daemon, "onnx-batch", tmp_path / "csv",
                                        deployment_name="to-csv")["name"])
    assert job["status"] == "Completed", job
    lines = (Path(job["outputs"]["score"]["path"]) / "predictions.csv").read_text().splitlines()
    assert len(lines) == 1000
    first = lines[0].split(" ")  # Azure's append_row: space-separated, no header, as pandas writes it
    assert first[:4] == ["part-0.csv", "r0", "0", str(label[0])] and len(first) == 7
    assert float(first[6]) == pytest.approx(float(probabilities[0, 2]), abs=1e-6)


ENV_SCORE = """\
import os, sys
import numpy

def init():
    try:
        import pandas  # the daemon has it; this environment does not
    except ModuleNotFoundError:
        print("no pandas here")

def run(mini_batch):
    return [f"{os.path.basename(p)} {numpy.__name__} {sys.prefix}" for p in mini_batch]
"""


def test_a_batch_deployment_runs_in_its_own_environment(batch_daemon: Daemon, tmp_path: Path) -> None:
    """A conda file makes the job's venv, as for an online deployment: its packages and nothing of the
    daemon's (the script finds numpy, not pandas); the build's output is a log of the job."""
    project = write_project(tmp_path / "p", "env-batch", ENV_SCORE, "  mini_batch_size: 2\n")
    (project / "conda.yml").write_text("name: np\ndependencies:\n  - python=3.11\n  - pip\n  - numpy\n")
    text = (project / "deployment.yml").read_text()
    (project / "deployment.yml").write_text(text + "environment:\n  name: batch-np\n"
                                            "  image: mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest\n"
                                            "  conda_file: conda.yml\n")
    apply(batch_daemon, project)
    job = finished(batch_daemon, invoke(batch_daemon, "env-batch", csv_folder(tmp_path / "data", ["a.csv", "b.csv"]))
                   ["name"], timeout=300)
    assert job["status"] == "Completed", job
    lines = (Path(job["outputs"]["score"]["path"]) / "predictions.csv").read_text().splitlines()
    assert [line.split()[:2] for line in lines] == [["a.csv", "numpy"], ["b.csv", "numpy"]]
    assert all(str(batch_daemon.home / "envs") in line for line in lines)  # sys.prefix: the job's venv
    logs = batch_daemon.home / "jobs" / job["name"] / "logs"
    assert "no pandas here" in (logs / "user" / "stdout" / "worker-0.txt").read_text()
    assert "environment.txt" in job["log_files"]


CUSTOM_OUTPUTS = """\
import os
from pathlib import Path

def init():
    global output_path
    output_path = os.environ["AZUREML_BI_OUTPUT_PATH"]

def run(mini_batch):
    for path in mini_batch:
        rows = Path(path).read_text().splitlines()[1:]
        Path(output_path, Path(path).stem + ".out").write_text(f"{len(rows)} rows\\n")
    return mini_batch
"""


def test_summary_only_with_custom_outputs(batch_daemon: Daemon, tmp_path: Path) -> None:
    """Azure's custom-outputs example: the script writes its own files to AZUREML_BI_OUTPUT_PATH and
    `summary_only` writes no predictions file; `--output-path` puts the outputs where the caller says."""
    apply(batch_daemon, write_project(tmp_path / "p", "custom-out", CUSTOM_OUTPUTS,
                                      "  mini_batch_size: 2\n  output_action: summary_only\n"))
    out = tmp_path / "my-outputs"
    job = finished(batch_daemon, invoke(batch_daemon, "custom-out", csv_folder(tmp_path / "data", ["a.csv", "b.csv",
                                                                                                  "c.csv"]),
                                        output_path=str(out))["name"])
    assert job["status"] == "Completed" and job["outputs"]["score"]["path"] == str(out)
    assert sorted(p.name for p in out.iterdir()) == ["a.out", "b.out", "c.out"]  # and no predictions.csv
    assert (out / "b.out").read_text() == "3 rows\n"
    assert job["progress"]["items_succeeded"] == 3
