"""Differential test: the same Azure score.py files under the real azureml-inference-server-http 1.5.1
(`azmlinfsrv`, in a venv this session installs) and under the appliance (a real daemon, requests through
the router with the endpoint key, pinned with `azureml-model-deployment`), request by request.

Compared: status, body (parsed when JSON) and every header azmlinfsrv sends (content-type,
x-ms-run-function-failed, x-ms-server-version, x-ms-client-request-id, TraceId, the script's own), except
the values of x-request-id/x-ms-request-id (the router sets them), of
x-ms-run-fn-exec-ms (a duration; its presence is compared) and the transport's (date, server, connection).
Where the router differs on purpose: a script's non-200 answer to /score reaches the client as 424 with
the script's status in `ms-azureml-model-error-statuscode` (Azure's managed endpoints do the same); the
script's status, body and headers are compared there. What the router hides (request-id values, 431,
HEAD, 404/405 of other paths and methods, SCORING_TIMEOUT_MS) is compared worker to azmlinfsrv directly.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import Daemon, free_port, wait_until

SCRIPTS = {
    "plain": """
def init():
    pass

def run(raw_data):
    return {"raw_data": raw_data, "length": len(raw_data)}
""",
    "headers": """
def init():
    pass

def run(raw_data, request_headers):
    return {"raw_data": raw_data, "custom": request_headers.get("X-Custom-Header"),
            "trace": request_headers.get("Traceid"), "client": request_headers.get("X-Ms-Client-Request-Id")}
""",
    "rawhttp": """
from azureml.contrib.services.aml_request import AMLRequest, rawhttp
from azureml.contrib.services.aml_response import AMLResponse

def init():
    pass

@rawhttp
def run(request: AMLRequest):
    if request.method == "GET":
        return AMLResponse({"args": request.args.to_dict(flat=False)}, 200, json_str=True)
    if request.method == "POST":
        body = request.get_data()
        if body == b"fail":
            return AMLResponse("failed on purpose", 503)
        return AMLResponse(body, 201, {"Content-Type": "application/octet-stream", "X-Scored-By": "rawhttp, v1"})
    return {"method": request.method}  # OPTIONS reaches run() too under @rawhttp
""",
    "schema": """
from inference_schema.parameter_types.standard_py_parameter_type import StandardPythonParameterType
from inference_schema.schema_decorators import input_schema, output_schema

def init():
    pass

@input_schema("values", StandardPythonParameterType([1.0, 2.0]))
@input_schema("factor", StandardPythonParameterType(2))
@output_schema(StandardPythonParameterType({"scaled": [2.0, 4.0]}))
def run(values, factor):
    return {"scaled": [v * factor for v in values]}
""",
    "raises": """
def init():
    pass

def run(raw_data):
    raise ValueError("broken on purpose")
""",
}
BROKEN_INIT = """
def init():
    raise RuntimeError("cannot load the model: weights.bin is missing")

def run(raw_data):
    return raw_data
"""
ECHO = """
def init():
    pass

def run(raw_data, request_headers):
    return {"raw_data": raw_data, "headers": {k: v for k, v in request_headers.items() if k != "Host"}}
"""
SLOW = """
import time

def init():
    pass

def run(raw_data):
    deadline = time.monotonic() + 0.6
    try:
        while time.monotonic() < deadline:
            pass
    except TimeoutError:  # SCORING_TIMEOUT_MS=300 interrupts the loop
        if raw_data == "catch":
            return {"caught": True}
        raise
    return {"finished": True}
"""
JSON_BODY = b'{"values": [1, 2.5], "factor": 3}'


@dataclass(frozen=True)
class Req:
    method: str
    path: str
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


REQUESTS = [
    Req("POST", "/score", JSON_BODY, {"content-type": "application/json", "x-custom-header": "hello",
                                      "TraceId": "trace-1", "x-ms-client-request-id": "client-1"}),
    Req("POST", "/score", b'{"values": [1, 2.5]}', {"content-type": "application/json",
                                                     "x-ms-request-id": "legacy-1"}),  # a key missing
    Req("POST", "/score", b"hello world", {"content-type": "text/plain"}),  # not JSON
    Req("POST", "/score", b"fail", {"content-type": "text/plain"}),
    Req("POST", "/score", b"\xff\xfe", {"content-type": "application/octet-stream"}),  # not UTF-8
    Req("GET", "/score?values=[1,2]&factor=2&tag=a&tag=b&empty="),
    Req("OPTIONS", "/score"),
    Req("GET", "/"),
    Req("GET", "/swagger.json"),
    Req("GET", "/swagger.json?version=3"),
    Req("GET", "/swagger.json?version=3.1"),
    Req("GET", "/swagger.json?version=4"),
]
# Straight to the worker: what the router would hide.
WORKER_REQUESTS = [
    Req("POST", "/score", b"{}", {"x-request-id": "r-1", "x-ms-client-request-id": "c-1", "TraceId": "t-1"}),
    Req("POST", "/score", b"{}", {"x-request-id": "r-2", "x-ms-request-id": "legacy-2"}),
    Req("GET", "/score?a=1&a=[2]", b"", {"x-request-id": "r-3", "x_dropped": "by gunicorn", "x-dup": "1"}),
    Req("POST", "/score", b"{}", {"x-request-id": "r" * 101}),
    Req("POST", "/score", b"{}", {"x-request-id": "r-4", "x-ms-client-request-id": "c" * 101}),
    Req("HEAD", "/score", b"", {"x-request-id": "r-5"}),
    Req("OPTIONS", "/", b"", {"x-request-id": "r-6"}),
    Req("HEAD", "/", b"", {"x-request-id": "r-7"}),
    Req("PUT", "/score"),
    Req("POST", "/"),
    Req("GET", "/nowhere"),
]
SLOW_REQUESTS = [Req("POST", "/score", b"catch", {"x-request-id": "r-8"}),
                 Req("POST", "/score", b"let", {"x-request-id": "r-9"})]
# Set by the transport or the router, not by the server under test.
VOLATILE = {"date", "server", "connection", "x-request-id", "x-ms-request-id", "x-ms-run-fn-exec-ms"}
ROUTER = {"azureml-model-deployment", "ms-azureml-model-error-statuscode", "ms-azureml-model-error-reason"}


def _install(venv: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                          "azureml-inference-server-http==1.5.1", "inference-schema==1.8"],
                         capture_output=True, text=True, timeout=600)
    assert pip.returncode == 0, f"pip install of azureml-inference-server-http failed:\n{pip.stdout}{pip.stderr}"
    return venv / "bin" / "azmlinfsrv"


@pytest.fixture(scope="session")
def azmlinfsrv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Future[Path]]:
    """The reference server's command, installed in the background while the daemon starts."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        yield pool.submit(_install, tmp_path_factory.mktemp("azmlinfsrv") / "venv")


class Server:
    """A server under test on a free port, serving `score.py` from the folder `code`."""

    def __init__(self, argv: list[str], code: Path, label: str, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = code.parent / f"{code.name}-{label}.log"
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("APPLIANCE_", "AZUREML_", "AML_"))}
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen([*argv, "--port", str(self.port)], cwd=code, stdout=out,
                                         stderr=subprocess.STDOUT, env={**clean, "AML_APP_ROOT": str(code), **env})

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.log.name}: exited with {self.proc.returncode}:\n{self.log.read_text()}")
        try:
            return httpx.get(self.url + "/", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)


def reference(command: Path, code: Path, **env: str) -> Server:
    """`azmlinfsrv --entry_script score.py` in the script's folder, as its documentation runs it."""
    runtime = code.parent / f"{code.name}-run"  # gunicorn's control socket: one per server
    runtime.mkdir()
    return Server([str(command), "--entry_script", "score.py"], code, "azmlinfsrv", XDG_RUNTIME_DIR=str(runtime),
                  **env)


def worker(code: Path, **env: str) -> Server:
    """The appliance's worker on its own, as the process runtime starts it (on TCP instead of a socket)."""
    return Server([sys.executable, "-m", "appliance.scoring"], code, "worker", AZUREML_ENTRY_SCRIPT="score.py", **env)


def _send(base: str, req: Req, extra: dict[str, str]) -> httpx.Response:
    return httpx.request(req.method, base + req.path, content=req.body, headers={**req.headers, **extra},
                         timeout=30)


def _body(response: httpx.Response) -> Any:
    if response.content and response.headers.get("content-type", "").startswith("application/json"):
        return response.json()
    return response.content


def _headers(response: httpx.Response, ignore: set[str]) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k not in ignore}


def _compare(what: str, req: Req, ref: httpx.Response, app: httpx.Response) -> None:
    status = app.status_code
    if req.path.startswith("/score") and ref.status_code != 200:
        # The router answers a script's non-200 with 424 and the script's status in a header.
        assert status == 424, (what, status, app.text)
        status = int(app.headers["ms-azureml-model-error-statuscode"])
    assert status == ref.status_code, (what, ref.status_code, ref.text, status, app.text)
    assert _body(app) == _body(ref), what
    assert _headers(app, VOLATILE | ROUTER) == _headers(ref, VOLATILE), what
    assert ("x-ms-run-fn-exec-ms" in app.headers) == ("x-ms-run-fn-exec-ms" in ref.headers), what
    assert app.headers["azureml-model-deployment"] == what.split()[0]


def test_score_scripts_behave_as_under_azmlinfsrv(daemon: Daemon, tmp_path: Path,
                                                   azmlinfsrv: Future[Path]) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "endpoint.yml").write_text("name: parity\nauth_mode: key\n")
    files = ["endpoint.yml"]
    for name, source in {**SCRIPTS, "badinit": BROKEN_INIT}.items():
        (project / name).mkdir()
        (project / name / "score.py").write_text(source.lstrip())
        if name == "plain":  # a user's own swagger.json wins over the generated version 2
            (project / name / "swagger.json").write_text('{"swagger": "2.0", "info": {"title": "mine"}}')
        (project / f"{name}.yml").write_text(
            f"name: {name}\nendpoint_name: parity\ncode_configuration:\n  code: ./{name}\n  scoring_script: score.py\n"
            "instance_type: Standard_DS3_v2\ninstance_count: 1\n")
        files += ["-f", f"{name}.yml"]
    # The broken init fails the apply; the other deployments serve.
    assert daemon.cli("apply", "-f", *files, cwd=project, check=False).returncode != 0

    command = azmlinfsrv.result()
    references = {name: reference(command, project / name) for name in [*SCRIPTS, "badinit"]}
    try:
        for name in SCRIPTS:
            wait_until(references[name].ready, 60, f"azmlinfsrv serving {name} (log: {references[name].log})")

        key = daemon.key("parity")
        for name in SCRIPTS:
            for req in REQUESTS:
                app = _send(f"{daemon.url}/endpoints/parity", req,
                            {"authorization": f"Bearer {key}", "azureml-model-deployment": name})
                _compare(f"{name} {req.method} {req.path}", req, _send(references[name].url, req, {}), app)

        # A failing init(): azmlinfsrv exits with 3 and logs why; the deployment shows Failed with why.
        broken = references["badinit"]
        assert broken.proc.wait(timeout=60) == 3
        assert "RuntimeError: cannot load the model: weights.bin is missing" in broken.log.read_text()
        shown = json.loads(daemon.cli("deployment", "show", "parity", "badinit", "-o", "json").stdout)
        assert shown["provisioning_state"] == "Failed", shown
        [instance] = shown["instances"]
        assert instance["state"] == "failed" and "exit code 3" in instance["error"]
        assert "RuntimeError: cannot load the model: weights.bin is missing" in instance["error"]
    finally:
        for ref in references.values():
            ref.stop()


def test_worker_headers_and_errors_match_azmlinfsrv(tmp_path: Path, azmlinfsrv: Future[Path]) -> None:
    cases = {"echo": (ECHO, WORKER_REQUESTS), "rawhttp": (SCRIPTS["rawhttp"], WORKER_REQUESTS),
             "slow": (SLOW, SLOW_REQUESTS)}
    for name, (source, _) in cases.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "score.py").write_text(source.lstrip())
    timeout = {"SCORING_TIMEOUT_MS": "300"}
    workers = {name: worker(tmp_path / name, **timeout) for name in cases}
    command = azmlinfsrv.result()
    servers = [*workers.values()]
    try:
        references = {name: reference(command, tmp_path / name, **timeout) for name in cases}
        servers += references.values()
        for server in servers:
            wait_until(server.ready, 60, f"{server.log.name} to serve")
        for name, (_, requests) in cases.items():
            for req in requests:
                what = f"{name} {req.method} {req.path} {req.headers}"
                ref, app = _send(references[name].url, req, {}), _send(workers[name].url, req, {})
                assert app.status_code == ref.status_code, (what, ref.text, app.text)
                assert _body(app) == _body(ref), what
                # Every header, request ids included; Allow is a set (its order is random in azmlinfsrv).
                volatile = {"date", "server", "connection", "x-ms-run-fn-exec-ms", "allow"}
                assert _headers(app, volatile) == _headers(ref, volatile), what
                assert set(app.headers.get("allow", "").split(", ")) == set(ref.headers.get("allow", "").split(", "))
                assert ("x-ms-run-fn-exec-ms" in app.headers) == ("x-ms-run-fn-exec-ms" in ref.headers), what
        # Without ids from the client, both make one up and send it back in both headers.
        for server in (references["echo"], workers["echo"]):
            made = httpx.post(server.url + "/score", content=b"{}").headers
            assert made["x-request-id"] == made["x-ms-request-id"] and len(made["x-request-id"]) == 36
    finally:
        for server in servers:
            server.stop()
