"""The image builder and the docker runtime, on a real Docker engine (installed and started by
install.sh --test): builds, cache hits, docker deployments behind the router, packaged images
serving on their own, bring-your-own containers, and the errors."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest
from conftest import Daemon, collected_rows, free_port, wait_until

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.2, 3.4, 5.4, 2.3]]


@pytest.fixture(scope="module")
def engine() -> docker.DockerClient:
    return docker.from_env()


def ours(engine: docker.DockerClient, home: Path) -> list:
    return engine.containers.list(all=True, filters={"label": f"appliance.home={home}"})


def docker_project(iris_project: Path, env_name: str = "iris-env") -> Path:
    (iris_project / "conda.yml").write_text("dependencies:\n  - pip:\n    - six==1.16.0\n")
    (iris_project / "env.yml").write_text(f"name: {env_name}\nimage: python:3.11-slim\nconda_file: conda.yml\n")
    (iris_project / "docker.yml").write_text(
        "name: blue\nendpoint_name: my-ep\nmodel:\n  name: iris\n  path: ./model/\n"
        "environment: azureml:iris-env:1\nruntime: docker\ninstance_count: 1\n")
    return iris_project


def test_build_then_cache_hit(docker_daemon: Daemon, iris_project: Path, engine: docker.DockerClient) -> None:
    daemon = docker_daemon
    name = f"fresh-{uuid.uuid4().hex[:8]}"  # a tag no earlier run on this engine has built
    project = docker_project(iris_project, name)
    daemon.cli("apply", "-f", "env.yml", cwd=project)
    built = daemon.cli("environment", "build", f"{name}:1", "-o", "json")
    result = json.loads(built.stdout)
    assert not result["cached"] and "Step" in built.stderr  # the build's progress, streamed
    assert result["image"].startswith(f"appliance/env-{name}:1-") and len(result["image"].rsplit("-", 1)[1]) == 12
    image = engine.images.get(result["image"])
    labels = image.labels
    assert labels["appliance.environment.name"] == name and labels["appliance.environment.version"] == "1"
    assert labels["appliance.environment.digest"] and labels["org.opencontainers.image.created"]
    assert image.attrs["Config"]["User"] == "10001" and image.attrs["Config"]["Healthcheck"]["Test"]
    # The environment's own requirement and the worker are inside, installed offline.
    pip_list = engine.containers.run(result["image"], ["python", "-m", "pip", "list"], remove=True).decode()
    assert "six" in pip_list and "onnxruntime" in pip_list and "appliance" in pip_list

    started = time.monotonic()
    with httpx.stream("POST", f"{daemon.url}/api/v1/environments/{name}/build", params={"version": "1"},
                      headers=daemon.admin, timeout=60) as response:
        events = [json.loads(line) for line in response.iter_lines() if line]
    elapsed = time.monotonic() - started
    assert events[-1]["result"] == {**result, "cached": True}
    assert elapsed < 1.0, f"a cache hit took {elapsed:.2f}s"


def test_docker_deployment_serves_and_leaves_no_orphans(docker_daemon: Daemon, iris_project: Path,
                                                         engine: docker.DockerClient) -> None:
    daemon = docker_daemon
    project = docker_project(iris_project)
    daemon.cli("apply", "-f", "endpoint.yml", "-f", "env.yml", "-f", "docker.yml", cwd=project)
    response = daemon.score("my-ep", {"data": ROWS})
    assert response.status_code == 200 and response.json()["label"] == [0, 2]
    containers = ours(engine, daemon.home)
    assert len(containers) == 1
    container = containers[0]
    assert container.labels["appliance.endpoint"] == "my-ep" and container.labels["appliance.deployment"] == "blue"
    bindings = container.attrs["HostConfig"]["PortBindings"]["8080/tcp"]
    assert [b["HostIp"] for b in bindings] == ["127.0.0.1"]
    mounts = {m["Destination"]: m for m in container.attrs["Mounts"]}
    assert mounts["/var/azureml-app/azureml-models/iris/1"]["RW"] is False
    logs = daemon.cli("deployment", "logs", "my-ep", "blue").stdout
    assert "loaded" in logs and "CPUExecutionProvider" in logs

    # A graceful stop removes the containers; a restart brings them back.
    assert daemon.stop() == 0
    assert ours(engine, daemon.home) == []
    daemon.start()
    wait_until(lambda: daemon.score("my-ep", {"data": ROWS}).status_code == 200, 60, "the restored container")

    # A daemon killed outright leaves a container; the next start removes it, then starts afresh.
    daemon.proc.send_signal(signal.SIGKILL)
    daemon.proc.wait()
    assert len(ours(engine, daemon.home)) == 1
    daemon.start()
    wait_until(lambda: daemon.score("my-ep", {"data": ROWS}).status_code == 200, 60, "the replaced container")
    assert len(ours(engine, daemon.home)) == 1

    daemon.cli("endpoint", "delete", "my-ep", "--yes")
    assert ours(engine, daemon.home) == []


def test_docker_deployment_collects_data_as_the_daemons_user(docker_daemon: Daemon, iris_project: Path,
                                                             engine: docker.DockerClient) -> None:
    """Azure's data collector in the docker runtime: the worker in the container writes the deployment's
    collections into the home through a bind mount, as files the daemon's user owns (retention deletes them)."""
    daemon = docker_daemon
    project = docker_project(iris_project)
    with (project / "docker.yml").open("a") as spec:
        spec.write("data_collector:\n  collections:\n    model_inputs:\n      enabled: true\n"
                   "    model_outputs:\n      enabled: true\n")
    daemon.cli("apply", "-f", "endpoint.yml", "-f", "env.yml", "-f", "docker.yml", cwd=project)
    response = daemon.score("my-ep", {"data": ROWS}, **{"x-request-id": "in-a-container"})
    assert response.status_code == 200, response.text
    folder = daemon.home / "data-collector" / "endpoint=my-ep" / "deployment=blue"

    def written() -> dict[str, list[dict[str, Any]]] | None:
        found = {c: collected_rows(folder, c) for c in ("model_inputs", "model_outputs")}
        return found if all(found.values()) else None

    found = wait_until(written, 60, "the container's collected rows")
    assert all(f.stat().st_uid == os.getuid() for f in folder.rglob("*"))
    inputs, outputs = found["model_inputs"], found["model_outputs"]
    assert [r["correlation_id"] for r in inputs] == ["in-a-container"] * len(ROWS)
    assert [[r[f"features_{k}"] for k in range(4)] for r in inputs] == [[pytest.approx(v) for v in row] for row in ROWS]
    assert [r["label"] for r in outputs] == [0, 2]
    daemon.cli("endpoint", "delete", "my-ep", "--yes")
    assert ours(engine, daemon.home) == []


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[str]:
    """A real registry (Debian's docker-registry) on a loopback port, for `package --push`."""
    port = free_port()
    config = tmp_path / "registry.yml"
    config.write_text(f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {tmp_path / 'registry'}\n"
                      f"http:\n  addr: 127.0.0.1:{port}\n")
    proc = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)

    def up() -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    wait_until(up, 20, "the registry")
    yield f"127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)


def test_package_serves_on_its_own(docker_daemon: Daemon, iris_project: Path, engine: docker.DockerClient,
                                   registry: str) -> None:
    daemon = docker_daemon
    project = docker_project(iris_project)
    (project / "blue.yml").write_text(project.joinpath("blue.yml").read_text() + "environment: azureml:iris-env:1\n")
    daemon.cli("apply", "-f", "endpoint.yml", "-f", "env.yml", "-f", "blue.yml", cwd=project)
    packaged = daemon.cli("package", "my-ep", "blue").stdout.strip()
    assert packaged == "appliance/my-ep-blue:iris-v1"  # what `docker run` takes as it is

    port = free_port()
    container = engine.containers.run(packaged, detach=True, ports={"8080/tcp": ("127.0.0.1", port)})
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _get(url + "/") == 200, 60, "the packaged image to serve")
        assert httpx.post(url + "/score", json={"data": ROWS}).json()["label"] == [0, 2]
        infer = httpx.post(url + "/v2/models/iris/infer", json={"inputs": [
            {"name": "features", "shape": [2, 4], "datatype": "FP32", "data": [x for row in ROWS for x in row]}]})
        assert infer.status_code == 200 and infer.json()["outputs"][0]["data"] == [0, 2]
    finally:
        container.remove(force=True)

    pushed = json.loads(daemon.cli("package", "my-ep", "blue", "--push", f"{registry}/iris", "-o", "json").stdout)
    assert pushed["reference"].startswith(f"{registry}/iris@sha256:")
    tags = httpx.get(f"http://{registry}/v2/iris/tags/list").json()
    assert tags["tags"] == ["iris-v1"]


def _get(url: str) -> int:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.TransportError:
        return 0


CUSTOM_SERVER = """\
import json
from http.server import BaseHTTPRequestHandler, HTTPServer

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path in ("/alive", "/ready") else 404)
        self.end_headers()

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        reply = json.dumps({"path": self.path, "rows": len(body["data"])}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

HTTPServer(("0.0.0.0", 5001), Handler).serve_forever()
"""


def test_bring_your_own_container(docker_daemon: Daemon, tmp_path: Path, engine: docker.DockerClient,
                                  docker_base_image: str) -> None:
    daemon = docker_daemon
    context = tmp_path / "custom"
    context.mkdir()
    (context / "server.py").write_text(CUSTOM_SERVER)
    (context / "Dockerfile").write_text(f"FROM {docker_base_image}\nCOPY server.py /server.py\n"
                                        'CMD ["python3", "/server.py"]\n')
    engine.images.build(path=str(context), tag="appliance-test/custom:1")
    (tmp_path / "endpoint.yml").write_text("name: byoc\nauth_mode: key\n")
    (tmp_path / "env.yml").write_text(
        "name: custom\nimage: appliance-test/custom:1\ninference_config:\n"
        "  liveness_route: {path: /alive, port: 5001}\n  readiness_route: {path: /ready, port: 5001}\n"
        "  scoring_route: {path: /predict, port: 5001}\n")
    (tmp_path / "dep.yml").write_text("name: own\nendpoint_name: byoc\nenvironment: azureml:custom:1\n"
                                      "runtime: docker\ncode_configuration:\n  code: ./custom\n"
                                      "  scoring_script: server.py\n")
    daemon.cli("apply", "-f", "endpoint.yml", "-f", "env.yml", "-f", "dep.yml", cwd=tmp_path)
    response = daemon.score("byoc", {"data": ROWS})
    assert response.status_code == 200, daemon.cli("deployment", "show", "byoc", "own", "-o", "json").stdout
    assert response.json() == {"path": "/predict", "rows": 2}


def test_a_container_that_exits_at_once_fails_clearly_and_an_update_recovers(
        docker_daemon: Daemon, tmp_path: Path, engine: docker.DockerClient, docker_base_image: str) -> None:
    daemon = docker_daemon
    for tag, cmd in (("exits", '["sh", "-c", "echo no model here >&2; exit 3"]'),
                     ("serves", '["python3", "/server.py"]')):
        context = tmp_path / tag
        context.mkdir()
        (context / "server.py").write_text(CUSTOM_SERVER)
        (context / "Dockerfile").write_text(f"FROM {docker_base_image}\nCOPY server.py /server.py\nCMD {cmd}\n")
        engine.images.build(path=str(context), tag=f"appliance-test/{tag}:1")
    routes = ("inference_config:\n  liveness_route: {path: /alive, port: 5001}\n"
              "  readiness_route: {path: /ready, port: 5001}\n  scoring_route: {path: /predict, port: 5001}\n")
    (tmp_path / "endpoint.yml").write_text("name: byoc\nauth_mode: key\n")
    (tmp_path / "env.yml").write_text(f"name: custom\nversion: '1'\nimage: appliance-test/exits:1\n{routes}")
    (tmp_path / "env2.yml").write_text(f"name: custom\nversion: '2'\nimage: appliance-test/serves:1\n{routes}")
    dep = ("name: own\nendpoint_name: byoc\nenvironment: azureml:custom:{}\nruntime: docker\n"
           "code_configuration:\n  code: ./serves\n  scoring_script: server.py\n")
    (tmp_path / "dep.yml").write_text(dep.format(1))
    daemon.cli("apply", "-f", "endpoint.yml", "-f", "env.yml", "-f", "dep.yml", cwd=tmp_path, check=False)

    def shown() -> dict:
        return json.loads(daemon.cli("deployment", "show", "byoc", "own", "-o", "json").stdout)

    failed = wait_until(lambda: (s := shown())["provisioning_state"] == "Failed" and s, 60, "Failed")
    error = failed["instances"][0]["error"] or ""
    assert "exit code 3" in error and "no model here" in error and "KeyError" not in error, failed
    wait_until(lambda: not [c for c in ours(engine, daemon.home) if c.status != "running"], 10,
               "the exited container removed")

    (tmp_path / "dep.yml").write_text(dep.format(2))
    started = time.monotonic()
    daemon.cli("apply", "-f", "env2.yml", "-f", "dep.yml", cwd=tmp_path)  # used to hang: the lock was held
    assert time.monotonic() - started < 60
    wait_until(lambda: shown()["provisioning_state"] == "Succeeded", 60, "Succeeded")
    response = daemon.score("byoc", {"data": ROWS})
    assert response.status_code == 200 and response.json() == {"path": "/predict", "rows": 2}
    assert len(ours(engine, daemon.home)) == 1


def test_errors_are_clear_and_nothing_is_half_done(docker_daemon: Daemon, iris_project: Path,
                                                  engine: docker.DockerClient, tmp_path: Path) -> None:
    daemon = docker_daemon
    # A step that fails: an environment whose own base image has no Python.
    empty = subprocess.run("tar -c -T /dev/null | docker import - appliance-test/no-python:1", shell=True,
                           capture_output=True, check=True)
    assert empty.returncode == 0
    (iris_project / "nopy.yml").write_text("name: nopy\nimage: appliance-test/no-python:1\n")
    daemon.cli("apply", "-f", "nopy.yml", cwd=iris_project)
    failed = daemon.cli("environment", "build", "nopy", check=False)
    assert failed.returncode != 0
    assert "docker build failed at Step" in failed.stderr and "python3" in failed.stderr
    assert not engine.images.list(name="appliance/env-nopy")

    # A deployment that asks for a GPU where the engine has none: one clear error.
    (iris_project / "gpu.yml").write_text("name: gpu\nendpoint_name: my-ep\nmodel:\n  path: ./model/\n"
                                          "instance_type: Standard_NC6s_v3\nruntime: docker\n")
    result = daemon.cli("apply", "-f", "endpoint.yml", "-f", "gpu.yml", cwd=iris_project, check=False)
    assert result.returncode != 0 and "asks for a GPU" in result.stderr and "Standard_NC6s_v3" in result.stderr

    (iris_project / "bad-conda.yml").write_text("dependencies:\n  - pip:\n    - appliance-no-such-package==0.0.1\n")
    (iris_project / "bad-env.yml").write_text("name: bad-env\nimage: python:3.11-slim\nconda_file: bad-conda.yml\n")
    daemon.cli("apply", "-f", "bad-env.yml", cwd=iris_project)
    before = {t for i in engine.images.list() for t in i.tags}
    failed = daemon.cli("environment", "build", "bad-env", check=False)
    assert failed.returncode != 0
    assert "downloading wheels failed" in failed.stderr and "appliance-no-such-package" in failed.stderr
    assert {t for i in engine.images.list() for t in i.tags} == before  # no image half-made


def test_without_an_engine_only_docker_features_fail(tmp_path: Path, iris_project: Path) -> None:
    daemon = Daemon(tmp_path / "home", env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"}).start()
    try:
        (iris_project / "docker.yml").write_text(
            "name: boxed\nendpoint_name: my-ep\nmodel:\n  path: ./model/\nruntime: docker\n")
        result = daemon.cli("apply", "-f", "endpoint.yml", "-f", "blue.yml", "-f", "docker.yml", cwd=iris_project,
                            check=False)
        assert result.returncode != 0 and "needs a running Docker engine" in result.stderr
        served = daemon.score("my-ep", {"data": ROWS}, **{"azureml-model-deployment": "blue"})
        assert served.status_code == 200  # the process runtime is unaffected
        (iris_project / "env.yml").write_text("name: some-env\nimage: python:3.11-slim\n")
        daemon.cli("apply", "-f", "env.yml", cwd=iris_project)
        built = daemon.cli("environment", "build", "some-env", check=False)
        assert built.returncode != 0 and "needs a running Docker engine" in built.stderr
    finally:
        daemon.stop()


def test_docker_rolling_replace_fails_no_request(docker_daemon: Daemon, iris_project: Path,
                                                 engine: docker.DockerClient) -> None:
    daemon = docker_daemon
    project = docker_project(iris_project)
    daemon.cli("apply", "-f", "endpoint.yml", "-f", "env.yml", "-f", "docker.yml", cwd=project)
    before = {c.id for c in ours(engine, daemon.home)}
    key = daemon.key("my-ep")
    statuses: list[int] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=daemon.url, timeout=30, headers={"authorization": f"Bearer {key}"}) as client:
            while not stop.is_set():
                statuses.append(client.post("/endpoints/my-ep/score", json={"data": ROWS}).status_code)

    clients = [threading.Thread(target=load) for _ in range(3)]
    for t in clients:
        t.start()
    try:
        daemon.cli("deployment", "update", "my-ep", "blue", "--set", "environment_variables.MODE=v2")
    finally:
        stop.set()
        for t in clients:
            t.join(30)
    assert statuses and set(statuses) == {200}
    after = {c.id for c in ours(engine, daemon.home)}
    assert len(after) == 1 and not (after & before)  # a new container serves; the old one is gone
