"""The reconciler in process, on a real registry, supervisor and in-process ONNX models: per deployment
the latest spec wins, a delete is final, and nothing slow runs on the event loop. Only an environment's
build is held back by hand (the builder's duration is what the tests control)."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from appliance.builder import venv
from appliance.daemon.control import Control
from appliance.registry import Registry
from appliance.router import RoutingTable
from appliance.runtime import Supervisor
from appliance.specs import Document, parse

KEY = os.urandom(32)


@pytest.fixture
def control(tmp_path: Path) -> Iterator[Control]:
    registry = Registry(tmp_path / "home", KEY)
    supervisor = Supervisor(tmp_path / "run", tmp_path / "logs")
    (tmp_path / "run").mkdir()
    yield Control(registry, supervisor, RoutingTable(), b"secret")
    registry.close()


def documents(project: Path, **deployment: Any) -> list[Document]:
    body = {"name": "blue", "endpoint_name": "my-ep", "model": {"name": "iris", "path": "model"}, **deployment}
    return [parse({"name": "my-ep", "auth_mode": "key"}, str(project / "endpoint.yml"), project),
            parse(body, str(project / "blue.yml"), project)]


class Build:
    """Environment builds signal `started`, then wait for `release` (in threads: the loop must not)."""

    def __init__(self) -> None:
        self.started, self.release = threading.Event(), threading.Event()

    def __call__(self, root: Path, reqs: list[str], say: Any, **options: Any) -> Path:
        self.started.set()
        assert self.release.wait(30), "the test never released the build"
        return Path(sys.executable)

    async def under_way(self) -> None:
        while not self.started.is_set():
            await asyncio.sleep(0.01)


@pytest.fixture
def slow_build(monkeypatch: pytest.MonkeyPatch) -> Build:
    build = Build()
    monkeypatch.setattr(venv, "ensure", build)
    return build


def with_environment() -> dict[str, Any]:
    return {"environment": {"image": "python:3.11-slim", "conda_file": {"dependencies": [{"pip": ["six"]}]}}}


def test_an_older_apply_that_finishes_last_changes_nothing(control: Control, iris_project: Path,
                                                            slow_build: Build) -> None:
    async def scenario() -> None:
        old = asyncio.create_task(control.apply(documents(iris_project, **with_environment()), wait=10))
        await slow_build.under_way()  # the old spec is stored, read, and its environment building
        await control.apply(documents(iris_project, instance_count=2), wait=10)  # newer, no build
        runtime = control.supervisor.get("my-ep", "blue")
        assert runtime is not None and runtime.plan.instance_count == 2 and runtime.plan.runtime == "inprocess"
        slow_build.release.set()
        await old
        after = control.supervisor.get("my-ep", "blue")
        assert after is runtime and after.plan.instance_count == 2 and after.plan.runtime == "inprocess"
        assert after.state == "Succeeded" and len(after.ready) == 2
        await control.supervisor.stop_all()

    asyncio.run(scenario())


def test_a_deployment_deleted_while_it_builds_stays_deleted(control: Control, iris_project: Path,
                                                            slow_build: Build) -> None:
    async def scenario() -> None:
        applying = asyncio.create_task(control.apply(documents(iris_project, **with_environment()), wait=10))
        await slow_build.under_way()
        await control.delete_endpoint("my-ep")  # its only deployment has all traffic: the endpoint goes
        slow_build.release.set()
        await applying
        assert control.supervisor.get("my-ep", "blue") is None
        assert "my-ep" not in control.table.endpoints
        assert control.registry.find_deployment("my-ep", "blue") is None

    asyncio.run(scenario())


def test_the_event_loop_runs_while_a_large_model_is_stored(control: Control, iris_project: Path,
                                                           tmp_path: Path) -> None:
    """Storing (hashing, copying) and reading a model happen in threads without the registry's lock: the
    loop keeps turning, and registry reads from other threads are not held up by them."""
    big = iris_project / "model" / "weights.bin"
    with big.open("wb") as f:
        for _ in range(96):
            f.write(os.urandom(1 << 20))

    async def scenario() -> tuple[float, float]:
        gaps: list[float] = []
        reads: list[float] = []
        stop = False

        async def ticker() -> None:
            last = time.perf_counter()
            while not stop:
                await asyncio.sleep(0.005)
                now = time.perf_counter()
                gaps.append(now - last)
                last = now

        def reader() -> None:
            while not stop:
                started = time.perf_counter()
                control.registry.list_endpoints()
                reads.append(time.perf_counter() - started)
                time.sleep(0.005)

        tick = asyncio.create_task(ticker())
        thread = threading.Thread(target=reader)
        thread.start()
        await control.apply(documents(iris_project), wait=10)
        stop = True
        await tick
        thread.join()
        await control.supervisor.stop_all()
        return max(gaps), max(reads)

    worst_gap, worst_read = asyncio.run(scenario())
    assert worst_gap < 0.2, f"the event loop stalled for {worst_gap * 1000:.0f} ms"
    assert worst_read < 0.2, f"a registry read waited {worst_read * 1000:.0f} ms"
