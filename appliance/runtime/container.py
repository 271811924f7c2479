"""One `docker` instance: a container from the deployment's image, model and code bind-mounted
read-only, its port published on 127.0.0.1 only, labelled with its home, endpoint and deployment,
and its output copied, timestamped, into the instance's log file."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import threading
from pathlib import Path
from typing import Any

import docker
import docker.errors
from docker.types import DeviceRequest

from appliance.builder import dockerfile
from appliance.runtime import logs
from appliance.runtime.plan import LaunchPlan
from appliance.runtime.process import TAIL_LINES
from appliance.runtime.transport import HTTPClient
from appliance.scoring import collect

LABEL = "appliance.home"
COLLECTED = f"{dockerfile.APP}/data-collector"  # the deployment's data collector folder, inside


class ContainerInstance:
    def __init__(self, name: str, plan: LaunchPlan, log: Path, engine: docker.DockerClient, home: str) -> None:
        self.name = name
        self.plan = plan
        self.log = log
        self.engine = engine
        self.home = home
        self.client = HTTPClient(port=0)
        self.tail: list[str] = []
        self.container: Any = None
        self._exit: int | None = None
        self._exited: asyncio.Task[int] | None = None

    def _environment(self) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
        """The container's variables and bind mounts: the model and code read-only, and the data
        collector's folder writable when the deployment collects."""
        plan = self.plan
        env = dict(plan.environment_variables)
        volumes: dict[str, dict[str, str]] = {}
        if plan.model_dir:
            inside = plan.model_mount or f"{dockerfile.MODELS}/{plan.model_name}/{plan.model_version}"
            volumes[plan.model_dir] = {"bind": inside, "mode": "ro"}
            env.update(AZUREML_MODEL_DIR=inside, APPLIANCE_MODEL_NAME=plan.model_name or "",
                       APPLIANCE_MODEL_VERSION=plan.model_version or "")
        if plan.code_dir and plan.scoring_script:
            volumes[plan.code_dir] = {"bind": f"{dockerfile.APP}/code", "mode": "ro"}
            env.update(AML_APP_ROOT=f"{dockerfile.APP}/code", AZUREML_ENTRY_SCRIPT=plan.scoring_script)
        if plan.data_collection:
            setting = json.loads(plan.data_collection)
            Path(setting["dir"]).mkdir(parents=True, exist_ok=True)
            volumes[setting["dir"]] = {"bind": COLLECTED, "mode": "rw"}
            env[collect.ENV] = json.dumps({**setting, "dir": COLLECTED})
        env["APPLIANCE_INSTANCE"] = self.name
        return env, volumes

    async def start(self) -> None:
        env, volumes = self._environment()
        self.log.parent.mkdir(parents=True, exist_ok=True)
        if self.container is not None:  # a restart: the container that exited goes
            with contextlib.suppress(docker.errors.DockerException):
                await asyncio.to_thread(self.container.remove, force=True)
        self._exit = None
        plan = self.plan
        gpus = [DeviceRequest(count=-1, capabilities=[["gpu"]])] if plan.gpu else None

        # Collected files are the daemon user's, as in the process runtime (retention deletes them):
        # the worker writes them as that user rather than the image's.
        user = f"{os.getuid()}:{os.getgid()}" if plan.data_collection else None

        def run() -> Any:
            return self.engine.containers.run(
                plan.image, detach=True, environment=env, volumes=volumes, device_requests=gpus, user=user,
                name=f"appliance-{plan.endpoint}-{self.name}-{secrets.token_hex(3)}",
                ports={f"{plan.port}/tcp": ("127.0.0.1", None)},
                labels={LABEL: self.home, "appliance.endpoint": plan.endpoint,
                        "appliance.deployment": plan.deployment, "appliance.instance": self.name})

        self.container = await asyncio.to_thread(run)
        await asyncio.to_thread(self.container.reload)
        ports = (self.container.attrs.get("NetworkSettings") or {}).get("Ports") or {}
        bindings = ports.get(f"{plan.port}/tcp") or []  # none when the container has exited already
        if not bindings:
            raise await self._no_port()
        self.client = HTTPClient(host="127.0.0.1", port=int(bindings[0]["HostPort"]))
        threading.Thread(target=self._copy_logs, args=(self.container,), daemon=True).start()
        self._exited = asyncio.create_task(self._watch_exit(self.container))

    async def _no_port(self) -> RuntimeError:
        """Why a started container publishes no port: it exited at once (its exit code and last lines)."""
        container = self.container
        state = container.attrs.get("State") or {}
        if state.get("Running"):
            return RuntimeError(f"container {container.name} publishes no port {self.plan.port}/tcp")

        def tail() -> list[str]:
            return container.logs(tail=TAIL_LINES).decode(errors="replace").splitlines()

        with contextlib.suppress(docker.errors.DockerException):
            self.tail = await asyncio.to_thread(tail)
        self._exit = int(state.get("ExitCode", -1))
        lines = "\n".join(self.tail[-10:])
        return RuntimeError(f"container {container.name} exited as it started (exit code {self._exit})"
                            + (f":\n{lines}" if lines else ""))

    async def _watch_exit(self, container: Any) -> int:
        """Noticed as soon as the container stops, so `running` is always true to it."""
        try:
            result = await asyncio.to_thread(container.wait)
            self._exit = int(result.get("StatusCode", -1))
        except docker.errors.DockerException:
            self._exit = -1
        return self._exit

    def _copy_logs(self, container: Any) -> None:
        with self.log.open("a", buffering=1) as out, contextlib.suppress(docker.errors.DockerException):
            pending = b""
            for chunk in container.logs(stream=True, follow=True):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for raw in lines:
                    text = raw.decode(errors="replace")
                    out.write(logs.line("stdout", text))
                    self.tail = [*self.tail[-(TAIL_LINES - 1):], text]

    @property
    def pid(self) -> int | None:
        return (self.container.attrs.get("State") or {}).get("Pid") if self.container else None

    @property
    def running(self) -> bool:
        return self.container is not None and self._exit is None

    @property
    def exit_code(self) -> int | None:
        return self._exit

    async def wait(self) -> int:
        assert self._exited is not None
        return await asyncio.shield(self._exited)

    async def stop(self, grace: float = 5.0) -> None:
        self.client.close()
        if self.container is not None:
            container = self.container
            with contextlib.suppress(docker.errors.DockerException):
                await asyncio.to_thread(container.stop, timeout=int(grace))
            with contextlib.suppress(docker.errors.DockerException):
                await asyncio.to_thread(container.remove, force=True)
            self._exit = self._exit if self._exit is not None else 0

    def details(self) -> dict[str, Any]:
        return {}

    def target(self, path: str) -> str:
        scoring, liveness, _ = self.plan.routes
        return {"/score": scoring, "/": liveness}.get(path, path)

    async def probe(self, timeout: float) -> bool:
        if not self.running:
            return False
        try:
            response = await self.client.request("GET", self.plan.routes[2], timeout=timeout)
        except (OSError, TimeoutError):
            return False
        return response.status == 200


def remove_orphans(engine: docker.DockerClient, home: str) -> int:
    """Containers a previous daemon on this home left behind (it was killed): removed, so none
    outlives its daemon; the restore that follows starts fresh ones."""
    found = engine.containers.list(all=True, filters={"label": f"{LABEL}={home}"})
    for container in found:
        with contextlib.suppress(docker.errors.DockerException):
            container.remove(force=True)
    return len(found)
