"""One `process` instance: a child running `python -m appliance.scoring` on a Unix socket, with its
stdout and stderr copied, timestamped, into the instance's log file."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import Any

from appliance import children
from appliance.builder import venv
from appliance.builder.run import host_environment
from appliance.runtime import logs
from appliance.runtime.plan import LaunchPlan
from appliance.runtime.transport import HTTPClient
from appliance.scoring import collect

TAIL_LINES = 40


def worker_command(python: str | None, module: str = "appliance.scoring") -> list[str]:
    """How a worker starts: `python -m appliance.scoring` (or `module`: the batch worker) in an
    environment's venv, or in the daemon's own interpreter; in the one-file build (PyInstaller:
    `sys.frozen`, sys.executable is the binary) the binary's hidden `__worker` / `__batch` command
    (scripts/onefile_entry.py), which reuses its unpacked files."""
    if python:
        return [python, "-m", module]
    if getattr(sys, "frozen", False):
        return [sys.executable, "__batch" if module == BATCH_MODULE else "__worker"]
    return [sys.executable, "-m", module]


BATCH_MODULE = "appliance.scoring.batch"


class ProcessInstance:
    def __init__(self, name: str, plan: LaunchPlan, socket: Path, log: Path) -> None:
        self.name = name
        self.plan = plan
        self.socket = socket
        self.log = log
        self.client = HTTPClient(path=str(socket))
        self.proc: asyncio.subprocess.Process | None = None
        self.tail: list[str] = []  # last lines of output, for error reports
        self._pumps: list[asyncio.Task[None]] = []

    def environment(self) -> dict[str, str]:
        plan = self.plan
        env = host_environment() if plan.python else dict(os.environ)  # a venv's python is the machine's
        env.update(plan.environment_variables)
        env["PYTHONUNBUFFERED"] = "1"
        if plan.model_dir:
            env["AZUREML_MODEL_DIR"] = plan.model_dir
        if plan.code_dir:
            env["AML_APP_ROOT"] = plan.code_dir
        if plan.scoring_script:
            env["AZUREML_ENTRY_SCRIPT"] = plan.scoring_script
        env["APPLIANCE_MODEL_NAME"] = plan.model_name or plan.deployment
        env["APPLIANCE_MODEL_VERSION"] = plan.model_version or "1"
        env["APPLIANCE_INSTANCE"] = self.name
        if plan.data_collection:
            env[collect.ENV] = plan.data_collection
        if plan.python:  # an environment's venv: this daemon's scoring code, none of its other packages
            own = dict(plan.environment_variables).get("PYTHONPATH")
            path = venv.worker_path(self.socket.parent / "worker-path")
            env["PYTHONPATH"] = os.pathsep.join([str(path), *([own] if own else [])])
        return env

    async def start(self) -> None:
        self.socket.unlink(missing_ok=True)
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.proc = await asyncio.create_subprocess_exec(
            *worker_command(self.plan.python), "--socket", str(self.socket),
            "--parent-pid", str(os.getpid()),  # the worker ends with this daemon, even a killed one
            env=self.environment(), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True)
        children.started(self.proc.pid, "worker", self.name)  # for the next daemon, should this one be killed
        assert self.proc.stdout and self.proc.stderr
        self._pumps = [asyncio.create_task(self._pump(self.proc.stdout, "stdout")),
                       asyncio.create_task(self._pump(self.proc.stderr, "stderr"))]

    async def _pump(self, stream: asyncio.StreamReader, tag: str) -> None:
        with self.log.open("a", buffering=1) as out:
            while line := await stream.readline():
                text = line.decode(errors="replace").rstrip("\n")
                out.write(logs.line(tag, text))
                self.tail = [*self.tail[-(TAIL_LINES - 1):], text]

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def exit_code(self) -> int | None:
        return self.proc.returncode if self.proc else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def wait(self) -> int:
        assert self.proc
        code = await self.proc.wait()
        children.ended(self.proc.pid)
        await asyncio.gather(*self._pumps, return_exceptions=True)
        return code

    async def stop(self, grace: float = 5.0) -> None:
        self.client.close()
        if self.running:
            assert self.proc
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.wait(), grace)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                await self.wait()
        self.socket.unlink(missing_ok=True)

    def details(self) -> dict[str, Any]:
        return {}

    def target(self, path: str) -> str:
        return path

    async def probe(self, timeout: float) -> bool:
        """Azure's liveness/readiness route: `GET /` answers 200 when the worker serves."""
        if not self.running or not self.socket.exists():
            return False
        try:
            response = await self.client.request("GET", "/", timeout=timeout)
        except (OSError, TimeoutError):
            return False
        return response.status == 200
