"""Issue 19, points 5-8, against a real daemon: Azure's files as its examples write them (single-file
pickled models, Triton repositories, CamelCase enums, cloud-only fields), and failures that say why."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import httpx
from conftest import Daemon

ENDPOINT = "name: my-ep\nauth_mode: Key\n"  # Azure's schema takes enums in any case
PICKLE_SCRIPT = """\
import os, pickle

def init():
    global model
    # As Azure's vnet sample: a single-file model sits right in AZUREML_MODEL_DIR.
    with open(os.path.join(os.environ["AZUREML_MODEL_DIR"], "sklearn_regression_model.pkl"), "rb") as f:
        model = pickle.load(f)

def run(raw_data):
    return {"coef": model["coef"], "n": len(__import__("json").loads(raw_data)["data"])}
"""


def write(project: Path, files: dict[str, str | bytes]) -> Path:
    for name, content in files.items():
        path = project / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return project


def test_single_file_pickle_model_with_cloud_fields(daemon: Daemon, tmp_path: Path) -> None:
    project = write(tmp_path / "p", {
        "endpoint.yml": ENDPOINT + "identity:\n  type: SystemAssigned\n",
        "model/sklearn_regression_model.pkl": pickle.dumps({"coef": [1.5, 2.0]}),
        "onlinescoring/score.py": PICKLE_SCRIPT,
        "blue.yml": (
            "$schema: https://azuremlschemas.azureedge.net/latest/managedOnlineDeployment.schema.json\n"
            "name: blue\nendpoint_name: my-ep\ntype: Managed\n"
            "model:\n  path: model/sklearn_regression_model.pkl\n  type: CustomModel\n"
            "code_configuration:\n  code: onlinescoring/\n  scoring_script: score.py\n"
            "instance_type: Standard_NC6s_v3\ninstance_count: 1\n"
            "scale_settings:\n  type: Default\n"
            "data_collector:\n  collections:\n    model_inputs:\n      enabled: 'True'\n"
            "egress_public_network_access: Disabled\n"),
    })
    result = daemon.cli("apply", "-f", "endpoint.yml", "-f", "blue.yml", cwd=project)
    err = result.stderr
    assert "endpoint my-ep: not emulated: identity" in err
    assert ("deployment my-ep/blue: recorded for export: instance_type, scale_settings, type; "
            "not emulated: egress_public_network_access") in err  # data_collector is emulated
    assert "Standard_NC6s_v3 is a GPU SKU" in err and ("found" in err)
    assert err.count("recorded for export") == 1  # once per document, not once per field
    assert daemon.score("my-ep", {"data": [[1, 2], [3, 4]]}).json() == {"coef": [1.5, 2.0], "n": 2}

    shown = json.loads(daemon.cli("endpoint", "show", "my-ep", "-o", "json").stdout)
    assert shown["auth_mode"] == "key"
    models = json.loads(daemon.cli("model", "list", "-o", "json").stdout)
    assert [m["framework"] for m in models] == ["custom"]


def test_pickle_registered_as_custom_is_not_read_as_onnx(daemon: Daemon, tmp_path: Path) -> None:
    project = write(tmp_path / "p", {"model.pkl": pickle.dumps([1, 2, 3])})
    for extra in ((), ("--framework", "custom")):
        result = daemon.cli("model", "create", "-n", "reg", "--path", "model.pkl", *extra, "-o", "json",
                            cwd=project)
        assert json.loads(result.stdout)["framework"] == "custom"
    # An .onnx file that isn't one, declared custom, is stored as a file without being loaded.
    write(project, {"broken.onnx": b"not onnx at all"})
    result = daemon.cli("model", "create", "-n", "raw", "--path", "broken.onnx", "--framework", "custom", "-o",
                        "json", cwd=project)
    assert json.loads(result.stdout)["framework"] == "custom"


def test_triton_repository_serves_under_its_folder_name(daemon: Daemon, tmp_path: Path, iris_onnx: Path) -> None:
    project = write(tmp_path / "p", {
        "endpoint.yml": ENDPOINT,
        "models/model_1/1/model.onnx": iris_onnx.read_bytes(),
        "blue.yml": ("name: blue\nendpoint_name: my-ep\nmodel:\n  name: sample-densenet-onnx-model\n  version: 1\n"
                     "  path: ./models\n  type: triton_model\ninstance_count: 1\n"),
    })
    daemon.cli("apply", "-f", "endpoint.yml", "-f", "blue.yml", cwd=project)
    auth = {"authorization": f"Bearer {daemon.key('my-ep')}"}
    base = f"{daemon.url}/endpoints/my-ep/v2/models"
    assert httpx.get(f"{base}/model_1/ready", headers=auth, timeout=30).status_code == 200
    body = {"inputs": [{"name": "features", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]}
    reply = httpx.post(f"{base}/model_1/infer", json=body, headers=auth, timeout=30)
    assert reply.status_code == 200, reply.text
    assert reply.json()["model_name"] == "model_1"
    assert httpx.post(f"{base}/sample-densenet-onnx-model/infer", json=body, headers=auth,
                      timeout=30).status_code == 404


def test_failed_create_prints_why_and_show_keeps_it(daemon: Daemon, tmp_path: Path) -> None:
    project = write(tmp_path / "p", {
        "endpoint.yml": ENDPOINT,
        "code/score.py": "def init():\n    raise ValueError('model file missing here')\n\ndef run(raw):\n    pass\n",
        "blue.yml": "name: blue\nendpoint_name: my-ep\ncode_configuration:\n  code: code\n  scoring_script: score.py\n",
    })
    daemon.cli("online-endpoint", "create", "-f", "endpoint.yml", cwd=project)
    result = daemon.cli("online-deployment", "create", "-f", "blue.yml", cwd=project, check=False)
    assert result.returncode != 0
    failed = [line for line in result.stderr.splitlines() if "is Failed:" in line]
    assert failed and "instance failed" in failed[0], result.stderr
    assert "model file missing here" in result.stderr
    shown = json.loads(daemon.cli("online-deployment", "show", "-e", "my-ep", "-n", "blue", "-o", "json").stdout)
    assert shown["provisioning_state"] == "Failed"
    assert "model file missing here" in shown["error"]
    assert "model file missing here" in shown["instances"][0]["error"]
