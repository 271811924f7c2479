"""The batch worker (`python -m appliance.scoring.batch`) as the daemon runs it: a real child process, its
requests on stdin, its replies on a pipe of their own, its parts in a real folder; one test each for a
score.py, the no-code ONNX driver and the no-code MLflow driver."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

SCRIPT = """\
import os
import pandas as pd

def init():
    print("init: nothing to load")

def run(mini_batch):
    rows = []
    for path in mini_batch:
        name = os.path.basename(path)
        if name == "bad.csv":
            raise ValueError(f"cannot score {name}")
        if name == "none.csv":
            return None
        with open(path) as f:
            rows.append([name, sum(1 for _ in f)])
    print(f"scored {len(rows)} files")
    return pd.DataFrame(rows, columns=["file", "lines"])
"""


class Worker:
    """One worker process; replies are read with a deadline, so that a hung worker fails the test."""

    def __init__(self, tmp: Path, env: dict[str, str]) -> None:
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("AZUREML_", "AML_", "MLFLOW_"))}
        read, write = os.pipe()
        self.out, self.err = tmp / "worker.out", tmp / "worker.err"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "appliance.scoring.batch", "--reply-fd", str(write), "--parent-pid",
             str(os.getpid())], stdin=subprocess.PIPE, stdout=self.out.open("wb"), stderr=self.err.open("wb"),
            pass_fds=(write,), env={**clean, **env}, cwd=tmp)
        os.close(write)
        self.fd, self.buffer = read, b""

    def reply(self, timeout: float = 20.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            if not select.select([self.fd], [], [], max(deadline - time.monotonic(), 0))[0]:
                raise AssertionError(f"no reply in {timeout}s; stderr:\n{self.err.read_text()}")
            chunk = os.read(self.fd, 65536)
            if not chunk:
                raise AssertionError(f"the worker closed its replies; stderr:\n{self.err.read_text()}")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return json.loads(line)

    def ask(self, idx: int, files: list[Path], part: Path) -> dict[str, Any]:
        assert self.proc.stdin
        self.proc.stdin.write(json.dumps({"idx": idx, "files": [str(f) for f in files], "part": str(part)})
                              .encode() + b"\n")
        self.proc.stdin.flush()
        return self.reply()

    def close(self) -> int:
        assert self.proc.stdin
        self.proc.stdin.close()
        code = self.proc.wait(timeout=20)
        os.close(self.fd)
        return code


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for w in started:
        if w.proc.poll() is None:
            w.proc.kill()
            w.proc.wait()


def start(workers: list[Worker], tmp: Path, **env: str) -> Worker:
    worker = Worker(tmp, env)
    workers.append(worker)
    return worker


@pytest.fixture
def parts(tmp_path: Path) -> Path:
    folder = tmp_path / "job" / "parts"
    folder.mkdir(parents=True)
    return folder


def test_a_score_py_runs_mini_batches_and_a_failing_one_does_not_end_the_worker(
        tmp_path: Path, parts: Path, workers: list[Worker]) -> None:
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "score.py").write_text(SCRIPT)
    (tmp_path / "in").mkdir()
    files = {name: tmp_path / "in" / name for name in ("a.csv", "b.csv", "bad.csv", "none.csv")}
    for lines, path in enumerate(files.values(), 1):
        path.write_text("x\n" * lines)
    worker = start(workers, tmp_path, AML_APP_ROOT=str(tmp_path / "code"), AZUREML_ENTRY_SCRIPT="score.py",
                   AZUREML_BI_OUTPUT_PATH=str(tmp_path))
    ready = worker.reply()
    assert (ready["ready"], ready["driver"]) == (True, "score.py") and ready["init_ms"] >= 0

    done = worker.ask(0, [files["a.csv"], files["b.csv"]], parts / "000000")
    assert done == {"idx": 0, "ok": True, "items": 2, "rows": 2, "part": str(parts / "000000.txt"),
                    "ms": done["ms"]}
    assert (parts / "000000.txt").read_text() == "a.csv 1\nb.csv 2\n"

    failed = worker.ask(1, [files["a.csv"], files["bad.csv"]], parts / "000001")
    assert (failed["idx"], failed["ok"]) == (1, False)
    assert "Traceback" in failed["error"] and "ValueError: cannot score bad.csv" in failed["error"]
    assert "in run" in failed["error"]  # the script's frame, to find the line that raised

    nothing = worker.ask(2, [files["none.csv"]], parts / "000002")
    assert not nothing["ok"] and "run() returned None" in nothing["error"]
    assert "a list" in nothing["error"] and "a pandas DataFrame" in nothing["error"]

    assert worker.ask(3, [files["b.csv"]], parts / "000003")["ok"]
    assert worker.close() == 0
    assert sorted(p.name for p in parts.iterdir()) == ["000000.txt", "000003.txt"]  # no temporary left over
    assert worker.out.read_text() == "init: nothing to load\nscored 2 files\nscored 1 files\n"


def test_an_init_that_raises_is_a_worker_that_is_not_ready(tmp_path: Path, workers: list[Worker]) -> None:
    (tmp_path / "score.py").write_text("def init():\n    raise RuntimeError('no model here')\n\n"
                                       "def run(mini_batch):\n    return mini_batch\n")
    worker = start(workers, tmp_path, AML_APP_ROOT=str(tmp_path), AZUREML_ENTRY_SCRIPT="score.py")
    reply = worker.reply()
    assert reply["ready"] is False
    assert "Traceback" in reply["error"] and "RuntimeError: no model here" in reply["error"]
    assert worker.proc.wait(timeout=20) == 1


def test_summary_only_writes_no_part_but_counts_the_items(tmp_path: Path, parts: Path,
                                                          workers: list[Worker]) -> None:
    (tmp_path / "score.py").write_text("def init():\n    pass\n\n"
                                       "def run(mini_batch):\n    return [f + ' ok' for f in mini_batch]\n")
    worker = start(workers, tmp_path, AML_APP_ROOT=str(tmp_path), AZUREML_ENTRY_SCRIPT="score.py",
                   AZUREML_BATCH_OUTPUT_ACTION="summary_only")
    assert worker.reply()["ready"]
    done = worker.ask(0, [tmp_path / "x.csv", tmp_path / "y.csv"], parts / "000000")
    assert (done["ok"], done["items"], done["rows"], done["part"]) == (True, 2, 0, None)
    assert worker.close() == 0
    assert list(parts.iterdir()) == []


def iris_rows(n: int) -> tuple[np.ndarray, pa.Table]:
    """Iris-like features and a table of them: `row` (an int key), `id` (a string), four floats."""
    x = np.random.default_rng(n).uniform(0.1, 7.0, size=(n, 4)).astype(np.float32)
    table = pa.table({"row": np.arange(n), "id": [f"r{i:03d}" for i in range(n)],
                      **{f"f{j}": x[:, j] for j in range(4)}})
    return x, table


def expected(model: Path, x: np.ndarray) -> tuple[list[int], np.ndarray]:
    import onnxruntime

    label, probabilities = onnxruntime.InferenceSession(str(model)).run(None, {"features": x})
    return label.tolist(), probabilities


def test_the_onnx_driver_scores_csv_and_parquet_with_keys_beside_the_predictions(
        tmp_path: Path, parts: Path, workers: list[Worker], iris_onnx: Path) -> None:
    import pyarrow.csv as pcsv

    x, table = iris_rows(50)
    pcsv.write_csv(table, tmp_path / "a.csv")
    pq.write_table(table.slice(10, 5), tmp_path / "b.parquet")
    pcsv.write_csv(table.drop_columns(["f3"]), tmp_path / "short.csv")
    (tmp_path / "notes.txt").write_text("1 2 3 4\n")
    labels, probabilities = expected(iris_onnx, x)
    model_dir = str(iris_onnx.parent)
    text = start(workers, tmp_path, AZUREML_MODEL_DIR=model_dir, AZUREML_BATCH_KEY_COLUMNS="row",
                 AZUREML_BATCH_OUTPUT_FILE_NAME="predictions.csv", AZUREML_BATCH_ROWS="7")
    assert text.reply()["driver"] == "onnx"
    done = text.ask(0, [tmp_path / "a.csv", tmp_path / "b.parquet"], parts / "000000")
    assert (done["ok"], done["items"], done["rows"]) == (True, 2, 55)
    lines = (parts / "000000.txt").read_text().splitlines()
    assert len(lines) == 55
    first = lines[0].split(" ")
    assert first[:4] == ["a.csv", "0", "r000", str(labels[0])]
    assert np.allclose([float(v) for v in first[4:]], probabilities[0], atol=1e-6)
    assert lines[50].split(" ")[:4] == ["b.parquet", "10", "r010", str(labels[10])]
    assert [line.split(" ")[3] for line in lines[:50]] == [str(n) for n in labels]  # across chunks of 7

    wrong = text.ask(1, [tmp_path / "short.csv"], parts / "000001")
    assert not wrong["ok"]
    assert "input 'features' takes 4 features, but the file has 3" in wrong["error"]
    assert "f0, f1, f2" in wrong["error"] and "key columns: row, id" in wrong["error"]
    unknown = text.ask(2, [tmp_path / "notes.txt"], parts / "000002")
    assert not unknown["ok"] and "notes.txt" in unknown["error"] and ".csv, .parquet, .pq, .jsonl, .json" in \
        unknown["error"]
    assert text.close() == 0

    parquet = start(workers, tmp_path, AZUREML_MODEL_DIR=model_dir, AZUREML_BATCH_KEY_COLUMNS="row",
                    AZUREML_BATCH_OUTPUT_FILE_NAME="out.parquet")
    assert parquet.reply()["ready"]
    done = parquet.ask(0, [tmp_path / "b.parquet"], parts / "000003")
    assert done["part"] == str(parts / "000003.arrow") and done["rows"] == 5  # Arrow IPC: the daemon merges
    result = pa.ipc.open_file(parts / "000003.arrow").read_all()
    assert result.column_names == ["file", "row", "id", "label", "probabilities_0", "probabilities_1",
                                   "probabilities_2"]
    assert result.column("file").to_pylist() == ["b.parquet"] * 5
    assert result.column("row").to_pylist() == list(range(10, 15))  # as the file has it: a number
    assert result.column("id").to_pylist() == [f"r{i:03d}" for i in range(10, 15)]
    assert result.column("label").to_pylist() == labels[10:15]
    assert np.allclose(result.column("probabilities_2").to_numpy(), probabilities[10:15, 2], atol=1e-6)
    assert parquet.close() == 0


def test_the_mlflow_driver_writes_a_file_name_and_a_prediction_a_line(
        tmp_path: Path, parts: Path, workers: list[Worker]) -> None:
    import pandas as pd
    from mlflow.models import infer_signature
    from mlflow.sklearn import save_model
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    x, y = load_iris(return_X_y=True, as_frame=True)
    x.columns = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    model = LogisticRegression(max_iter=500).fit(x, y)
    save_model(model, tmp_path / "registered" / "model", serialization_format="cloudpickle",
               pip_requirements=["scikit-learn"],  # as given: inferring them runs the model in a subprocess
               signature=infer_signature(x, model.predict(x)))
    picked = x.iloc[[0, 60, 120]]
    picked.to_csv(tmp_path / "a.csv", index=False)
    picked.iloc[:1].to_parquet(tmp_path / "b.parquet")
    pd.DataFrame({"v": [1]}).to_json(tmp_path / "c.json")
    worker = start(workers, tmp_path, AZUREML_MODEL_DIR=str(tmp_path / "registered"), MLFLOW_MODEL_FOLDER="model")
    assert worker.reply()["driver"] == "mlflow"
    done = worker.ask(0, [tmp_path / "a.csv", tmp_path / "b.parquet"], parts / "000000")
    assert (done["ok"], done["items"], done["rows"]) == (True, 2, 4)
    labels = model.predict(picked).tolist()
    assert (parts / "000000.txt").read_text().splitlines() == [
        f"['a.csv', {labels[0]}]", f"['a.csv', {labels[1]}]", f"['a.csv', {labels[2]}]", f"['b.parquet', {labels[0]}]"]
    refused = worker.ask(1, [tmp_path / "c.json"], parts / "000001")
    assert not refused["ok"] and "c.json: MLflow batch deployments read .csv and .parquet files" in refused["error"]
    assert worker.close() == 0
