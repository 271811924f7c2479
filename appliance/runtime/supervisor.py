"""The supervisor: keeps each deployment's instances running, ready and replaced safely.

An `Instance` owns one backend (a `Backend`: a child process, a container, or a model loaded in
the daemon itself) and a lifecycle task: start, wait for readiness, watch liveness, restart with
exponential backoff; a worker that keeps dying before it is ready is marked failed with the tail of
its output instead of looping silently.
A `DeploymentRuntime` keeps the `ready` list the router reads, and replaces instances one group at
a time: the new ones are ready before the old ones are drained and stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from appliance.builder import images
from appliance.runtime.backend import Backend
from appliance.runtime.container import ContainerInstance
from appliance.runtime.inprocess import InProcessInstance
from appliance.runtime.plan import LaunchPlan
from appliance.runtime.process import ProcessInstance

log = logging.getLogger("appliance.runtime")

MAX_START_FAILURES = 3
POLL = 0.02  # readiness polling while an instance starts (s)
BACKOFF_FIRST, BACKOFF_MAX = 0.5, 30.0


class Instance:
    def __init__(self, backend: Backend, on_change: Callable[[], None]) -> None:
        self.backend = backend
        self.name = backend.name
        self.state = "starting"  # starting | ready | unhealthy | restarting | failed | stopped
        self.error: str | None = None
        self.provider: str | None = None
        self.outstanding = 0  # requests in flight, kept by the router
        self.restarts = 0
        self.settled = asyncio.Event()  # ready once, or failed
        self._on_change = on_change
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    @property
    def client(self) -> Any:
        return self.backend.client

    def target(self, path: str) -> str:
        return self.backend.target(path)

    def start(self) -> None:
        self._task = asyncio.create_task(self._lifecycle(), name=f"instance {self.name}")

    def _set(self, state: str, error: str | None = None) -> None:
        if state != self.state or error != self.error:
            self.state, self.error = state, error
            self._on_change()
        if state in ("ready", "failed", "stopped"):
            self.settled.set()

    async def _lifecycle(self) -> None:
        """Any exception ends here: the instance is `failed` with its reason (a later update retries)."""
        try:
            await self._run()
        except Exception as exc:
            await self._fail("supervising the worker failed", exc)

    async def _fail(self, what: str, exc: Exception) -> None:
        if self._stopping:
            return
        expected = isinstance(exc, OSError | RuntimeError) and str(exc)  # said well enough by its message
        why = f"{what}: {exc if expected else f'{type(exc).__name__}: {exc}'}"
        log.error("instance %s: %s", self.name, why, exc_info=not expected)
        with contextlib.suppress(Exception):  # whatever a start that broke half-way made (a container)
            await self.backend.stop(grace=1.0)
        self._set("failed", why)

    async def _run(self) -> None:
        plan = self.backend.plan
        start_failures = 0
        backoff = BACKOFF_FIRST
        while not self._stopping:
            try:
                await self.backend.start()
            except Exception as exc:
                await self._fail("cannot start the worker", exc)
                return
            if await self._wait_ready(plan):
                start_failures, backoff = 0, BACKOFF_FIRST
                await self._read_info()
                self._set("ready")
                reason = await self._watch(plan)
            else:
                start_failures += 1
                reason = "never became ready"
            if self._stopping:
                return
            code = self.backend.exit_code
            if self.backend.running:  # unresponsive: replace it
                await self.backend.stop(grace=1.0)
            tail = "\n".join(self.backend.tail[-10:])
            why = f"worker {reason} (exit code {code})" + (f":\n{tail}" if tail else "")
            if start_failures >= MAX_START_FAILURES:
                self._set("failed", why)
                return
            self.restarts += 1
            log.warning("instance %s: %s; restarting in %.1fs", self.name, why, backoff)
            self._set("restarting", why)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)

    async def _wait_ready(self, plan: LaunchPlan) -> bool:
        probe = plan.readiness_probe
        deadline = time.monotonic() + probe.initial_delay + probe.period * probe.failure_threshold
        while time.monotonic() < deadline and not self._stopping:
            if not self.backend.running:
                await self.backend.wait()
                return False
            if await self.backend.probe(probe.timeout):
                return True
            await asyncio.sleep(POLL)
        return False

    async def _watch(self, plan: LaunchPlan) -> str:
        """Until the worker exits or fails its liveness probe `failure_threshold` times in a row."""
        probe = plan.liveness_probe
        exited = asyncio.create_task(self.backend.wait())
        failures = 0
        try:
            while True:
                done, _ = await asyncio.wait({exited}, timeout=probe.period)
                if done:
                    return "exited"
                if await self.backend.probe(probe.timeout):
                    failures = 0
                    self._set("ready")
                else:
                    failures += 1
                    self._set("unhealthy", f"liveness probe failed {failures} time(s)")
                    if failures >= probe.failure_threshold:
                        return f"failed its liveness probe {failures} times"
        finally:
            if not exited.done():
                exited.cancel()

    async def _read_info(self) -> None:
        with contextlib.suppress(Exception):
            client = self.backend.client
            if client is None:  # not loaded (in process): nothing to ask
                return
            response = await client.request("GET", "/appliance/info")
            if response.status == 200:
                self.provider = msgspec.json.decode(response.body).get("provider")

    async def stop(self, drain: float = 0.0) -> None:
        """Stop taking requests, wait up to `drain` seconds for those in flight, then stop."""
        self._stopping = True
        deadline = time.monotonic() + drain
        while self.outstanding and time.monotonic() < deadline:
            await asyncio.sleep(POLL)
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.backend.stop()
        self._set("stopped")

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "state": self.state, "pid": self.backend.pid, "provider": self.provider,
                "restarts": self.restarts, "outstanding": self.outstanding, "error": self.error,
                "log": str(self.backend.log), **self.backend.details()}


class DeploymentRuntime:
    def __init__(self, plan: LaunchPlan, supervisor: Supervisor) -> None:
        self.plan = plan
        self.instances: list[Instance] = []
        self.ready: list[Instance] = []  # what the router sends requests to
        self.error: str | None = None
        self.updating = False
        self.draining: LaunchPlan | None = None  # the plan of the instances a replace is draining
        self._sup = supervisor
        self._lock = asyncio.Lock()

    def _refresh(self) -> None:
        self.ready = [i for i in self.instances if i.state == "ready"]

    def _spawn(self, plan: LaunchPlan) -> Instance:
        instance = Instance(self._sup.backend(plan), self._refresh)
        instance.start()
        return instance

    @property
    def state(self) -> str:
        """Azure's provisioning states: Creating, Updating, Succeeded, Failed."""
        if self.updating:
            return "Updating"
        states = {i.state for i in self.instances}
        if self.error or (states and states <= {"failed"}):
            return "Failed"
        if states and states <= {"ready"}:
            return "Succeeded"
        return "Creating"

    async def apply(self, plan: LaunchPlan) -> None:
        async with self._lock:
            self.error = None
            if not self.instances:
                self.plan = plan
                self.instances = [self._spawn(plan) for _ in range(plan.instance_count)]
                self._refresh()
            elif plan.same_instances(self.plan):
                await self._scale(plan)
            else:
                await self._replace(plan)

    async def restart(self) -> None:
        """Every instance replaced by a fresh one, as `kubectl rollout restart`: the new ones ready first."""
        async with self._lock:
            await self._replace(self.plan)

    async def _scale(self, plan: LaunchPlan) -> None:
        self.plan = plan
        retry = [i for i in self.instances if i.state == "failed"]  # applied again: failed ones get another go
        if retry:
            self.instances = [i for i in self.instances if i not in retry]
            self._refresh()
            await asyncio.gather(*(i.stop() for i in retry))
        extra = plan.instance_count - len(self.instances)
        added = [self._spawn(plan) for _ in range(max(extra, 0))]
        self.instances += added
        if extra < 0:
            removed, self.instances = self.instances[extra:], self.instances[:extra]
            self._refresh()
            await asyncio.gather(*(i.stop(drain=self._drain_seconds()) for i in removed))
        await asyncio.gather(*(i.settled.wait() for i in added))
        self._refresh()

    async def _replace(self, plan: LaunchPlan) -> None:
        """New instances first; traffic moves once every one is ready; then the old ones drain."""
        self.updating, self.error = True, None
        fresh: list[Instance] = []
        adopted = False
        try:
            fresh = [self._spawn(plan) for _ in range(plan.instance_count)]
            await asyncio.gather(*(i.settled.wait() for i in fresh))
            failed = [i for i in fresh if i.state != "ready"]
            if failed:
                reason = failed[0].error  # before stop() clears it
                serving = ", still serving the previous version" if self.ready else ""
                self.error = f"update failed{serving}: {reason}"
                return
            old, self.instances, self.plan, self.draining = self.instances, fresh, plan, self.plan
            adopted = True
            self._refresh()
            await asyncio.gather(*(i.stop(drain=self._drain_seconds()) for i in old))
        finally:
            if not adopted:  # failed, or cancelled: none of the new ones may outlive this
                await asyncio.shield(asyncio.gather(*(i.stop() for i in fresh), return_exceptions=True))
            self.updating, self.draining = False, None

    def _drain_seconds(self) -> float:
        return self.plan.request_settings.request_timeout_ms / 1000

    async def wait_settled(self, timeout: float) -> bool:
        """Until every instance is ready or failed (or the timeout)."""
        try:
            await asyncio.wait_for(asyncio.gather(*(i.settled.wait() for i in self.instances)), timeout)
        except TimeoutError:
            return False
        return True

    async def stop(self) -> None:
        instances, self.instances = self.instances, []
        self._refresh()
        await asyncio.gather(*(i.stop(drain=self._drain_seconds()) for i in instances))

    def failure(self) -> str | None:
        """Why it is Failed: its own error, or else its failed instances' (every instance failing to
        start is a Failed deployment too, and `create` and `show` must say why)."""
        if self.error or self.state != "Failed":
            return self.error
        reasons = list(dict.fromkeys(i.error for i in self.instances if i.state == "failed" and i.error))
        if not reasons:
            return None
        many = f"{len(self.instances)} instance(s) failed" if len(self.instances) > 1 else "its instance failed"
        return f"{many}: " + "\n".join(reasons)

    def describe(self) -> dict[str, Any]:
        providers = sorted({i.provider for i in self.instances if i.provider})
        return {"provisioning_state": self.state, "error": self.failure(), "runtime": self.plan.runtime,
                "provider": ", ".join(providers) or None,
                "instances": [i.describe() for i in self.instances]}


class Supervisor:
    def __init__(self, run_dir: Path, logs_dir: Path, home: str = "") -> None:
        self.run_dir = run_dir
        self.logs_dir = logs_dir
        self.home = home  # labels this daemon's containers
        self.deployments: dict[tuple[str, str], DeploymentRuntime] = {}
        self._removing: set[DeploymentRuntime] = set()  # removed, its instances still draining
        self._counter = itertools.count()
        self._engine: Any = None

    @property
    def engine(self) -> Any:
        """The Docker engine, asked for only when a docker deployment needs it."""
        if self._engine is None:
            self._engine = images.engine()
        return self._engine

    def backend(self, plan: LaunchPlan) -> Backend:
        n = next(self._counter)
        name = f"{plan.deployment}-{n}"
        log_file = self.logs_dir / plan.endpoint / plan.deployment / f"{name}.log"
        if plan.runtime == "docker":
            return ContainerInstance(name, plan, log_file, self.engine, self.home)
        if plan.runtime == "inprocess":
            return InProcessInstance(name, plan, log_file)
        return ProcessInstance(name, plan, self.run_dir / f"i{n}.sock", log_file)

    def get(self, endpoint: str, deployment: str) -> DeploymentRuntime | None:
        return self.deployments.get((endpoint, deployment))

    async def apply(self, plan: LaunchPlan) -> DeploymentRuntime:
        runtime = self.deployments.get(plan.key)
        if runtime is None:
            runtime = self.deployments[plan.key] = DeploymentRuntime(plan, self)
        await runtime.apply(plan)
        return runtime

    def fail(self, plan: LaunchPlan, error: str) -> DeploymentRuntime:
        """A deployment that can't start (its environment did not build): shown as Failed with
        `error`; instances it already had keep serving."""
        runtime = self.deployments.get(plan.key)
        if runtime is None:
            runtime = self.deployments[plan.key] = DeploymentRuntime(plan, self)
        runtime.error = error
        return runtime

    async def remove(self, endpoint: str, deployment: str) -> None:
        runtime = self.deployments.pop((endpoint, deployment), None)
        if runtime:
            self._removing.add(runtime)
            try:
                await runtime.stop()
            finally:
                self._removing.discard(runtime)

    def plans(self) -> list[LaunchPlan]:
        """Every plan an instance may still be running: each deployment's, those a replace is draining,
        and those of deployments being removed."""
        return [plan for runtime in (*self.deployments.values(), *self._removing)
                for plan in (runtime.plan, runtime.draining) if plan is not None]

    async def stop_all(self) -> None:
        runtimes = list(self.deployments.values())
        self.deployments.clear()
        await asyncio.gather(*(r.stop() for r in runtimes))
