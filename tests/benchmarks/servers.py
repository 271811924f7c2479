"""The servers under test, their tools and their files: install what is missing, build the model,
write the score.py and the YAML, start each server on a free 127.0.0.1 port, stop it (and what it
started) again.

(a) azmlinfsrv 1.5.1 + score.py       in a scratch venv cached under ~/.cache/appliance-bench
(b) the appliance, no-code ONNX       `appliance up`: key auth, blue/green at 90/10, request log on;
                                      the default runtime, so the model is served inside the daemon
(c) the appliance, the same score.py  the same daemon, an endpoint of its own
(d) one appliance worker, no router   `python -m appliance.scoring --port P`
(e) the floor                          floor_app.py: uvicorn + httptools + onnxruntime, nothing else
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[2]
BENCH = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("APPLIANCE_BENCH_CACHE", Path.home() / ".cache" / "appliance-bench"))
PYTHON = sys.executable
APPLIANCE = str(Path(PYTHON).parent / "appliance")
AZMLINFSRV_VERSION = "1.5.1"
BODY = b'{"data": [[5.1,3.5,1.4,0.2]]}'
ENDPOINT, SCRIPT_ENDPOINT = "bench-ep", "bench-script"

Log = Callable[[str], None]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(condition: Callable[[], Any], timeout: float, what: str, poll: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(poll)
    raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")


# -- pinning -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Pinning:
    """split: load generators on CPU 0, every server process (and its children) on CPU 1;
    client: load generators on CPU 0, servers anywhere; none: nothing pinned."""

    mode: str

    @classmethod
    def choose(cls, mode: str) -> Pinning:
        if mode != "none" and (shutil.which("taskset") is None or (os.cpu_count() or 1) < 2):
            return cls("none")
        return cls(mode)

    def server(self) -> list[str]:
        return ["taskset", "-c", "1"] if self.mode == "split" else []

    def client(self) -> list[str]:
        return ["taskset", "-c", "0"] if self.mode in ("split", "client") else []

    @property
    def spin(self) -> bool:
        """The open-loop generator may poll at 100% only where it has a core to itself."""
        return self.mode == "split"

    def describe(self) -> str:
        return {"split": "load generator pinned to CPU 0 (taskset -c 0), every server process to CPU 1 "
                         "(taskset -c 1, inherited by workers): each server gets exactly one core",
                "client": "load generator pinned to CPU 0 (taskset -c 0); servers unpinned (both cores)",
                "none": "nothing pinned: load generator and servers share all cores"}[self.mode]


# -- tools ---------------------------------------------------------------------------------------

def _run_quiet(cmd: list[str], log: Log, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    log(f"$ {' '.join(cmd)}")
    return subprocess.run(cmd, capture_output=True, text=True, **kwargs)


def ensure_wrk(log: Log) -> str:
    found = shutil.which("wrk")
    if found:
        return found
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    install = [*sudo, "apt-get", "install", "-y", "-q", "wrk"]
    if _run_quiet(install, log, env=env).returncode != 0:
        _run_quiet([*sudo, "apt-get", "update", "-q"], log, env=env)
        result = _run_quiet(install, log, env=env)
        if result.returncode != 0:
            raise RuntimeError(f"could not install wrk with apt-get:\n{result.stderr[-2000:]}")
    found = shutil.which("wrk")
    if not found:
        raise RuntimeError("apt-get installed wrk but it is not on PATH")
    return found


def _pip(venv: Path, packages: list[str], log: Log) -> None:
    result = _run_quiet([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                         *packages], log)
    if result.returncode != 0:
        raise RuntimeError(f"pip install {' '.join(packages)} failed:\n{result.stderr[-3000:]}")


def _venv(path: Path, log: Log) -> None:
    result = _run_quiet([PYTHON, "-m", "venv", "--clear", str(path)], log)
    if result.returncode != 0:
        raise RuntimeError(f"could not create a venv at {path}:\n{result.stderr}")


def code_identity(exe: str) -> str:
    """What is benchmarked, so that `--report` pools only runs of the same code. For this checkout's own
    `appliance`: its commit, and a digest of any uncommitted change to the appliance or the harness. For
    another executable (--appliance): only its path, which says nothing of the code behind it."""
    if exe != str(Path(APPLIANCE).resolve()):
        return f"{exe} (another executable: its code is not identified)"
    git = ["git", "-C", str(ROOT)]
    head = subprocess.run([*git, "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True)
    if head.returncode != 0:
        return f"appliance {importlib.metadata.version('appliance')} (not a git checkout)"
    paths = ["--", "appliance", "tests/benchmarks", "pyproject.toml"]
    changes = hashlib.sha256(subprocess.run([*git, "diff", "HEAD", *paths], capture_output=True).stdout)
    untracked = subprocess.run([*git, "ls-files", "-z", "--others", "--exclude-standard", *paths],
                               capture_output=True).stdout.split(b"\0")
    for name in filter(None, untracked):
        changes.update(name + b"\0" + (ROOT / name.decode()).read_bytes())
    clean = changes.digest() == hashlib.sha256().digest()
    return head.stdout.strip() + ("" if clean else f" with uncommitted changes {changes.hexdigest()[:12]}")


def onnxruntime_version() -> str | None:
    for dist in ("onnxruntime", "onnxruntime-gpu"):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def ensure_azmlinfsrv(log: Log) -> Path:
    """A scratch venv with azmlinfsrv 1.5.1, inference-schema and the appliance's onnxruntime
    version (CPU build); made once, then reused. Returns its python."""
    venv = CACHE / f"azmlinfsrv-{AZMLINFSRV_VERSION}"
    python = venv / "bin" / "python"
    marker = venv / ".bench-ready"
    if marker.exists() and python.exists():
        return python
    log(f"creating the azmlinfsrv venv in {venv} (once)")
    venv.parent.mkdir(parents=True, exist_ok=True)
    _venv(venv, log)
    ort = onnxruntime_version()
    base = [f"azureml-inference-server-http=={AZMLINFSRV_VERSION}", "inference-schema", "numpy"]
    try:
        _pip(venv, [*base, f"onnxruntime=={ort}" if ort else "onnxruntime"], log)
    except RuntimeError:
        if not ort:
            raise
        _pip(venv, [*base, "onnxruntime"], log)  # that exact version has no CPU build here: the newest
    marker.write_text("ok\n")
    return python


def ensure_py_spy(log: Log) -> str:
    found = shutil.which("py-spy")
    if found:
        return found
    venv = CACHE / "tools"
    exe = venv / "bin" / "py-spy"
    if not exe.exists():
        _venv(venv, log)
        _pip(venv, ["py-spy"], log)
    return str(exe)


# -- files ---------------------------------------------------------------------------------------

SCORE_PY = '''"""The benchmark's score.py: what an Azure user writes for an ONNX model."""
import json
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort

MARK = "v1"
session = None
input_name = None
output_names = None


def init():
    global session, input_name, output_names
    model_dir = Path(os.environ["AZUREML_MODEL_DIR"])
    path = sorted(model_dir.rglob("*.onnx"))[0] if model_dir.is_dir() else model_dir
    opts = ort.SessionOptions()
    # The no-code path's settings (one thread, no spinning): the comparison is about serving.
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    output_names = [o.name for o in session.get_outputs()]


def run(raw_data):
    data = np.asarray(json.loads(raw_data)["data"], dtype=np.float32)
    results = session.run(None, {input_name: data})
    return {name: value.tolist() for name, value in zip(output_names, results)}
'''

ENDPOINT_SCHEMA = "$schema: https://azuremlschemas.azureedge.net/latest/managedOnlineEndpoint.schema.json\n"
DEPLOYMENT_SCHEMA = "$schema: https://azuremlschemas.azureedge.net/latest/managedOnlineDeployment.schema.json\n"


def endpoint_yaml(name: str, traffic: dict[str, int] | None = None) -> str:
    text = f"{ENDPOINT_SCHEMA}name: {name}\nauth_mode: key\n"
    if traffic:
        text += "traffic:\n" + "".join(f"  {k}: {v}\n" for k, v in traffic.items())
    return text


def deployment_yaml(name: str, endpoint: str, script: bool = False, extra: str = "") -> str:
    text = (f"{DEPLOYMENT_SCHEMA}name: {name}\nendpoint_name: {endpoint}\nmodel:\n  name: iris\n  path: ./model/\n"
            "instance_type: Standard_DS3_v2\ninstance_count: 1\n")
    if script:
        text += "code_configuration:\n  code: ./code/\n  scoring_script: score.py\n"
    return text + extra


@dataclass
class Project:
    root: Path
    model: Path  # the .onnx file
    model_dir: Path
    code_dir: Path
    score_py: Path


def prepare_project(root: Path, request_settings: str = "") -> Project:
    """model/model.onnx (examples/iris-onnx/make_model.py), code/score.py and the YAML files."""
    sys.path.insert(0, str(ROOT / "examples" / "iris-onnx"))
    from make_model import make

    model = make(root / "model" / "model.onnx")
    code = root / "code"
    code.mkdir(parents=True, exist_ok=True)
    (code / "score.py").write_text(SCORE_PY)
    extra = f"request_settings:\n{request_settings}" if request_settings else ""
    files = {
        "endpoint.yml": endpoint_yaml(ENDPOINT, {"blue": 90, "green": 10, "shadow": 0}),
        "blue.yml": deployment_yaml("blue", ENDPOINT, extra=extra),
        "green.yml": deployment_yaml("green", ENDPOINT, extra=extra),
        "shadow.yml": deployment_yaml("shadow", ENDPOINT, extra=extra),  # 0% live: the mirror target
        "shadow-process.yml": deployment_yaml("shadow", ENDPOINT, extra=extra + "runtime: process\n"),
        "script-endpoint.yml": endpoint_yaml(SCRIPT_ENDPOINT, {"main": 100}),
        "script.yml": deployment_yaml("main", SCRIPT_ENDPOINT, script=True, extra=extra),
    }
    for name, text in files.items():
        (root / name).write_text(text)
    return Project(root, model, model.parent, code, code / "score.py")


# -- processes -----------------------------------------------------------------------------------

class Proc:
    """A child process in a session of its own, its output in a log file; stop() ends it and
    whatever it started."""

    def __init__(self, name: str, cmd: list[str], log: Path, env: dict[str, str] | None = None,
                 cwd: Path | None = None) -> None:
        self.name = name
        self.log = log
        log.parent.mkdir(parents=True, exist_ok=True)
        self.popen = subprocess.Popen(cmd, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=log.open("ab"),
                                      stderr=subprocess.STDOUT, start_new_session=True)
        self.pid = self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def check(self) -> None:
        if not self.alive():
            tail = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
            raise RuntimeError(f"{self.name} exited with {self.popen.returncode}; log {self.log}:\n{tail}")

    def descendants(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def stop(self, timeout: float = 20) -> None:
        started = self.descendants()
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        for child in started:  # only processes this one started, by pid
            try:
                if child.is_running():
                    child.terminate()
                    child.wait(3)
            except psutil.NoSuchProcess:
                pass
            except psutil.TimeoutExpired:
                child.kill()


def _score_ok(url: str, headers: dict[str, str], body: bytes = BODY) -> bool:
    try:
        r = httpx.post(url, content=body, headers={"content-type": "application/json", **headers}, timeout=2)
    except httpx.TransportError:
        return False
    return r.status_code == 200


@dataclass
class Target:
    """Where a load generator sends its requests."""

    name: str
    url: str
    headers: dict[str, str]
    pids: dict[str, int]  # role → pid, for profiling and reports
    body: bytes = BODY  # what it is sent


def wait_ready(proc: Proc, url: str, headers: dict[str, str], timeout: float = 60, body: bytes = BODY) -> None:
    def ready() -> bool:
        proc.check()
        return _score_ok(url, headers, body)

    wait_until(ready, timeout, f"{proc.name} to answer 200 on {url} (log: {proc.log})", poll=0.05)


def start_azmlinfsrv(python: Path, project: Project, logs: Path, pin: Pinning) -> tuple[Proc, Target]:
    port = free_port()
    # azmlinfsrv binds 0.0.0.0 (hard-coded); the same server, bound to loopback only:
    launcher = ("from azureml_inference_server_http import amlserver as s; s.DEFAULT_HOST = '127.0.0.1'; s.run()")
    env = {**os.environ, "AML_APP_ROOT": str(project.code_dir), "PYTHONUNBUFFERED": "1"}
    for var in ("AZUREML_ENTRY_SCRIPT", "AZUREML_MODEL_DIR", "APPLIANCE_HOME", "APPLIANCE_URL"):
        env.pop(var, None)
    proc = Proc("azmlinfsrv", [*pin.server(), str(python), "-c", launcher, "--entry_script", str(project.score_py),
                               "--model_dir", str(project.model_dir), "--port", str(port)],
                logs / "azmlinfsrv.log", env=env, cwd=project.code_dir)
    url = f"http://127.0.0.1:{port}/score"
    wait_ready(proc, url, {})
    workers = {f"gunicorn-worker-{i}": p.pid for i, p in enumerate(proc.descendants())}
    return proc, Target("azmlinfsrv", url, {}, {"gunicorn-master": proc.pid, **workers})


def start_worker(project: Project, logs: Path, pin: Pinning) -> tuple[Proc, Target]:
    port = free_port()
    env = {**os.environ, "AZUREML_MODEL_DIR": str(project.model_dir), "APPLIANCE_MODEL_NAME": "iris",
           "APPLIANCE_MODEL_VERSION": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("AZUREML_ENTRY_SCRIPT", None)
    proc = Proc("worker", [*pin.server(), PYTHON, "-m", "appliance.scoring", "--port", str(port)],
                logs / "worker.log", env=env, cwd=ROOT)
    url = f"http://127.0.0.1:{port}/score"
    wait_ready(proc, url, {})
    return proc, Target("worker", url, {}, {"worker": proc.pid})


def start_floor(project: Project, logs: Path, pin: Pinning) -> tuple[Proc, Target]:
    port = free_port()
    proc = Proc("floor", [*pin.server(), PYTHON, str(BENCH / "floor_app.py"), "--port", str(port),
                          "--model", str(project.model)], logs / "floor.log", cwd=ROOT)
    url = f"http://127.0.0.1:{port}/score"
    wait_ready(proc, url, {})
    return proc, Target("floor", url, {}, {"floor": proc.pid})


class Daemon:
    """`appliance up --headless` on a free port with a home of its own; the CLI pointed at it."""

    def __init__(self, name: str, work: Path, pin: Pinning, request_log: bool = True, watch: bool = False,
                 exe: str = APPLIANCE) -> None:
        self.name = name
        self.exe = exe
        self.home = work / f"home-{name}"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = work / "logs" / f"daemon-{name}.log"
        self.pin = pin
        self.request_log = request_log
        self.watch = watch
        self.proc: Proc | None = None
        # One client kept: httpx.request builds a client (and its TLS context) per call, ~20 ms of CPU,
        # which a scenario that follows a job every 0.1 s would take from the job it measures.
        self._client = httpx.Client()

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "APPLIANCE_HOME": str(self.home), "APPLIANCE_URL": self.url}

    def start(self) -> Daemon:
        self._client = httpx.Client()
        cmd = [*self.pin.server(), self.exe, "up", "--headless", "--port", str(self.port), "--home", str(self.home)]
        if not self.request_log:
            cmd.append("--no-request-log")
        if self.watch:
            cmd.append("--watch")
        self.proc = Proc(f"daemon {self.name}", cmd, self.log, env=self.env, cwd=ROOT)
        wait_until(self._healthy, 60, f"the daemon on {self.url} (log: {self.log})", poll=0.02)
        return self

    def _healthy(self) -> bool:
        assert self.proc
        self.proc.check()
        try:
            return self.api("GET", "/health", timeout=1).status_code == 200
        except (httpx.TransportError, FileNotFoundError):
            return False

    @property
    def admin(self) -> dict[str, str]:
        return {"authorization": f"Bearer {(self.home / 'admin.token').read_text().strip()}"}

    def api(self, method: str, path: str, timeout: float = 60, **kwargs: Any) -> httpx.Response:
        return self._client.request(method, f"{self.url}/api/v1{path}", headers=self.admin, timeout=timeout,
                                    **kwargs)

    def cli(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([self.exe, *args], env=self.env, cwd=cwd, capture_output=True, text=True,
                                timeout=300)
        if result.returncode != 0:
            raise RuntimeError(f"appliance {' '.join(args)} exited {result.returncode}:\n{result.stderr[-3000:]}")
        return result

    def key(self, endpoint: str) -> str:
        response = self.api("POST", f"/endpoints/{endpoint}/credentials")
        response.raise_for_status()
        return response.json()["primaryKey"]

    def target(self, name: str, endpoint: str, body: bytes = BODY) -> Target:
        headers = {"authorization": f"Bearer {self.key(endpoint)}"}
        url = f"{self.url}/endpoints/{endpoint}/score"
        assert self.proc
        wait_ready(self.proc, url, headers, body=body)
        return Target(name, url, headers, {"daemon": self.proc.pid, **self.worker_pids()}, body)

    def worker_pids(self) -> dict[str, int]:
        """Instance name (APPLIANCE_INSTANCE) → pid of its worker process."""
        assert self.proc
        found: dict[str, int] = {}
        for child in self.proc.descendants():
            try:
                instance = child.environ().get("APPLIANCE_INSTANCE")
            except (psutil.AccessDenied, psutil.NoSuchProcess):
                continue
            if instance:
                found[instance] = child.pid
        return found

    def stop(self) -> None:
        self._client.close()
        if self.proc:
            self.proc.stop()
