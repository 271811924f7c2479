"""The foundation, end to end: a real daemon, Azure ML YAML applied through the CLI, predictions
over HTTP from onnxruntime sessions in child processes, and state that survives a restart."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import psutil
import yaml
from conftest import APPLIANCE, Daemon, served_provider, wait_until

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.2, 3.4, 5.4, 2.3], [5.9, 3.0, 4.2, 1.5]]


def expected(model: Path) -> dict[str, list]:
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    label, proba = session.run(None, {"features": np.asarray(ROWS, dtype=np.float32)})
    return {"label": label.tolist(), "probabilities": proba.tolist()}


def test_apply_score_restart(daemon: Daemon, iris_project: Path) -> None:
    applied = daemon.cli("apply", "-f", "endpoint.yml", "-f", "blue.yml", cwd=iris_project)
    assert f"deployment my-ep/blue: Succeeded on {served_provider()}" in applied.stderr

    want = expected(iris_project / "model" / "model.onnx")
    response = daemon.score("my-ep", {"data": ROWS})
    assert response.status_code == 200, response.text
    got = response.json()
    assert got["label"] == want["label"]
    assert np.allclose(got["probabilities"], want["probabilities"], atol=1e-6)
    assert response.headers["azureml-model-deployment"] == "blue"
    assert response.headers["x-request-id"]

    # Stop gracefully: the workers go with the daemon.
    shown = json.loads(daemon.cli("deployment", "show", "my-ep", "blue", "-o", "json").stdout)
    pids = [i["pid"] for i in shown["instances"]]
    assert daemon.stop() == 0
    wait_until(lambda: not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
                               for p in pids), 10, "the workers to exit")

    # Start again on the same home: the endpoint is back without doing anything.
    daemon.start()
    response = wait_until(lambda: (r := daemon.score("my-ep", {"data": ROWS})).status_code == 200 and r, 30,
                          "the restored deployment to serve")
    assert response.json()["label"] == want["label"]


def test_input_forms_and_errors(daemon: Daemon, iris_project: Path) -> None:
    daemon.cli("apply", "-f", "endpoint.yml", "-f", "blue.yml", cwd=iris_project)
    labels = expected(iris_project / "model" / "model.onnx")["label"]
    for body in ({"data": ROWS}, {"input_data": ROWS}, {"inputs": {"features": ROWS}},
                 {"input_data": {"columns": ["a", "b", "c", "d"], "index": [0, 1, 2], "data": ROWS}}):
        response = daemon.score("my-ep", body)
        assert response.status_code == 200, (body, response.text)
        assert response.json()["label"] == labels

    wrong_shape = daemon.score("my-ep", {"data": [[1.0, 2.0, 3.0]]})
    assert wrong_shape.status_code == 400
    message = wrong_shape.json()["message"]
    assert "'features'" in message and "tensor(float) of shape [?, 4]" in message and "[1, 3]" in message

    wrong_dtype = daemon.score("my-ep", {"data": [["a", "b", "c", "d"]]})
    assert wrong_dtype.status_code == 400
    assert "'features'" in wrong_dtype.json()["message"] and "str" in wrong_dtype.json()["message"]

    unknown = daemon.score("my-ep", {"inputs": {"petals": ROWS}})
    assert unknown.status_code == 400 and "'petals'" in unknown.json()["message"]

    not_json = httpx.post(f"{daemon.url}/endpoints/my-ep/score", content=b"{nope",
                          headers={"authorization": f"Bearer {daemon.key('my-ep')}"})
    assert not_json.status_code == 400 and "not valid JSON" in not_json.json()["message"]

    missing = daemon.score("nope", {"data": ROWS}, key="x")
    assert missing.status_code == 404 and "'nope'" in missing.json()["message"]


def test_key_auth(daemon: Daemon, iris_project: Path) -> None:
    daemon.cli("apply", "-f", "endpoint.yml", "-f", "blue.yml", cwd=iris_project)
    keys = json.loads(daemon.cli("endpoint", "get-credentials", "my-ep").stdout)
    assert keys["primaryKey"] != keys["secondaryKey"]
    assert daemon.score("my-ep", {"data": ROWS}, key=keys["primaryKey"]).status_code == 200
    assert daemon.score("my-ep", {"data": ROWS}, key=keys["secondaryKey"]).status_code == 200
    assert daemon.score("my-ep", {"data": ROWS}, key="wrong").status_code == 401
    bare = httpx.post(f"{daemon.url}/endpoints/my-ep/score", json={"data": ROWS})
    assert bare.status_code == 401 and "Authorization: Bearer" in bare.json()["message"]
    # The control API wants the admin token, which only the home's owner can read.
    assert httpx.get(f"{daemon.url}/api/v1/endpoints").status_code == 401
    assert stat.S_IMODE(os.stat(daemon.home / "admin.token").st_mode) == 0o600
    # A page served from another origin can't reach the daemon through DNS rebinding.
    rebind = httpx.get(f"{daemon.url}/api/v1/endpoints", headers={**daemon.admin, "host": "evil.example:80"})
    assert rebind.status_code == 403


def test_swagger_and_subdomain(daemon: Daemon, iris_project: Path) -> None:
    daemon.cli("apply", "-f", "endpoint.yml", "-f", "blue.yml", cwd=iris_project)
    key = daemon.key("my-ep")
    swagger = httpx.get(f"{daemon.url}/endpoints/my-ep/swagger.json", headers={"authorization": f"Bearer {key}"})
    assert swagger.status_code == 200
    doc = swagger.json()
    assert doc["swagger"] == "2.0" and "/score" in doc["paths"]
    service_input = doc["definitions"]["ServiceInput"]
    assert "features" in service_input["properties"]["inputs"]["properties"]
    assert "[?, 4]" in service_input["properties"]["data"]["description"]
    # The swagger's own example is a request the endpoint accepts.
    assert daemon.score("my-ep", service_input["example"], key=key).status_code == 200
    assert set(doc["definitions"]["ServiceOutput"]["properties"]) == {"label", "probabilities"}
    # http://my-ep.localhost:PORT/score reaches the same endpoint.
    sub = httpx.post(f"{daemon.url}/score", json={"data": ROWS},
                     headers={"authorization": f"Bearer {key}", "host": f"my-ep.localhost:{daemon.port}"})
    assert sub.status_code == 200 and sub.headers["azureml-model-deployment"] == "blue"


def test_instances_and_provider(daemon: Daemon, iris_project: Path) -> None:
    daemon.cli("apply", "-f", "endpoint.yml", "-f", "blue.yml", cwd=iris_project)
    blue = iris_project / "blue.yml"
    blue.write_text(blue.read_text().replace("instance_count: 1", "instance_count: 2") + "runtime: process\n")
    daemon.cli("apply", "-f", "blue.yml", cwd=iris_project)
    shown = json.loads(daemon.cli("deployment", "show", "my-ep", "blue", "-o", "json").stdout)
    assert shown["instance_count"] == 2 and shown["provisioning_state"] == "Succeeded"
    assert shown["provider"] == served_provider()
    # Quietly: on a machine without a GPU the workers' logs carry no CUDA error noise.
    worker_logs = "".join(Path(i["log"]).read_text() for i in shown["instances"])
    assert "loaded" in worker_logs and "CUDA" not in worker_logs and "rror" not in worker_logs
    pids = {i["pid"] for i in shown["instances"]}
    assert len(pids) == 2 and all(psutil.pid_exists(p) for p in pids)
    for pid in pids:  # each instance is a child process running the scoring worker
        assert "appliance.scoring" in " ".join(psutil.Process(pid).cmdline())
        # ...whose answers don't preempt the router where both share a core (scoring/__main__.py)
        assert os.sched_getscheduler(pid) == os.SCHED_BATCH
    # Deleting the endpoint stops its instances.
    daemon.cli("endpoint", "delete", "my-ep", "--yes")
    wait_until(lambda: not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
                               for p in pids), 10, "the instances to stop")
    assert json.loads(daemon.cli("endpoint", "list", "-o", "json").stdout) == []


def test_dependency_order_and_references(daemon: Daemon, iris_project: Path) -> None:
    (iris_project / "model.yml").write_text(
        "$schema: https://azuremlschemas.azureedge.net/latest/model.schema.json\n"
        "name: iris-reg\npath: ./model/model.onnx\n")
    (iris_project / "green.yml").write_text(
        "name: green\nendpoint_name: my-ep\nmodel: azureml:iris-reg@latest\n")
    (iris_project / "red.yml").write_text(
        "name: red\nendpoint_name: my-ep\nmodel: azureml:iris-reg:1\n")
    # Files in the "wrong" order: deployments before the endpoint and the model they need.
    daemon.cli("apply", "-f", "green.yml", "-f", "red.yml", "-f", "endpoint.yml", "-f", "model.yml",
               cwd=iris_project)
    deployments = json.loads(daemon.cli("deployment", "list", "my-ep", "-o", "json").stdout)
    assert {d["name"]: d["model"] for d in deployments} == {"green": "azureml:iris-reg:1",
                                                            "red": "azureml:iris-reg:1"}
    pinned = daemon.score("my-ep", {"data": ROWS}, **{"azureml-model-deployment": "red"})
    assert pinned.status_code == 200 and pinned.headers["azureml-model-deployment"] == "red"
    unknown = daemon.score("my-ep", {"data": ROWS}, **{"azureml-model-deployment": "teal"})
    assert unknown.status_code == 404 and "green, red" in unknown.json()["message"]


def test_environment_yaml(daemon: Daemon, iris_project: Path) -> None:
    (iris_project / "conda.yml").write_text("name: iris-env\ndependencies:\n  - python=3.11\n  - pip:\n"
                                            "    - onnxruntime\n")
    (iris_project / "env.yml").write_text(
        "$schema: https://azuremlschemas.azureedge.net/latest/environment.schema.json\n"
        "name: iris-env\nimage: mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04:latest\nconda_file: conda.yml\n")
    daemon.cli("apply", "-f", "env.yml", cwd=iris_project)
    daemon.cli("apply", "-f", "env.yml", cwd=iris_project)  # unchanged: no new version
    envs = json.loads(daemon.cli("environment", "list", "-o", "json").stdout)
    assert [(e["name"], e["version"]) for e in envs] == [("iris-env", "1")]
    assert envs[0]["spec"]["conda_file"]["dependencies"][1] == {"pip": ["onnxruntime"]}
    (iris_project / "conda.yml").write_text("name: iris-env\ndependencies:\n  - python=3.11\n")
    daemon.cli("apply", "-f", "env.yml", cwd=iris_project)
    shown = json.loads(daemon.cli("environment", "show", "iris-env", "-o", "json").stdout)
    assert shown["version"] == "2" and shown["id"] == "azureml:iris-env:2"


def test_bad_yaml_stores_nothing(daemon: Daemon, iris_project: Path) -> None:
    (iris_project / "bad.yml").write_text(
        "name: blue\nendpoint_name: my-ep\nmodel:\n  name: iris\n  path: ./model/\ninstance_count: three\n")
    result = daemon.cli("apply", "-f", "endpoint.yml", "-f", "bad.yml", cwd=iris_project, check=False)
    assert result.returncode != 0
    assert "bad.yml" in result.stderr and "instance_count" in result.stderr and "'three'" in result.stderr
    assert "int" in result.stderr

    # A valid file whose reference can't be resolved: the endpoint applied beside it is rolled back.
    (iris_project / "dangling.yml").write_text("name: blue\nendpoint_name: my-ep\nmodel: azureml:ghost:3\n")
    result = daemon.cli("apply", "-f", "endpoint.yml", "-f", "blue.yml", "-f", "dangling.yml",
                        cwd=iris_project, check=False)
    assert result.returncode != 0 and "ghost" in result.stderr and "dangling.yml" in result.stderr
    assert json.loads(daemon.cli("endpoint", "list", "-o", "json").stdout) == []
    assert json.loads(daemon.cli("model", "list", "-o", "json").stdout) == []
    assert list((daemon.home / "artifacts" / "sha256").iterdir()) == []

    (iris_project / "typo.yml").write_text("name: my-ep\nauth_mode: key\ndescriptoin: oops\n")
    result = daemon.cli("apply", "-f", "typo.yml", cwd=iris_project)
    assert "unknown field 'descriptoin'" in result.stderr

    result = daemon.cli("apply", "-f", "missing.yml", cwd=iris_project, check=False)
    assert result.returncode != 0 and "missing.yml" in result.stderr


def test_model_registry_cli(daemon: Daemon, iris_project: Path) -> None:
    model = str(iris_project / "model")
    first = json.loads(daemon.cli("model", "create", "--name", "iris", "--path", model, "--tag", "team=ml",
                                  "-o", "json").stdout)
    again = json.loads(daemon.cli("model", "create", "--name", "iris", "--path", model, "-o", "json").stdout)
    assert first["version"] == again["version"] == "1" and first["digest"] == again["digest"]
    assert first["framework"] == "onnx" and first["tags"] == {"team": "ml"}
    assert first["signature"]["inputs"][0]["name"] == "features"
    assert len(list((daemon.home / "artifacts" / "sha256").iterdir())) == 1  # stored once

    explicit = json.loads(daemon.cli("model", "create", "--name", "iris", "--path", model, "--version", "7",
                                     "-o", "json").stdout)
    assert explicit["version"] == "7"
    listed = yaml.safe_load(daemon.cli("model", "list", "-o", "yaml").stdout)
    assert [m["version"] for m in listed] == ["1", "7"]
    assert json.loads(daemon.cli("model", "show", "iris", "-o", "json").stdout)["version"] == "7"
    table = daemon.cli("model", "list").stdout
    assert "iris" in table and "onnx" in table

    missing = daemon.cli("model", "show", "ghost", check=False)
    assert missing.returncode != 0 and "'ghost'" in missing.stderr


def test_second_daemon_refused(daemon: Daemon) -> None:
    second = Daemon(daemon.home)
    result = subprocess.run([APPLIANCE, "up", "--headless", "--port", str(second.port)], env=second.env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "already running" in result.stderr and str(daemon.home) in result.stderr

