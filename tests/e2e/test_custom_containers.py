"""Azure's custom containers (issue 19, point 2), on a real Docker engine: an environment with an image
or a build context and an `inference_config` runs that image as it is, in Docker, whatever else the
deployment holds: its routes and port, the model mounted at Azure's path or `model_mount_path`,
`AZUREML_MODEL_DIR`, `environment_variables`; deployments with no model and no code (all in the image),
and an image running a scoring script that is not Python. The images are built here from a Dockerfile
on the local Debian base (no registry)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from conftest import Daemon

# A stand-in for tfserving, torchserve, Triton or plumber: a server that is not the appliance's worker.
# It answers GET on its health routes, and POST on any path with what it sees of its container.
SERVER = """\
import json, os
from http.server import BaseHTTPRequestHandler, HTTPServer

def listing(root):
    if not root or not os.path.isdir(root):
        return None
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path in ("/", "/alive", "/ready") else 404)
        self.end_headers()

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        reply = json.dumps({"server": "stand-in", "path": self.path, "rows": len(body["data"]),
                            "model_dir": os.environ.get("AZUREML_MODEL_DIR"),
                            "files": listing(os.environ.get("AZUREML_MODEL_DIR")),
                            "greeting": os.environ.get("GREETING"), "entry": os.environ.get("ENTRY_SEEN")}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

HTTPServer(("0.0.0.0", int(os.environ.get("PORT", "5001"))), Handler).serve_forever()
"""

# Run by the image as its entry script (AML_APP_ROOT/AZUREML_ENTRY_SCRIPT), the way the R example's image
# runs plumber.R: shell, so importing it as Python would fail with a SyntaxError.
ENTRY = """\
#!/bin/sh
export ENTRY_SEEN="$AZUREML_ENTRY_SCRIPT"
exec python3 /server.py
"""

ROUTES = ("inference_config:\n  liveness_route: {path: /alive, port: 5001}\n"
          "  readiness_route: {path: /ready, port: 5001}\n  scoring_route: {path: /predict, port: 5001}\n")
ROWS = [[1, 2], [3, 4], [5, 6]]


def indent(text: str) -> str:
    return "".join(f"  {line}\n" for line in text.splitlines())


@pytest.fixture(scope="module")
def engine() -> docker.DockerClient:
    return docker.from_env()


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, engine: docker.DockerClient, docker_base_image: str,
            iris_onnx: Path) -> Path:
    """A build context (server + two Dockerfiles, one in a subfolder), the images built from it here,
    a model folder shaped like Triton's repository, and a code folder with a shell entry script."""
    root = tmp_path_factory.mktemp("custom")
    context = root / "ctx"
    (context / "docker").mkdir(parents=True)
    (context / "server.py").write_text(SERVER)
    (context / "docker" / "scorer.dockerfile").write_text(
        f"FROM {docker_base_image}\nCOPY server.py /server.py\nEXPOSE 5001\nCMD [\"python3\", \"/server.py\"]\n")
    (context / "Dockerfile").write_text(
        f"FROM {docker_base_image}\nCOPY server.py /server.py\n"
        'CMD ["sh", "-c", "exec sh \\"$AML_APP_ROOT/$AZUREML_ENTRY_SCRIPT\\""]\n')
    engine.images.build(path=str(context), dockerfile="docker/scorer.dockerfile", tag="appliance-test/cc-scorer:1")
    engine.images.build(path=str(context), tag="appliance-test/cc-runner:1")
    model = root / "models" / "model_1" / "1"
    model.mkdir(parents=True)
    (model / "model.onnx").write_bytes(iris_onnx.read_bytes())  # one the appliance could serve itself
    (root / "app").mkdir()
    (root / "app" / "serve.sh").write_text(ENTRY)
    return root


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, docker_base_image: str) -> Iterator[Daemon]:
    d = Daemon(tmp_path_factory.mktemp("cc") / "home", "--base-image", docker_base_image).start()
    yield d
    if d.proc and d.proc.poll() is None:
        d.stop()


def deploy(daemon: Daemon, project: Path, endpoint: str, deployment: str) -> dict:
    """Applied and waited for (as `az ml online-deployment create` does); the answer to a score."""
    (project / f"{endpoint}.yml").write_text(f"name: {endpoint}\nauth_mode: key\n")
    (project / f"{endpoint}-dep.yml").write_text(deployment)
    daemon.cli("apply", "-f", f"{endpoint}.yml", "-f", f"{endpoint}-dep.yml", cwd=project)
    response = daemon.score(endpoint, {"data": ROWS})
    shown = daemon.cli("deployment", "show", endpoint, "dep", "-o", "json", check=False).stdout
    assert response.status_code == 200, (response.text, shown)
    return response.json()


def containers(engine: docker.DockerClient, daemon: Daemon, endpoint: str) -> list:
    return engine.containers.list(filters={"label": [f"appliance.home={daemon.home}",
                                                     f"appliance.endpoint={endpoint}"]})


def test_build_context_model_and_no_code(daemon: Daemon, project: Path, engine: docker.DockerClient) -> None:
    """`build: {path, dockerfile_path}` built into a content-addressed tag; a model and no code; the
    model at Azure's default path; environment_variables passed."""
    answer = deploy(daemon, project, "cc-build", (
        "name: dep\nendpoint_name: cc-build\nmodel:\n  name: triton-repo\n  version: 3\n  path: ./models\n"
        "environment_variables:\n  GREETING: hello\n"
        "environment:\n  name: scorer\n  build:\n    path: ./ctx\n    dockerfile_path: docker/scorer.dockerfile\n"
        + indent(ROUTES)))
    assert answer["server"] == "stand-in" and answer["path"] == "/predict" and answer["rows"] == 3
    assert answer["model_dir"] == "/var/azureml-app/azureml-models/triton-repo/3"
    assert answer["files"] == ["models/model_1/1/model.onnx"]
    assert answer["greeting"] == "hello"
    [container] = containers(engine, daemon, "cc-build")
    tag = container.attrs["Config"]["Image"]  # (the same layers as cc-scorer:1: tags[0] may be either)
    assert tag.startswith("appliance/build-scorer:") and len(tag.rsplit(":", 1)[1]) == 12
    assert "5001/tcp" in container.attrs["HostConfig"]["PortBindings"]

    # Same files, same tag: `environment build` is a cache hit; the liveness route answers through the router.
    built = json.loads(daemon.cli("environment", "build", "scorer:1", "-o", "json").stdout)
    assert built["image"] == tag and built["cached"] is True


def test_image_with_model_mount_path_is_not_the_onnx_fast_path(daemon: Daemon, project: Path,
                                                               engine: docker.DockerClient) -> None:
    """Triton's shape: a model folder holding an .onnx file, `model_mount_path: /models`, no code. The
    image serves it (not the appliance's ONNX worker) and finds it at /models; no unknown-field warning."""
    (project / "cc-mount.yml").write_text("name: cc-mount\nauth_mode: key\n")
    (project / "cc-mount-dep.yml").write_text(
        "name: dep\nendpoint_name: cc-mount\nmodel:\n  path: ./models/model_1\nmodel_mount_path: /models\n"
        "environment:\n  name: triton-like\n  image: appliance-test/cc-scorer:1\n" + indent(ROUTES))
    applied = daemon.cli("apply", "-f", "cc-mount.yml", "-f", "cc-mount-dep.yml", cwd=project)
    assert "model_mount_path" not in applied.stderr
    response = daemon.score("cc-mount", {"data": ROWS})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["server"] == "stand-in" and answer["model_dir"] == "/models"
    assert answer["files"] == ["model_1/1/model.onnx"]
    [container] = containers(engine, daemon, "cc-mount")
    mounts = {m["Destination"]: m for m in container.attrs["Mounts"]}
    assert mounts["/models"]["RW"] is False


def test_image_only_deployment(daemon: Daemon, project: Path) -> None:
    """No model and no code: everything is in the image (tfserving's integrated example)."""
    answer = deploy(daemon, project, "cc-only", "name: dep\nendpoint_name: cc-only\n"
                    "environment:\n  image: appliance-test/cc-scorer:1\n" + indent(ROUTES))
    assert answer["server"] == "stand-in" and answer["model_dir"] is None and answer["files"] is None


def test_non_python_scoring_script_runs_in_the_image(daemon: Daemon, project: Path) -> None:
    """An image with a scoring script that is not Python (plumber.R's place, here a shell script): the
    image runs it from AML_APP_ROOT/AZUREML_ENTRY_SCRIPT; the appliance never imports it. No
    inference_config: Azure's server defaults (port 5001, /score, /)."""
    answer = deploy(daemon, project, "cc-script", (
        "name: dep\nendpoint_name: cc-script\nmodel:\n  name: rds\n  path: ./models\n"
        "code_configuration:\n  code: ./app\n  scoring_script: serve.sh\n"
        "environment:\n  image: appliance-test/cc-runner:1\n"))
    assert answer["server"] == "stand-in" and answer["entry"] == "serve.sh" and answer["path"] == "/score"
    assert answer["model_dir"] == "/var/azureml-app/azureml-models/rds/1"


def test_what_only_docker_can_run_is_refused_elsewhere(daemon: Daemon, project: Path) -> None:
    (project / "cc-bad.yml").write_text("name: cc-bad\nauth_mode: key\n")
    cases = {
        "runtime: process\nenvironment:\n  image: appliance-test/cc-scorer:1\n" + indent(ROUTES): "runtime",
        "environment:\n  image: appliance-test/cc-scorer:1\n": "needs a custom container",
        "model_mount_path: models\nenvironment:\n  image: appliance-test/cc-scorer:1\n" + indent(ROUTES):
            "absolute path",
    }
    for body, reason in cases.items():
        (project / "cc-bad-dep.yml").write_text("name: dep\nendpoint_name: cc-bad\n" + body)
        result = daemon.cli("apply", "-f", "cc-bad.yml", "-f", "cc-bad-dep.yml", cwd=project, check=False)
        assert result.returncode != 0 and reason in result.stderr, (body, result.stderr)
