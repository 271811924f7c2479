"""One `inprocess` instance: a no-code ONNX model served inside the daemon, so the router's forward
is a function call instead of a second HTTP hop (the benchmark harness measures the difference).

Only no-code ONNX runs here: the same `Worker` a child process would run, and none of the user's code
or packages (a native crash in onnxruntime would still take the daemon with it: `runtime: process`
is the isolated choice). A model that is cheap (most tabular models take tens of µs) is called on
the event loop, since a thread hop would cost more than the model; one whose average CPU time per
call is over `INLINE_BUDGET` runs on a pool of `max_concurrent_requests_per_instance` threads
instead (onnxruntime releases the GIL), so one heavy model can't stall every other endpoint. With
dynamic batching on (scoring/batching.py), /score's requests are gathered on the event loop and each batch
runs by the same rule: inline while a batch's average is under INLINE_BUDGET, else on a thread.
"""

from __future__ import annotations

import asyncio
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from appliance.runtime import logs
from appliance.runtime.plan import LaunchPlan
from appliance.runtime.transport import RequestHeaders, Response
from appliance.scoring import batching, collect
from appliance.scoring.app import Reply, Worker
from appliance.scoring.onnx_model import OnnxModel, find_onnx_file

INLINE_BUDGET = 0.0005  # s: a model slower than this on average leaves the event loop for a thread
_WEIGHT = 0.2  # of the newest call in the running average
SAMPLE = 8  # inline, one call in SAMPLE is timed


class DirectClient:
    """The `HTTPClient` interface over a `Worker` in this process. Calls go wherever the running
    average of the model's time says, starting from its warm-up run's; without one, to the thread pool
    until a call has been timed."""

    def __init__(self, worker: Worker, threads: int, average: float | None = None) -> None:
        self.worker = worker
        self.average = average  # s per call, None until one is known
        self._calls = SAMPLE - 1  # the first request is timed: the warm-up's batch of one may be smaller
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=f"model-{worker.name}")

    async def request(self, method: str, target: str, body: bytes = b"", headers: RequestHeaders = (),
                      timeout: float | None = None) -> Response:
        """`timeout` bounds a call on the thread pool; an inline one is within INLINE_BUDGET anyway."""
        path = target.partition("?")[0]
        if method != "POST":  # health, swagger, metadata: no model call
            status, ctype, payload, extra = self.worker.handle(method, path, body)
        else:
            json_length = None
            if path.startswith("/v2"):  # Triton's binary extension
                json_length = next((v for k, v in headers if k == b"inference-header-content-length"), None)
            request_id = None
            if self.worker.collection is not None:  # the data collector's correlation id: the router's last
                last = headers[-1] if headers else (b"", b"")
                request_id = last[1] if last[0] == b"x-request-id" else \
                    next((v for k, v in headers if k == b"x-request-id"), None)
            if self.worker.batcher is not None and path == "/score":
                status, ctype, payload, extra = await asyncio.wait_for(self.worker.score_batched(body), timeout)
            elif self.inline:
                # Timed one call in SAMPLE: reading the CPU clock twice costs a tenth of a cheap model's call.
                self._calls += 1
                call = self._timed if self._calls % SAMPLE == 0 else self.worker.handle
                status, ctype, payload, extra = call(method, path, body, json_length, request_id)
            else:
                pooled = asyncio.get_running_loop().run_in_executor(self._pool, self._timed, method, path, body,
                                                                    json_length, request_id)
                status, ctype, payload, extra = await asyncio.wait_for(pooled, timeout)
        return Response(status, [(b"content-type", ctype), *extra], payload)

    def _timed(self, method: str, path: str, body: bytes, json_length: bytes | None,
               request_id: bytes | None = None) -> Reply:
        # CPU time, not the wall clock: a wait for the GIL (another thread took it while onnxruntime had
        # let it go) is not the model's cost, and would send a cheap model to the threads for nothing.
        started = time.thread_time()
        reply = self.worker.handle(method, path, body, json_length, request_id)
        elapsed = time.thread_time() - started
        average = self.average
        self.average = elapsed if average is None else average + _WEIGHT * (elapsed - average)
        return reply

    @property
    def inline(self) -> bool:
        return self.average is not None and self.average < INLINE_BUDGET

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self.worker.batcher is not None:
            self.worker.batcher.close()
        if self.worker.collection is not None:
            self.worker.collection.config.close()  # what is collected so far is written


class InProcessInstance:
    def __init__(self, name: str, plan: LaunchPlan, log: Path) -> None:
        if not plan.model_dir or plan.scoring_script:
            raise ValueError(f"deployment {plan.deployment!r}: only a no-code ONNX model runs in process")
        self.name = name
        self.plan = plan
        self.log = log
        self.client: DirectClient | None = None
        self.tail: list[str] = []
        self._exit: asyncio.Future[int] | None = None

    def _say(self, stream: str, text: str) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("a") as out:
            out.write(logs.line(stream, text))
        self.tail = [*self.tail[-39:], text]

    async def start(self) -> None:
        plan = self.plan
        assert plan.model_dir
        self._exit = asyncio.get_running_loop().create_future()
        name, version = plan.model_name or plan.deployment, plan.model_version or "1"
        try:
            model = await asyncio.to_thread(OnnxModel, find_onnx_file(Path(plan.model_dir)))
            cost = await asyncio.to_thread(model.warm_up)
        except Exception as exc:
            self._say("stderr", f"cannot load the model: {type(exc).__name__}: {exc}")
            self._exit.set_result(3)
            return
        config = collect.Config.from_environment({collect.ENV: plan.data_collection or ""})
        collection = collect.no_code(config)
        try:
            batcher, said = batching.for_model(model, dict(plan.environment_variables), collection is not None,
                                               INLINE_BUDGET, cost)
        except ValueError as exc:  # checked at apply: only a deployment stored before that check gets here
            self._say("stderr", f"cannot serve the model: {exc}")
            self._exit.set_result(3)
            return
        self.client = DirectClient(Worker(name, version, model=model, collection=collection, batcher=batcher),
                                   plan.request_settings.max_concurrent_requests_per_instance, cost)
        self._say("stderr", f"model {name}:{version} loaded from {model.path} on {model.provider}, "
                            "inside the daemon (runtime: inprocess)")
        if said:
            self._say("stderr", said)

    @property
    def pid(self) -> int | None:
        return os.getpid() if self.running else None

    @property
    def exit_code(self) -> int | None:
        return self._exit.result() if self._exit is not None and self._exit.done() else None

    @property
    def running(self) -> bool:
        return self._exit is not None and not self._exit.done()

    async def wait(self) -> int:
        assert self._exit is not None
        return await asyncio.shield(self._exit)

    async def stop(self, grace: float = 5.0) -> None:
        if self.client is not None:
            self.client.close()
        if self._exit is not None and not self._exit.done():
            self._exit.set_result(0)

    def target(self, path: str) -> str:
        return path

    def details(self) -> dict[str, Any]:
        client = self.client
        if client is None:
            return {}
        shown: dict[str, Any] = {}
        if client.average is not None:
            shown = {"calls": "inline" if client.inline else "threads", "model_ms": round(client.average * 1000, 3)}
        if client.worker.batcher is not None:
            shown["batching"] = client.worker.batcher.details()
        return shown

    async def probe(self, timeout: float) -> bool:
        return self.running and self.client is not None
