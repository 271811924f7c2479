"""Any exception in an instance's lifecycle ends in `Failed` with its reason, holds no lock, and a later
update recovers the deployment: the supervisor with a fake backend, in process, no workers."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from appliance.runtime import LaunchPlan, Supervisor
from appliance.runtime.supervisor import DeploymentRuntime
from appliance.runtime.transport import Response
from appliance.specs import Probe


class FakeClient:
    async def request(self, method: str, target: str, body: bytes = b"", headers: Any = (),
                      timeout: float | None = None) -> Response:
        return Response(404, [], b"")


class FakeBackend:
    """Starts as `behaviour` says (its plan's model_version unless told): "key-error" and "runtime-error"
    raise from start(), "never-ready" runs but never answers its probe, anything else serves until stopped."""

    def __init__(self, name: str, plan: LaunchPlan, log: Path, behaviour: str | None = None) -> None:
        self.name, self.plan, self.log = name, plan, log
        self.behaviour = behaviour or plan.model_version
        self.client = FakeClient()
        self.tail: list[str] = []
        self.started = self.stopped = False
        self._exit: asyncio.Future[int] | None = None

    @property
    def pid(self) -> int | None:
        return None

    @property
    def running(self) -> bool:
        return self._exit is not None and not self._exit.done()

    @property
    def exit_code(self) -> int | None:
        return self._exit.result() if self._exit is not None and self._exit.done() else None

    async def start(self) -> None:
        self.started = True
        if self.behaviour == "key-error":
            raise KeyError("8080/tcp")  # what an empty `Ports` of a container that exited at once raised
        if self.behaviour == "runtime-error":
            raise RuntimeError("the engine said no")
        self._exit = asyncio.get_running_loop().create_future()

    async def wait(self) -> int:
        assert self._exit is not None
        return await asyncio.shield(self._exit)

    async def stop(self, grace: float = 5.0) -> None:
        self.stopped = True
        if self._exit is not None and not self._exit.done():
            self._exit.set_result(0)

    async def probe(self, timeout: float) -> bool:
        return self.running and self.behaviour != "never-ready"

    def details(self) -> dict[str, Any]:
        return {}

    def target(self, path: str) -> str:
        return path


class FakeSupervisor(Supervisor):
    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp / "run", tmp / "logs")
        self.made: list[FakeBackend] = []
        self.behaviour: str | None = None  # overrides the plans' own from now on

    def backend(self, plan: LaunchPlan) -> Any:
        made = FakeBackend(f"{plan.deployment}-{len(self.made)}", plan, self.logs_dir / "x.log", self.behaviour)
        self.made.append(made)
        return made


FAST = Probe(initial_delay=0, period=0.05, timeout=0.05, failure_threshold=3)


def plan(version: str, count: int = 2) -> LaunchPlan:
    return LaunchPlan("ep", "blue", count, "m", version, "/models/m", readiness_probe=FAST, liveness_probe=FAST)


async def apply(sup: Supervisor, p: LaunchPlan) -> DeploymentRuntime:
    """An apply must return (a hang is the bug), then its instances settle."""
    runtime = await asyncio.wait_for(sup.apply(p), 5)
    assert await runtime.wait_settled(5), runtime.describe()
    return runtime


def free(runtime: DeploymentRuntime) -> None:
    assert not runtime._lock.locked() and not runtime.updating and runtime.draining is None


@pytest.mark.parametrize(("bad", "reason"), [("key-error", "KeyError"), ("runtime-error", "the engine said no")])
def test_a_first_start_that_raises_fails_then_an_update_recovers(tmp_path: Path, bad: str, reason: str,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        sup = FakeSupervisor(tmp_path)
        runtime = await apply(sup, plan(bad))
        shown = runtime.describe()
        assert shown["provisioning_state"] == "Failed", shown
        assert all(i["state"] == "failed" and reason in i["error"] for i in shown["instances"]), shown
        assert all(b.stopped for b in sup.made)  # whatever a half-done start made is cleaned up
        free(runtime)
        assert any("blue-0" in r.getMessage() and reason in r.getMessage() for r in caplog.records)

        runtime = await apply(sup, plan("good"))
        assert runtime.describe()["provisioning_state"] == "Succeeded", runtime.describe()
        assert len(runtime.ready) == 2
        free(runtime)
        await sup.stop_all()

    with caplog.at_level(logging.WARNING, "appliance.runtime"):
        asyncio.run(scenario())


@pytest.mark.parametrize("bad", ["key-error", "runtime-error"])
def test_an_update_whose_start_raises_keeps_the_old_version_and_a_later_update_recovers(tmp_path: Path,
                                                                                      bad: str) -> None:
    async def scenario() -> None:
        sup = FakeSupervisor(tmp_path)
        runtime = await apply(sup, plan("good"))
        old = list(runtime.ready)
        assert len(old) == 2

        runtime = await apply(sup, plan(bad))  # used to hang, `Updating`, its lock held
        shown = runtime.describe()
        assert shown["provisioning_state"] == "Failed" and "update failed" in shown["error"], shown
        assert runtime.ready == old  # still serving the previous version
        free(runtime)

        runtime = await apply(sup, plan("good-2"))
        assert runtime.describe()["provisioning_state"] == "Succeeded", runtime.describe()
        assert runtime.error is None and len(runtime.ready) == 2 and not set(runtime.ready) & set(old)
        free(runtime)
        await sup.stop_all()

    asyncio.run(scenario())


def test_applying_the_same_plan_again_restarts_failed_instances(tmp_path: Path) -> None:
    """A failure that went away (the engine is back): applying the unchanged plan again retries it."""
    async def scenario() -> None:
        sup = FakeSupervisor(tmp_path)
        runtime = await apply(sup, plan("runtime-error"))
        assert runtime.state == "Failed"
        sup.behaviour = "good"  # what the next start of this same plan will do
        runtime = await apply(sup, plan("runtime-error"))
        assert runtime.state == "Succeeded", runtime.describe()
        free(runtime)
        await sup.stop_all()

    asyncio.run(scenario())


def test_an_instance_stopped_before_it_settles_does_not_hang_its_waiters(tmp_path: Path) -> None:
    async def scenario() -> None:
        sup = FakeSupervisor(tmp_path)
        slow = Probe(initial_delay=30, period=30, timeout=1, failure_threshold=1)
        runtime = await asyncio.wait_for(sup.apply(LaunchPlan("ep", "blue", 1, "m", "never-ready", "/m",
                                                              readiness_probe=slow)), 5)
        waiting = asyncio.create_task(runtime.wait_settled(5))
        await asyncio.sleep(0)
        await sup.remove("ep", "blue")
        assert await asyncio.wait_for(waiting, 2)

    asyncio.run(scenario())
