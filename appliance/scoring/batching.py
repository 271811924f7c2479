"""Dynamic batching of a no-code ONNX model: concurrent requests gathered into one onnxruntime call
(Triton's dynamic batcher), then each given back exactly its own rows.

Opt-in per deployment through two environment variables (Azure passes `environment_variables` through
and ignores these): APPLIANCE_MAX_BATCH_SIZE (rows in one call) and APPLIANCE_MAX_QUEUE_DELAY_US.
A request that finds the model idle runs at the next turn of the event loop, with whatever arrived in the
same wake-up: a lone request never waits. Requests that arrive while a batch runs queue; when it ends,
they run together at once if they fill a batch (or the delay is 0), else as soon as they do or the oldest
has waited the delay. One batch runs at a time, so the queue fills while it runs.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from appliance.scoring.onnx_model import np

if TYPE_CHECKING:
    from appliance.scoring.onnx_model import OnnxModel

SIZE_VAR = "APPLIANCE_MAX_BATCH_SIZE"
DELAY_VAR = "APPLIANCE_MAX_QUEUE_DELAY_US"
MAX_SIZE = 4096  # rows
MAX_DELAY_US = 1_000_000
_WEIGHT = 0.2  # of the newest batch in the running average of a batch's CPU time


class BadSetting(ValueError):
    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name  # the environment variable


@dataclass(frozen=True)
class Settings:
    max_rows: int
    delay_us: int


def settings(env: Mapping[str, str]) -> Settings | None:
    """The batching a deployment's environment variables ask for, or None (not asked). A bad value is
    a BadSetting naming the variable, the value and what is allowed."""
    size, delay = env.get(SIZE_VAR), env.get(DELAY_VAR)
    if size is None:
        if delay is not None:
            raise BadSetting(DELAY_VAR, f"{DELAY_VAR} is set but {SIZE_VAR} is not: batching is turned on by "
                                        f"{SIZE_VAR} (rows in one model call, 2 to {MAX_SIZE})")
        return None
    return Settings(_integer(SIZE_VAR, size, 2, MAX_SIZE, "rows in one model call"),
                    _integer(DELAY_VAR, "0" if delay is None else delay, 0, MAX_DELAY_US,
                             "microseconds a request may wait for others while a batch runs"))


def _integer(name: str, value: Any, low: int, high: int, what: str) -> int:
    text = str(value).strip()
    if not text.isdigit() or not low <= int(text) <= high:
        raise BadSetting(name, f"invalid value {str(value)[:32]!r} for {name}: an integer from {low} to {high} "
                               f"({what})")
    return int(text)


def unbatchable(model: OnnxModel) -> str | None:
    """Why `model`'s signature does not say its first dimension is the batch, or None if it does: every
    input and output a tensor whose first dimension is free."""
    for kind, sigs in (("input", model.inputs), ("output", model.outputs)):
        for sig in sigs:
            if sig.dtype is None or not sig.type.startswith("tensor("):
                return f"{kind} {sig.name!r} is {sig.type}, not a tensor"
            if not sig.shape or isinstance(sig.shape[0], int):
                return f"{kind} {sig.name!r} has shape {sig.describe()}: no free first (batch) dimension"
    return None


def for_model(model: OnnxModel, env: Mapping[str, str], collecting: bool, inline_budget: float = 0.0005,
              average: float | None = None) -> tuple[Batcher | None, str | None]:
    """The batcher `env` asks for, if `model` can be batched, and what to say of it once in the instance's
    log (None: batching was not asked for)."""
    config = settings(env)
    if config is None:
        return None, None
    if why := unbatchable(model):
        return None, f"batching off, served unbatched: {why}"
    if collecting:
        return None, "batching off, served unbatched: the data collector records each request's own model run"
    return (Batcher(model, config, inline_budget, average),
            f"batching on: up to {config.max_rows} rows per model call, a queue delay of up to {config.delay_us} µs")


@dataclass(eq=False)
class _Request:
    feeds: dict[str, Any]
    rows: int
    key: tuple[Any, ...] | None  # what must match to share a call (trailing shapes); None: runs alone
    done: asyncio.Future[tuple[list[Any], int]]
    arrived: float
    result: Any = field(default=None)  # (outputs, requests in its call), or the exception it raised


class Batcher:
    """Gathers requests on the event loop; runs each batch inline when a batch's average CPU time is
    under `inline_budget` (a thread hop would cost more), else on a thread of its own (onnxruntime
    releases the GIL, so the loop keeps gathering meanwhile)."""

    def __init__(self, model: OnnxModel, config: Settings, inline_budget: float = 0.0005,
                 average: float | None = None) -> None:
        self.model = model
        self.max_rows = config.max_rows
        self.delay = config.delay_us / 1e6
        self.inline_budget = inline_budget
        self.average = average  # CPU s per batch, None until one is known
        self.calls = 0  # model calls made for batched requests
        self.requests = 0  # requests answered by them
        self.largest = 0  # requests in the largest call
        self._names = [i.name for i in model.inputs]
        self._queue: deque[_Request] = deque()
        self._rows = 0  # queued
        self._running = False  # a batch is running
        self._pending: asyncio.Handle | None = None  # the next batch's start, scheduled
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="batch")

    async def run(self, feeds: dict[str, Any]) -> tuple[list[Any], int]:
        """The model's outputs for `feeds` (checked by `OnnxModel.feeds`), and how many requests shared
        the call that computed them."""
        loop = self._loop = asyncio.get_running_loop()
        first = feeds[self._names[0]]
        rows = len(first) if first.ndim else 0
        key: tuple[Any, ...] | None = None
        if rows and all(feeds[n].ndim and len(feeds[n]) == rows for n in self._names):
            key = tuple(feeds[n].shape[1:] for n in self._names)
        request = _Request(feeds, rows, key, loop.create_future(), loop.time())
        self._queue.append(request)
        self._rows += rows
        if not self._running:
            if self._pending is None:  # idle: run with whatever else arrives in this wake-up
                self._pending = loop.call_soon(self._start)
            elif self._rows >= self.max_rows and isinstance(self._pending, asyncio.TimerHandle):
                self._pending.cancel()
                self._pending = loop.call_soon(self._start)
        return await request.done

    def _next(self) -> None:
        """After a batch: what queued meanwhile runs now if it fills a batch or has waited the delay."""
        assert self._loop is not None
        self._running = False
        if not self._queue:
            return
        at = self._queue[0].arrived + self.delay
        if self._rows >= self.max_rows or at <= self._loop.time():
            self._pending = self._loop.call_soon(self._start)
        else:
            self._pending = self._loop.call_at(at, self._start)

    def _start(self) -> None:
        self._pending = None
        batch = self._take()
        self._running = True
        if self.average is not None and self.average < self.inline_budget:
            try:
                self._execute(batch)
            except Exception as exc:  # a fault of ours, not a request's: its callers still get an answer
                self._finish(batch, exc)
            else:
                self._finish(batch, None)
        else:
            assert self._loop is not None
            future = self._loop.run_in_executor(self._pool, self._execute, batch)
            future.add_done_callback(lambda f: self._finish(batch, asyncio.CancelledError() if f.cancelled()
                                                            else f.exception()))

    def _take(self) -> list[_Request]:
        """The oldest request, and those after it whose inputs can join it, up to max_rows (one larger
        than that runs alone); the others stay queued, in order."""
        head = self._queue.popleft()
        batch, rows = [head], head.rows
        if head.key is not None and rows < self.max_rows:
            kept: deque[_Request] = deque()
            for request in self._queue:
                if request.key == head.key and rows + request.rows <= self.max_rows:
                    batch.append(request)
                    rows += request.rows
                else:
                    kept.append(request)
            self._queue = kept
        self._rows -= rows
        return batch

    def _execute(self, batch: list[_Request]) -> None:
        """Runs `batch` (on the loop or on the batch thread): each request's result set on it."""
        started = time.thread_time()
        if len(batch) == 1:
            _alone(self.model, batch[0])
        else:
            try:
                feeds = {n: np.concatenate([r.feeds[n] for r in batch]) for n in self._names}
                outputs = self.model.run(feeds)
                total = sum(r.rows for r in batch)
                if any(len(o) != total for o in outputs):  # the signature promised rows it doesn't keep
                    raise ValueError("outputs do not have the batch's rows")
            except Exception:  # whichever request made it fail fails alone, with its own error
                for r in batch:
                    _alone(self.model, r)
            else:
                end = 0
                for r in batch:
                    start, end = end, end + r.rows
                    r.result = ([o[start:end] for o in outputs], len(batch))
        elapsed = time.thread_time() - started
        average = self.average
        self.average = elapsed if average is None else average + _WEIGHT * (elapsed - average)

    def _finish(self, batch: list[_Request], failed: BaseException | None) -> None:
        self.calls += 1
        self.requests += len(batch)
        self.largest = max(self.largest, len(batch))
        for r in batch:
            if r.done.done():  # its caller gave up (a timeout)
                continue
            if failed is not None:
                r.done.set_exception(failed)
            elif isinstance(r.result, BaseException):
                r.done.set_exception(r.result)
            else:
                r.done.set_result(r.result)
        self._next()

    def details(self) -> dict[str, Any]:
        return {"max_batch_size": self.max_rows, "max_queue_delay_us": round(self.delay * 1e6),
                "calls": self.calls, "requests": self.requests, "largest": self.largest,
                "batch_ms": round(self.average * 1000, 3) if self.average is not None else None}

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _alone(model: OnnxModel, request: _Request) -> None:
    try:
        request.result = (model.run(request.feeds), 1)
    except Exception as exc:
        request.result = exc
