"""MLflow no-code deployments (issue 19, point 1, online): `model: {type: mlflow_model, path}`, no code,
no environment, as Azure's `ncd/` examples. The test trains a scikit-learn regressor (diabetes) and a
LightGBM classifier (iris), saves both with mlflow into folders laid out as Azure's examples are, and
serves them from one daemon: the model's own conda.yaml makes each venv (one per model environment),
mlflow.pyfunc loads it, and Azure's MLflow request and response shapes go through the router."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Daemon, collected_rows, wait_until

mlflow = pytest.importorskip("mlflow")
pd = pytest.importorskip("pandas")
lgb = pytest.importorskip("lightgbm")

ENDPOINT = "$schema: https://azuremlschemas.azureedge.net/latest/managedOnlineEndpoint.schema.json\n" \
           "name: ncd-ep\nauth_mode: key\n"
DEPLOYMENT = """\
$schema: https://azuremlschemas.azureedge.net/latest/managedOnlineDeployment.schema.json
name: {name}
endpoint_name: ncd-ep
model:
  name: {model}
  version: {version}
  path: {path}
  type: mlflow_model
instance_type: Standard_DS3_v2
instance_count: 1
"""
DIABETES = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
IRIS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both models trained and saved once, in Azure's example layout (sklearn-diabetes/model, ...)."""
    from mlflow.models import infer_signature
    from sklearn.datasets import load_diabetes, load_iris
    from sklearn.linear_model import LinearRegression

    root = tmp_path_factory.mktemp("ncd")
    x, y = load_diabetes(return_X_y=True, as_frame=True)
    x.columns = DIABETES
    regressor = LinearRegression().fit(x, y)
    mlflow.sklearn.save_model(regressor, root / "sklearn-diabetes" / "model", serialization_format="cloudpickle",
                              signature=infer_signature(x, regressor.predict(x)))
    xi, yi = load_iris(return_X_y=True, as_frame=True)
    xi.columns = IRIS
    booster = lgb.train({"objective": "multiclass", "num_class": 3, "verbose": -1, "num_threads": 1},
                        lgb.Dataset(xi, yi), num_boost_round=10)
    mlflow.lightgbm.save_model(booster, root / "lightgbm-iris" / "model",
                               signature=infer_signature(xi, booster.predict(xi)))
    (root / "create-endpoint.yaml").write_text(ENDPOINT)
    (root / "sklearn-deployment.yaml").write_text(DEPLOYMENT.format(
        name="sklearn-deployment", model="sklearn-ncd-model", version=2, path="sklearn-diabetes/model"))
    (root / "lightgbm-deployment.yaml").write_text(DEPLOYMENT.format(
        name="lightgbm-deployment", model="lightgbm-ncd-model", version=3, path="lightgbm-iris/model"))
    return root


@pytest.fixture(scope="module")
def served(project: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, float]]:
    """One daemon serving both deployments; (daemon, seconds the two builds and loads took)."""
    daemon = Daemon(tmp_path_factory.mktemp("ncd-home") / "home").start()
    try:
        started = time.monotonic()
        daemon.cli("apply", "-f", "create-endpoint.yaml", "-f", "sklearn-deployment.yaml",
                   "-f", "lightgbm-deployment.yaml", "--no-wait", cwd=project)

        def states() -> dict[str, str] | None:
            found = {n: daemon.cli("online-deployment", "show", "-e", "ncd-ep", "-n", n, "--query",
                                   "provisioning_state", "-o", "tsv").stdout.strip()
                     for n in ("sklearn-deployment", "lightgbm-deployment")}
            if "Failed" in found.values():
                raise AssertionError(f"{found}:\n{daemon.log.read_text()[-4000:]}")
            return found if set(found.values()) == {"Succeeded"} else None

        wait_until(states, 900, "both MLflow deployments")
        yield daemon, time.monotonic() - started
    finally:
        if daemon.proc and daemon.proc.poll() is None:
            daemon.stop()


def score(daemon: Daemon, deployment: str, body: Any) -> Any:
    response = daemon.score("ncd-ep", body, **{"azureml-model-deployment": deployment})
    assert response.status_code == 200, response.text
    return response.json()


def local(project: Path, folder: str, frame: Any) -> list[Any]:
    return mlflow.pyfunc.load_model(str(project / folder / "model")).predict(frame).tolist()


def test_sklearn_model_serves_azure_request_shapes(served: tuple[Daemon, float], project: Path) -> None:
    daemon, seconds = served
    rows = [[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0], [10.0, 2.0, 9.0, 8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0]]
    expected = local(project, "sklearn-diabetes", pd.DataFrame(rows, columns=DIABETES))
    # Azure's sample-request-sklearn.json shape: split orient, ints where the signature says double
    split = score(daemon, "sklearn-deployment", {"input_data": {"columns": DIABETES, "index": [0, 1], "data": rows}})
    assert split == pytest.approx(expected) and isinstance(split, list) and len(split) == 2
    ints = [[int(v) for v in r] for r in rows]
    assert score(daemon, "sklearn-deployment", {"input_data": {"columns": DIABETES, "index": [0, 1],
                                                               "data": ints}}) == pytest.approx(expected)
    assert score(daemon, "sklearn-deployment", {"input_data": rows}) == pytest.approx(expected)  # a list
    named = {c: [r[i] for r in rows] for i, c in enumerate(DIABETES)}  # a dict of named tensors
    assert score(daemon, "sklearn-deployment", {"input_data": named}) == pytest.approx(expected)
    # A missing column is the caller's fault: 400 naming it, not a 500.
    bad = daemon.score("ncd-ep", {"input_data": {"columns": DIABETES[:3], "data": [[1.0, 2.0, 3.0]]}},
                       **{"azureml-model-deployment": "sklearn-deployment"})
    assert bad.status_code == 400 and "s6" in bad.text, bad.text
    bad = daemon.score("ncd-ep", {"data": rows}, **{"azureml-model-deployment": "sklearn-deployment"})
    assert bad.status_code == 400 and "input_data" in bad.text, bad.text
    print(f"both MLflow deployments built and ready in {seconds:.0f}s")


def test_lightgbm_model_serves_probabilities(served: tuple[Daemon, float], project: Path) -> None:
    daemon, _ = served
    rows = [[1.0, 2.0, 3.0, 4.0], [10.0, 2.0, 9.0, 8.0], [5.1, 3.5, 1.4, 0.2]]
    expected = local(project, "lightgbm-iris", pd.DataFrame(rows, columns=IRIS))
    got = score(daemon, "lightgbm-deployment", {"input_data": {"columns": IRIS, "index": [0, 1, 2], "data": rows}})
    assert len(got) == 3 and all(len(p) == 3 for p in got)  # a list of per-class probabilities per row
    assert got == [pytest.approx(p) for p in expected]
    assert score(daemon, "lightgbm-deployment", {"input_data": rows, "params": {}}) == [pytest.approx(p)
                                                                                         for p in expected]


def test_swagger_from_the_signature(served: tuple[Daemon, float]) -> None:
    daemon, _ = served
    response = daemon.cli("online-endpoint", "show", "-n", "ncd-ep", "--query", "openapi_uri", "-o", "tsv")
    url = response.stdout.strip()
    import httpx

    doc = httpx.get(url, headers={"authorization": f"Bearer {daemon.key('ncd-ep')}",
                                  "azureml-model-deployment": "lightgbm-deployment"}, timeout=30).json()
    service_input = doc["definitions"]["ServiceInput"]
    assert service_input["example"]["input_data"]["columns"] == IRIS
    assert "petal_width: double" in service_input["properties"]["input_data"]["description"]


def test_environment_and_model_dir_as_on_azure(served: tuple[Daemon, float]) -> None:
    """One venv per model environment, from the model's own conda.yaml (mlflow as mlflow-skinny, no
    onnxruntime, no Flask); the worker finds the model as Azure's does: $AZUREML_MODEL_DIR/model/MLmodel."""
    daemon, _ = served
    envs = [p for p in (daemon.home / "envs").iterdir() if not p.name.startswith(".")]
    assert len(envs) == 2, envs
    for env in envs:
        ready = json.loads((env / ".ready").read_text())
        assert any(r.startswith("mlflow-skinny==") for r in ready["requirements"]), ready
        site = next(env.glob("lib/python3*/site-packages"))
        assert (site / "mlflow").is_dir() and not (site / "onnxruntime").exists() and not (site / "flask").exists()
    assert {"lightgbm", "scikit-learn"} <= {r.split("==")[0] for e in envs
                                             for r in json.loads((e / ".ready").read_text())["requirements"]}
    logs = daemon.cli("online-deployment", "get-logs", "-e", "ncd-ep", "-n", "sklearn-deployment",
                      "--lines", "200").stdout
    loaded = [line for line in logs.splitlines() if "MLflow model" in line and "loaded from" in line]
    assert loaded, logs
    path = Path(loaded[-1].split("loaded from ")[1].strip())
    assert path.name == "model" and (path / "MLmodel").is_file()  # AZUREML_MODEL_DIR/model, as on Azure


def test_mlflow_model_type_without_mlmodel_is_refused(served: tuple[Daemon, float], tmp_path: Path) -> None:
    daemon, _ = served
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model.pkl").write_bytes(b"not mlflow")
    (tmp_path / "d.yaml").write_text(DEPLOYMENT.format(name="broken", model="broken", version=1, path="model"))
    result = daemon.cli("apply", "-f", "d.yaml", cwd=tmp_path, check=False)
    assert result.returncode != 0 and "MLmodel" in result.stderr, result.stderr


def test_mlflow_model_scores_a_batch_job_without_code(served: tuple[Daemon, float], project: Path,
                                                      tmp_path: Path) -> None:
    """Azure's heart-classifier-mlflow flow (issue 19 point 1 and issue 20, batch): the registered MLflow
    model in a batch deployment with no code and no environment; each CSV file's rows predicted in the
    model's own venv; predictions.csv holds one `[file, prediction]` line per row, as Azure documents."""
    import ast

    daemon, _ = served
    schema = "https://azuremlschemas.azureedge.net/latest"
    (tmp_path / "endpoint.yml").write_text(f"$schema: {schema}/batchEndpoint.schema.json\nname: ncd-batch\n"
                                           "auth_mode: aad_token\n")
    (tmp_path / "deployment.yml").write_text(
        f"$schema: {schema}/modelBatchDeployment.schema.json\nendpoint_name: ncd-batch\nname: classifier-mlflow\n"
        "type: model\nmodel: azureml:sklearn-ncd-model@latest\ncompute: azureml:batch-cluster\nresources:\n"
        "  instance_count: 2\nsettings:\n  max_concurrency_per_instance: 2\n  mini_batch_size: 2\n"
        "  output_action: append_row\n  output_file_name: predictions.csv\n  retry_settings:\n    max_retries: 3\n"
        "    timeout: 300\n  error_threshold: -1\n  logging_level: info\n")
    data = tmp_path / "data"
    data.mkdir()
    frames = {}
    for i in range(3):
        frame = pd.DataFrame([[0.01 * (i + r) + 0.001 * c for c in range(10)] for r in range(4)], columns=DIABETES)
        frame.to_csv(data / f"heart-unlabeled-{i}.csv", index=False)
        frames[f"heart-unlabeled-{i}.csv"] = frame
    daemon.cli("apply", "-f", "endpoint.yml", "-f", "deployment.yml", cwd=tmp_path)
    job = daemon.api("POST", "/batch-endpoints/ncd-batch/jobs", json={"input": str(data)}).json()
    ended = wait_until(lambda: (j := daemon.api("GET", f"/jobs/{job['name']}").json())["status"] in
                       ("Completed", "Failed") and j, 300, "the MLflow batch job")
    assert ended["status"] == "Completed", ended
    text = (Path(ended["outputs"]["score"]["path"]) / "predictions.csv").read_text()
    rows = [ast.literal_eval(line) for line in text.splitlines()]  # Azure's own way to read it back
    assert len(rows) == 12
    for name, frame in frames.items():
        assert [p for f, p in rows if f == name] == pytest.approx(local(project, "sklearn-diabetes", frame))


def test_data_collector_records_an_mlflow_models_inputs_and_predictions(served: tuple[Daemon, float],
                                                                        project: Path) -> None:
    """Azure collects a no-code MLflow deployment's model_inputs and model_outputs as it does an ONNX one's:
    the input frame's columns, and the predictions, joined by the request id."""
    daemon, _ = served
    sets = [f"data_collector.collections.{c}.enabled=true" for c in ("model_inputs", "model_outputs")]
    daemon.cli("deployment", "update", "ncd-ep", "sklearn-deployment", "--set", *sets)
    rows = [[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0], [10.0, 2.0, 9.0, 8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0]]
    response = daemon.score("ncd-ep", {"input_data": {"columns": DIABETES, "index": [0, 1], "data": rows}},
                            **{"azureml-model-deployment": "sklearn-deployment", "x-request-id": "mlflow-req-1"})
    assert response.status_code == 200, response.text
    folder = daemon.home / "data-collector" / "endpoint=ncd-ep" / "deployment=sklearn-deployment"

    def collected() -> dict[str, list[dict[str, Any]]] | None:
        found = {c: collected_rows(folder, c) for c in ("model_inputs", "model_outputs")}
        return found if all(found.values()) else None

    found = wait_until(collected, 30, "the MLflow deployment's collected rows")
    inputs, outputs = found["model_inputs"], found["model_outputs"]
    assert [r["correlation_id"] for r in inputs] == ["mlflow-req-1"] * 2
    assert [[r[c] for c in DIABETES] for r in inputs] == rows
    expected = local(project, "sklearn-diabetes", pd.DataFrame(rows, columns=DIABETES))
    assert [r["correlation_id"] for r in outputs] == ["mlflow-req-1"] * 2
    assert [r["prediction"] for r in outputs] == pytest.approx(expected)
