"""The one-file build (scripts/build-onefile.sh → dist/appliance, PyInstaller): `appliance up` in a
container made from a bare Debian root without any Python serves the iris example, applied from the
host through the same binary; a scoring script there fails clearly (no python3 to make its venv), and
on the host, which has one, it is served from a venv of that python3.

The build is kept between runs (dist/.appliance.stamp: rebuilt only when the sources or the venv
change), and so is the bare Debian image."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import ROOT, Daemon, free_port, wait_until

BARE_IMAGE = "local/debian:bookworm-bare"  # debootstrap minbase: no python3 at all
BINARY = ROOT / "dist" / "appliance"
IRIS = ROOT / "examples" / "iris-onnx"
SCORE_PY = "import json\n\ndef init():\n    pass\n\ndef run(raw_data):\n    return {'echo': json.loads(raw_data)}\n"


def docker(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check, timeout=timeout)


@pytest.fixture(scope="session")
def onefile() -> Path:
    build = subprocess.run([str(ROOT / "scripts" / "build-onefile.sh")], capture_output=True, text=True,
                           timeout=1500)
    assert build.returncode == 0, build.stderr[-4000:]
    assert os.access(BINARY, os.X_OK)
    return BINARY


@pytest.fixture(scope="session")
def bare_debian() -> str:
    if shutil.which("docker") is None or docker("info", check=False).returncode != 0:
        pytest.fail("no Docker engine: ./install.sh --test installs and starts one")
    if docker("image", "inspect", BARE_IMAGE, check=False).returncode != 0:
        sources = Path("/etc/apt/sources.list.d/debian.sources")
        mirror = next((ln.split()[1] for ln in sources.read_text().splitlines() if ln.startswith("URIs:")),
                      "http://deb.debian.org/debian") if sources.exists() else "http://deb.debian.org/debian"
        rootfs = Path(subprocess.run(["mktemp", "-d"], capture_output=True, text=True, check=True).stdout.strip())
        try:
            subprocess.run(["debootstrap", "--variant=minbase", "bookworm", str(rootfs), mirror], check=True,
                           capture_output=True, timeout=900)
            tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
            subprocess.run(["docker", "import", "-", BARE_IMAGE], stdin=tar.stdout, check=True, capture_output=True)
            tar.wait()
        finally:
            subprocess.run(["rm", "-rf", str(rootfs)], check=True)
    return BARE_IMAGE


class Container:
    """`appliance up --headless --host 0.0.0.0` in the bare image, its port published on 127.0.0.1, its
    home a folder of the host (where the admin token is read); `mounts` are seen at the same paths."""

    def __init__(self, image: str, binary: Path, home: Path, mounts: list[Path]) -> None:
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.name = f"appliance-onefile-{self.port}"
        home.mkdir(parents=True, exist_ok=True)
        volumes = [f"{binary}:/usr/local/bin/appliance:ro", f"{home}:/appliance-home",
                   *(f"{m}:{m}:ro" for m in mounts)]
        docker("run", "-d", "--rm", "--name", self.name, "-p", f"127.0.0.1:{self.port}:8080",
               "-e", "APPLIANCE_HOME=/appliance-home", *(a for v in volumes for a in ("-v", v)),
               image, "appliance", "up", "--headless", "--host", "0.0.0.0", "--port", "8080")

    def healthy(self) -> bool:
        if docker("inspect", "-f", "{{.State.Running}}", self.name, check=False).stdout.strip() != "true":
            raise AssertionError(f"the container exited:\n{self.logs()}")
        try:
            return httpx.get(f"{self.url}/api/v1/health", headers=self.admin, timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    @property
    def admin(self) -> dict[str, str]:
        token = self.home / "admin.token"
        return {"authorization": f"Bearer {token.read_text().strip()}"} if token.exists() else {}

    def logs(self) -> str:
        result = docker("logs", self.name, check=False)
        return result.stdout + result.stderr

    def cli(self, binary: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        """The binary on the host, pointed at the container's daemon with its home's admin token."""
        env = {**os.environ, "APPLIANCE_HOME": str(self.home), "APPLIANCE_URL": self.url}
        return subprocess.run([str(binary), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=300)

    def api(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        return httpx.request(method, f"{self.url}/api/v1{path}", headers=self.admin, timeout=60, **kwargs)

    def stop(self) -> None:
        docker("rm", "-f", self.name, check=False)


@pytest.fixture
def container(onefile: Path, bare_debian: str, tmp_path: Path) -> Iterator[Container]:
    project = tmp_path / "project"
    (project / "code").mkdir(parents=True)
    (project / "code" / "score.py").write_text(SCORE_PY)
    (project / "script.yml").write_text("name: script\nendpoint_name: my-ep\ncode_configuration:\n"
                                        "  code: ./code/\n  scoring_script: score.py\ninstance_count: 1\n")
    box = Container(bare_debian, onefile, tmp_path / "home", [IRIS, project])
    box.project = project  # type: ignore[attr-defined]
    try:
        wait_until(box.healthy, 90, f"the daemon in container {box.name}")
        yield box
    finally:
        box.stop()


def test_binary_serves_iris_where_there_is_no_python(container: Container, onefile: Path, bare_debian: str) -> None:
    no_python = docker("run", "--rm", bare_debian, "sh", "-c", "ls /usr/bin/python* /usr/local/bin/python* 2>&1; "
                       "command -v python3 || echo none")
    assert no_python.stdout.strip().endswith("none"), no_python.stdout

    applied = container.cli(onefile, "apply", "-f", "endpoint.yml", "-f", "blue.yml", cwd=IRIS)
    assert applied.returncode == 0, applied.stderr + container.logs()
    key = container.api("POST", "/endpoints/my-ep/credentials").json()["primaryKey"]
    body = json.loads((IRIS / "sample-request.json").read_text())
    scored = httpx.post(f"{container.url}/endpoints/my-ep/score", json=body,
                        headers={"authorization": f"Bearer {key}"}, timeout=30)
    assert scored.status_code == 200, scored.text
    assert scored.json()["label"] == [0, 2], scored.json()

    # A scoring script needs a Python for its venv, and this machine has none: Failed, saying so.
    script = container.cli(onefile, "apply", "-f", "script.yml", cwd=container.project)  # type: ignore[attr-defined]
    assert script.returncode != 0
    shown = container.api("GET", "/endpoints/my-ep/deployments/script").json()
    assert shown["provisioning_state"] == "Failed", shown
    assert "needs a Python on this machine and there is none" in shown["error"], shown
    assert "no python3 on PATH" in shown["error"] and "apt-get install python3 python3-venv" in shown["error"]
    # ... and the iris deployment is untouched.
    again = httpx.post(f"{container.url}/endpoints/my-ep/score", json=body,
                       headers={"authorization": f"Bearer {key}", "azureml-model-deployment": "blue"}, timeout=30)
    assert again.status_code == 200 and again.json()["label"] == [0, 2]


def test_binary_runs_a_scoring_script_in_a_venv_of_the_machines_python(onefile: Path, tmp_path: Path) -> None:
    """On the host, which has python3: the binary makes the script's venv with it, and serves it from
    a worker there (and a no-code ONNX `runtime: process` deployment from its hidden `__worker`)."""
    python3 = shutil.which("python3")
    assert python3, "the host has a python3"
    project = tmp_path / "project"
    (project / "code").mkdir(parents=True)
    (project / "code" / "score.py").write_text(SCORE_PY)
    (project / "endpoint.yml").write_text("name: my-ep\nauth_mode: key\n")
    (project / "script.yml").write_text("name: script\nendpoint_name: my-ep\ncode_configuration:\n"
                                        "  code: ./code/\n  scoring_script: score.py\ninstance_count: 1\n")
    (project / "onnx.yml").write_text(f"name: onnx\nendpoint_name: my-ep\nmodel:\n  path: {IRIS}/model/model.onnx\n"
                                      "instance_count: 1\n")
    import conftest

    saved = conftest.APPLIANCE
    conftest.APPLIANCE = str(onefile)  # the Daemon helper, running the binary
    try:
        daemon = Daemon(tmp_path / "home", "--runtime", "process").start()
        try:
            started = time.monotonic()
            daemon.cli("apply", "-f", "endpoint.yml", "-f", "script.yml", "-f", "onnx.yml", cwd=project)
            build = (daemon.home / "logs" / "my-ep" / "script" / "build.log").read_text()
            assert "creating the venv" in build or "building environment venv" in build, build
            scored = daemon.score("my-ep", {"a": 1}, **{"azureml-model-deployment": "script"})
            assert scored.status_code == 200 and scored.json() == {"echo": {"a": 1}}, scored.text
            shown = daemon.api("GET", "/endpoints/my-ep/deployments/script").json()
            assert shown["provisioning_state"] == "Succeeded", shown
            onnx = daemon.score("my-ep", json.loads((IRIS / "sample-request.json").read_text()),
                                **{"azureml-model-deployment": "onnx"})
            assert onnx.status_code == 200 and onnx.json()["label"] == [0, 2], onnx.text
            print(f"score.py venv built and served in {time.monotonic() - started:.0f} s")
        finally:
            daemon.stop()
    finally:
        conftest.APPLIANCE = saved


def test_uv_tool_install_gives_a_working_appliance(tmp_path: Path) -> None:
    """`uv tool install .` (uv from PyPI, a dev dependency): its `appliance` serves the iris example.
    Uses uv's cache (~/.cache/uv), so only a first run downloads the dependencies."""
    uv = Path(sys.executable).parent / "uv"
    assert uv.exists(), "uv is a dev dependency (pip install -e '.[dev]')"
    env = {**os.environ, "UV_TOOL_DIR": str(tmp_path / "tools"), "UV_TOOL_BIN_DIR": str(tmp_path / "bin"),
           "SSL_CERT_FILE": os.environ.get("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt")}
    installed = subprocess.run([str(uv), "tool", "install", "--native-tls", "--python", sys._base_executable,
                                str(ROOT)], env=env, capture_output=True, text=True, timeout=900)
    assert installed.returncode == 0, installed.stderr[-3000:]
    exe = tmp_path / "bin" / "appliance"
    assert exe.exists(), installed.stderr

    import conftest

    saved = conftest.APPLIANCE
    conftest.APPLIANCE = str(exe)
    try:
        daemon = Daemon(tmp_path / "home").start()
        try:
            daemon.cli("apply", "-f", "endpoint.yml", "-f", "blue.yml", cwd=IRIS)
            scored = daemon.score("my-ep", json.loads((IRIS / "sample-request.json").read_text()))
            assert scored.status_code == 200 and scored.json()["label"] == [0, 2], scored.text
        finally:
            daemon.stop()
    finally:
        conftest.APPLIANCE = saved
