"""The in-process fast path: a no-code ONNX deployment is served by the daemon itself unless told
otherwise, only no-code models may run there, and a heavy model there doesn't stall other endpoints."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import httpx
import numpy as np
import onnx
from conftest import Daemon, served_provider, wait_until
from onnx import TensorProto, helper, numpy_helper

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.2, 3.4, 5.4, 2.3]]


def test_no_code_onnx_runs_inside_the_daemon(daemon: Daemon, iris_project: Path) -> None:
    daemon.cli("apply", "-f", "endpoint.yml", "-f", "blue.yml", cwd=iris_project)
    shown = json.loads(daemon.cli("deployment", "show", "my-ep", "blue", "-o", "json").stdout)
    assert shown["runtime"] == "inprocess" and shown["provisioning_state"] == "Succeeded"
    assert shown["provider"] == served_provider()
    assert daemon.proc and [i["pid"] for i in shown["instances"]] == [daemon.proc.pid]
    assert "inside the daemon" in Path(shown["instances"][0]["log"]).read_text()
    # Timed by its warm-up, a model this cheap is called on the event loop from its first request.
    assert shown["instances"][0]["calls"] == "inline" and 0 < shown["instances"][0]["model_ms"] < 0.5
    response = daemon.score("my-ep", {"data": ROWS})
    assert response.status_code == 200 and response.json()["label"] == [0, 2]
    assert float(response.headers["x-ms-run-fn-exec-ms"]) > 0
    refused = daemon.score("my-ep", {"data": [[1, 2]]})  # the model's own 400, not a 424
    assert refused.status_code == 400 and "features" in refused.json()["message"]
    # Timed again one call in eight since, it stays there.
    [instance] = json.loads(daemon.cli("deployment", "show", "my-ep", "blue", "-o", "json").stdout)["instances"]
    assert instance["calls"] == "inline" and 0 < instance["model_ms"] < 0.5

    # Asked for, a child process serves it instead, replacing the in-process instance.
    blue = iris_project / "blue.yml"
    blue.write_text(blue.read_text() + "runtime: process\n")
    daemon.cli("apply", "-f", "blue.yml", cwd=iris_project)
    shown = json.loads(daemon.cli("deployment", "show", "my-ep", "blue", "-o", "json").stdout)
    assert shown["runtime"] == "process" and shown["instances"][0]["pid"] != daemon.proc.pid
    assert daemon.score("my-ep", {"data": ROWS}).json()["label"] == [0, 2]


def test_only_no_code_models_run_inside(daemon: Daemon, iris_project: Path) -> None:
    (iris_project / "code").mkdir()
    (iris_project / "code" / "score.py").write_text("def init():\n    pass\ndef run(raw):\n    return 1\n")
    (iris_project / "scripted.yml").write_text(
        "name: scripted\nendpoint_name: my-ep\nruntime: inprocess\n"
        "code_configuration:\n  code: ./code\n  scoring_script: score.py\n")
    refused = daemon.cli("apply", "-f", "endpoint.yml", "-f", "scripted.yml", cwd=iris_project, check=False)
    assert refused.returncode != 0
    assert "runtime" in refused.stderr and "inprocess" in refused.stderr and "score.py" in refused.stderr
    assert "process or docker" in refused.stderr
    # Nor a model whose environment installs packages: they would land in the daemon's own Python.
    (iris_project / "conda.yml").write_text("dependencies:\n  - pip:\n    - six==1.16.0\n")
    (iris_project / "packaged.yml").write_text(
        "name: packaged\nendpoint_name: my-ep\nruntime: inprocess\nmodel:\n  path: ./model/\n"
        "environment:\n  image: python:3.11-slim\n  conda_file: conda.yml\n")
    refused = daemon.cli("apply", "-f", "endpoint.yml", "-f", "packaged.yml", cwd=iris_project, check=False)
    assert refused.returncode != 0 and "runtime" in refused.stderr and "installs packages" in refused.stderr
    assert json.loads(daemon.cli("endpoint", "list", "-o", "json").stdout) == []  # nothing stored


def heavy_model(path: Path, layers: int = 300) -> None:
    """An ONNX model that takes about a second per call on one core: `layers` MatMuls over 2048 rows."""
    # An orthogonal matrix keeps the activations' size: shrinking ones turn subnormal, and a call then
    # takes a minute on CPUs slow at subnormal arithmetic.
    q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((512, 512)))
    w = numpy_helper.from_array(q.astype(np.float32), "w")
    reps = numpy_helper.from_array(np.array([2048, 1], dtype=np.int64), "reps")
    nodes = [helper.make_node("Tile", ["x", "reps"], ["h0"])]
    nodes += [helper.make_node("MatMul", [f"h{i}", "w"], [f"h{i + 1}"]) for i in range(layers)]
    nodes.append(helper.make_node("ReduceMean", [f"h{layers}"], ["y"], axes=[0], keepdims=0))
    graph = helper.make_graph(nodes, "heavy", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 512])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [512])], [w, reps])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path.parent.mkdir(parents=True)
    onnx.save(model, path)


def test_a_heavy_model_does_not_stall_other_endpoints(daemon: Daemon, iris_project: Path) -> None:
    heavy_model(iris_project / "heavy" / "model.onnx")
    (iris_project / "heavy.yml").write_text(
        "name: heavy\nendpoint_name: slow-ep\nmodel:\n  path: ./heavy/\n"
        "request_settings:\n  request_timeout_ms: 60000\n")
    (iris_project / "slow-ep.yml").write_text("name: slow-ep\nauth_mode: key\n")
    daemon.cli("apply", "-f", "endpoint.yml", "-f", "blue.yml", "-f", "slow-ep.yml", "-f", "heavy.yml",
               cwd=iris_project)
    slow_key, key = daemon.key("slow-ep"), daemon.key("my-ep")
    x = {"data": [[0.5] * 512]}
    [instance] = json.loads(daemon.cli("deployment", "show", "slow-ep", "heavy", "-o", "json").stdout)["instances"]
    assert instance["calls"] == "threads"  # its warm-up timed it: a heavy one, from its first request

    answers: list[int] = []
    heavy = threading.Thread(target=lambda: answers.append(daemon.score("slow-ep", x, key=slow_key).status_code))
    heavy.start()

    def in_flight() -> bool:
        shown = json.loads(daemon.cli("deployment", "show", "slow-ep", "heavy", "-o", "json").stdout)
        return shown["instances"][0]["outstanding"] == 1

    wait_until(in_flight, 10, "the heavy request to be in flight")
    light = httpx.post(f"{daemon.url}/endpoints/my-ep/score", json={"data": ROWS},
                       headers={"authorization": f"Bearer {key}"}, timeout=30)
    assert light.status_code == 200
    assert heavy.is_alive(), "the light request waited for the heavy one"
    heavy.join(60)
    assert answers == [200]
    [instance] = json.loads(daemon.cli("deployment", "show", "slow-ep", "heavy", "-o", "json").stdout)["instances"]
    assert instance["calls"] == "threads" and instance["model_ms"] > 0.5
