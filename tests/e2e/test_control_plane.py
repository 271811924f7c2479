"""The control plane under concurrency, on a real daemon: large applies never stall the data plane."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import onnx
from conftest import Daemon, wait_until
from onnx import TensorProto, helper, numpy_helper

ROWS = [[5.1, 3.5, 1.4, 0.2]]


def large_model(path: Path, megabytes: int) -> None:
    """An ONNX model of about `megabytes` MB: a MatMul of the 4 iris features by a large weight."""
    width = megabytes * (1 << 20) // 16
    w = numpy_helper.from_array(np.random.default_rng(len(str(path))).standard_normal((4, width), np.float32), "w")
    nodes = [helper.make_node("MatMul", ["features", "w"], ["h"]),
             helper.make_node("ReduceSum", ["h"], ["y"], keepdims=0)]
    graph = helper.make_graph(nodes, "large", [helper.make_tensor_value_info("features", TensorProto.FLOAT, [None, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path.parent.mkdir(parents=True)
    onnx.save(model, path)


STEADY = """
import gc, http.client, json, os, sys, time
gc.disable()  # the client's own collections are not the daemon's latency
port, key, body, stop, ready = int(sys.argv[1]), *sys.argv[2:]
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
answers = []
while not os.path.exists(stop):
    started = time.perf_counter()
    conn.request("POST", "/endpoints/my-ep/score", body, headers)
    response = conn.getresponse()
    response.read()
    answers.append((response.status, time.perf_counter() - started))
    if len(answers) == 1:
        open(ready, "w").close()
    time.sleep(0.005)
print(json.dumps(answers))
"""


def test_two_large_applies_do_not_stall_another_endpoint(daemon: Daemon, iris_project: Path, tmp_path: Path) -> None:
    daemon.cli("apply", "-f", "endpoint.yml", "-f", "blue.yml", cwd=iris_project)
    key = daemon.key("my-ep")
    for name in ("big-a", "big-b"):
        large_model(iris_project / name / "model.onnx", 256)
        (iris_project / f"{name}.yml").write_text(
            f"name: {name}\nauth_mode: key\n---\n"
            f"name: blue\nendpoint_name: {name}\nmodel:\n  name: {name}\n  path: ./{name}/\n")

    # The steady client is a process of its own, as a user's would be: timed in this one, it timed this
    # process too (gen-2 collections over the heap pytest and conftest's imports built took up to 200 ms).
    stop, ready = tmp_path / "stop", tmp_path / "ready"
    client = subprocess.Popen([sys.executable, "-c", STEADY, str(daemon.port), key, json.dumps({"data": ROWS}),
                               str(stop), str(ready)], stdout=subprocess.PIPE, text=True)
    try:
        wait_until(ready.exists, 30, "the steady client's first answer")
        applies = [threading.Thread(target=daemon.cli, args=("apply", "-f", f"{name}.yml"),
                                    kwargs={"cwd": iris_project}) for name in ("big-a", "big-b")]
        started = time.perf_counter()
        for t in applies:
            t.start()
        for t in applies:
            t.join()
        took = time.perf_counter() - started
    finally:
        stop.touch()
        out, _ = client.communicate(timeout=30)
    assert client.returncode == 0, "the steady client failed (its traceback is above)"
    answers = json.loads(out)
    statuses = {status for status, _ in answers}
    latencies = [seconds for _, seconds in answers]
    for name in ("big-a", "big-b"):
        assert daemon.score(name, {"data": ROWS}).status_code == 200
    assert statuses == {200}
    assert took > 1.0, f"the applies took {took:.2f} s: too little to have tested anything"
    assert len(latencies) > 20
    worst = max(latencies)
    assert worst < 0.050, (f"a request to another endpoint took {worst * 1000:.0f} ms during the applies "
                           f"(p50 {np.percentile(latencies, 50) * 1000:.1f} ms, {len(latencies)} requests)")


SCORE = "def init():\n    pass\n\ndef run(raw_data):\n    return {'ok': True}\n"


def test_apply_waits_like_az_ml_and_fails_with_the_reason(daemon: Daemon, tmp_path: Path) -> None:
    """`apply` returns once each deployment is ready or failed: a failed build exits 1 with why; once
    fixed, `apply && invoke` is served at once; `--no-wait` returns before."""
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "score.py").write_text(SCORE)
    (tmp_path / "endpoint.yml").write_text("name: wait-ep\nauth_mode: key\n")

    def deployment(pip: list[str]) -> Path:
        conda = {"name": "env", "dependencies": ["python=3.11", {"pip": pip}]}
        (tmp_path / "conda.yml").write_text(json.dumps(conda))
        (tmp_path / "blue.yml").write_text(
            "name: blue\nendpoint_name: wait-ep\ncode_configuration:\n  code: ./code\n  scoring_script: score.py\n"
            "environment:\n  image: python:3.11-slim\n  conda_file: conda.yml\n")
        return tmp_path / "blue.yml"

    broken = daemon.cli("apply", "-f", str(tmp_path / "endpoint.yml"), "-f",
                        str(deployment(["appliance-test-no-such-package-0"])), check=False)
    assert broken.returncode == 1, broken.stderr
    assert "wait-ep/blue is Failed" in broken.stderr and "environment build failed" in broken.stderr
    assert "Traceback" not in broken.stderr

    fixed = daemon.cli("apply", "-f", str(deployment([])))
    assert "blue: waiting for 1 instance(s) to be ready" in fixed.stderr
    assert daemon.score("wait-ep", {"x": 1}).status_code == 200  # no 503: apply returned once it was ready

    update = daemon.cli("deployment", "update", "wait-ep", "blue", "--set", "instance_count=2", "-o", "json")
    [shown] = json.loads(update.stdout)["deployments"]
    assert shown["provisioning_state"] == "Succeeded" and len(shown["instances"]) == 2

    started = time.perf_counter()
    quick = daemon.cli("deployment", "update", "wait-ep", "blue", "--set", "environment_variables.X=hello",
                       "--no-wait", "-o", "json")
    assert time.perf_counter() - started < 10 and json.loads(quick.stdout)["deployments"]
