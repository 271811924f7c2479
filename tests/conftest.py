"""Shared fixtures: a real `appliance up` process on a free port with its own home, and models
built by the tests themselves (scikit-learn → skl2onnx)."""

from __future__ import annotations

import gc
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from appliance.registry import Registry

ROOT = Path(__file__).resolve().parent.parent


def served_provider() -> str:
    """The provider a daemon on this machine serves ONNX with: CUDA where a GPU is usable, else the CPU."""
    import onnxruntime

    from appliance.scoring.providers import choose

    return choose(onnxruntime.get_available_providers())[0]

APPLIANCE = str(Path(sys.executable).parent / "appliance")
sys.path.insert(0, str(ROOT / "examples" / "iris-onnx"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "e2e" in item.path.parts:
            item.add_marker(pytest.mark.e2e)


def pytest_collection_finish(session: pytest.Session) -> None:
    # What collection imported and built lives to the end: out of the collector's sight, each full
    # collection walks only what tests made (on these machines a walk of the whole took ~300 ms).
    gc.freeze()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def collected_rows(folder: Path, collection: str) -> list[dict[str, Any]]:
    """A deployment's collected rows of one collection, as the data collector wrote them: Parquet, or JSON
    lines where the worker's environment has no pyarrow (an MLflow model's venv, a slim image)."""
    import json

    import pyarrow.parquet as pq

    rows: list[dict[str, Any]] = []
    for path in sorted(folder.glob(f"collection={collection}/hour=*/*")):
        if path.suffix == ".parquet":
            rows += pq.read_table(path, partitioning=None).to_pylist()
        elif path.suffix == ".jsonl":
            rows += [json.loads(line) for line in path.read_text().splitlines()]
    return rows


def wait_until(condition: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll `condition` until it returns something truthy, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class PortTaken(Exception):
    pass


class Daemon:
    """`appliance up --headless` in a child process, and the CLI pointed at it."""

    def __init__(self, home: Path, *flags: str, env: dict[str, str] | None = None) -> None:
        self.home = home
        self.flags = flags
        self.extra_env = env or {}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = home.parent / f"daemon-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "APPLIANCE_HOME": str(self.home), "APPLIANCE_URL": self.url, **self.extra_env}

    def start(self) -> Daemon:
        """Started on a free port; if another process took that port between our look and the daemon's
        bind (tests run side by side), on another."""
        for _ in range(5):
            self.proc = subprocess.Popen([APPLIANCE, "up", "--headless", "--port", str(self.port), *self.flags],
                                         env=self.env,
                                         stdout=self.log.open("ab"), stderr=subprocess.STDOUT)
            try:
                wait_until(self._healthy, 30, f"the daemon on {self.url} (log: {self.log})")
                return self
            except PortTaken:
                self.port = free_port()
                self.url = f"http://127.0.0.1:{self.port}"
        raise AssertionError(f"no free port found for the daemon (log: {self.log})")

    def _healthy(self) -> bool:
        assert self.proc
        if self.proc.poll() is not None:
            if f"port {self.port} " in self.log.read_text() and "already in use" in self.log.read_text():
                raise PortTaken
            raise AssertionError(f"the daemon exited with {self.proc.returncode}:\n{self.log.read_text()}")
        try:
            return httpx.get(f"{self.url}/api/v1/health", headers=self.admin, timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    @property
    def admin(self) -> dict[str, str]:
        token_file = self.home / "admin.token"
        return {"authorization": f"Bearer {token_file.read_text().strip()}"} if token_file.exists() else {}

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=30)

    def cli(self, *args: str, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([APPLIANCE, *args], env=self.env, cwd=cwd, capture_output=True, text=True,
                                timeout=180)
        if check and result.returncode != 0:
            raise AssertionError(f"appliance {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
        return result

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.request(method, f"{self.url}/api/v1{path}", headers=self.admin, timeout=60, **kwargs)

    def key(self, endpoint: str) -> str:
        return self.api("POST", f"/endpoints/{endpoint}/credentials").json()["primaryKey"]

    def score(self, endpoint: str, body: Any, key: str | None = None, **headers: str) -> httpx.Response:
        auth = {"authorization": f"Bearer {key if key is not None else self.key(endpoint)}"}
        return httpx.post(f"{self.url}/endpoints/{endpoint}/score", json=body, headers={**auth, **headers},
                          timeout=30)


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    d = Daemon(tmp_path / "home").start()
    yield d
    if d.proc and d.proc.poll() is None:
        d.stop()


KEY = b"k" * 32  # a home's secrets.key, for in-process registries


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """An empty home folder, for in-process tests of the registry."""
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def registry(home: Path) -> Iterator[Registry]:
    """A registry on a real DuckDB file in `home`."""
    reg = Registry(home, KEY)
    yield reg
    reg.close()


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """A model folder to register: a file, and one in a subfolder (its bytes need not be a real model)."""
    folder = tmp_path / "src" / "iris-model"
    (folder / "sub").mkdir(parents=True)
    (folder / "model.onnx").write_bytes(b"onnx-bytes")
    (folder / "sub" / "labels.txt").write_text("setosa\nversicolor\nvirginica\n")
    return folder


@pytest.fixture(scope="session")
def iris_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A freshly trained iris classifier as ONNX (input `features`, float [?, 4])."""
    from make_model import make

    return make(tmp_path_factory.mktemp("iris") / "model" / "model.onnx")


@pytest.fixture
def iris_project(tmp_path: Path, iris_onnx: Path) -> Path:
    """A folder laid out like examples/iris-onnx: model/, endpoint.yml, blue.yml."""
    project = tmp_path / "project"
    (project / "model").mkdir(parents=True)
    (project / "model" / "model.onnx").write_bytes(iris_onnx.read_bytes())
    (project / "endpoint.yml").write_text(
        "$schema: https://azuremlschemas.azureedge.net/latest/managedOnlineEndpoint.schema.json\n"
        "name: my-ep\nauth_mode: key\n")
    (project / "blue.yml").write_text(
        "$schema: https://azuremlschemas.azureedge.net/latest/managedOnlineDeployment.schema.json\n"
        "name: blue\nendpoint_name: my-ep\nmodel:\n  name: iris\n  path: ./model/\n"
        "instance_type: Standard_DS3_v2\ninstance_count: 1\n")
    return project


BASE_IMAGE = "local/python:3.11-bookworm"


@pytest.fixture(scope="session")
def docker_base_image() -> str:
    """A Debian base image with Python 3.11, made with debootstrap (no registry to pull from here)
    and reused while it exists on the engine."""
    import docker

    engine = docker.from_env()
    engine.ping()  # install.sh --test installs and starts the engine
    if not engine.images.list(name=BASE_IMAGE):
        sources = Path("/etc/apt/sources.list.d/debian.sources")
        mirror = next((ln.split()[1] for ln in sources.read_text().splitlines() if ln.startswith("URIs:")),
                      "http://deb.debian.org/debian") if sources.exists() else "http://deb.debian.org/debian"
        rootfs = Path(subprocess.run(["mktemp", "-d"], capture_output=True, text=True, check=True).stdout.strip())
        subprocess.run(["debootstrap", "--variant=minbase", "--include=python3,python3-venv,ca-certificates",
                        "bookworm", str(rootfs), mirror], check=True, capture_output=True)
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        subprocess.run(["docker", "import", "-", BASE_IMAGE], stdin=tar.stdout, check=True, capture_output=True)
        tar.wait()
        subprocess.run(["rm", "-rf", str(rootfs)], check=True)
    return BASE_IMAGE


@pytest.fixture
def docker_daemon(tmp_path: Path, docker_base_image: str) -> Iterator[Daemon]:
    d = Daemon(tmp_path / "home", "--base-image", docker_base_image).start()
    yield d
    if d.proc and d.proc.poll() is None:
        d.stop()
