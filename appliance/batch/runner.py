"""One batch job, run to its end: worker processes fed mini-batches from the ledger, retries and
timeouts, the error threshold, Azure's log files, and the output merged in mini-batch order.

A mini-batch's output is a part file the worker writes (atomically) before it answers; only then is
the mini-batch recorded done. A daemon killed in between leaves it pending in the ledger and the job
runs it again, overwriting its part: every input appears in the output exactly once.

Workers speak `appliance.scoring.batch`'s protocol: a JSON line per mini-batch on stdin, a JSON line
per answer on a pipe of their own (`--reply-fd`); stdout and stderr are the user's, kept as Azure
keeps them (`logs/user/stdout/`, `logs/user/stderr/`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from appliance import children
from appliance.batch import plan
from appliance.batch.merge import Merger
from appliance.registry import JobRecord, MiniBatch, Registry
from appliance.runtime.process import BATCH_MODULE, worker_command

log = logging.getLogger("appliance.batch")

FINAL = ("done", "failed")  # a mini-batch's states once it is over
FLUSH_SECONDS = 0.25  # ledger writes are grouped: a statement per mini-batch would cost more than its run
OVERVIEW_SECONDS = 5.0
STOP_GRACE = 1.0  # a canceled job's workers get this long after SIGTERM, then SIGKILL


@dataclass(frozen=True)
class Launch:
    """How this job's workers start: the interpreter (an environment's venv, or None: the daemon's own)
    and their environment variables (the model, the script, the settings)."""

    python: str | None
    env: dict[str, str]


class WorkerFailed(Exception):
    """A worker that could not start (import, init() or the model load failed): nothing can run."""


@dataclass
class Progress:
    """What `job show` and `job stream` show: the ledger's counts, and the rate of this run."""

    mini_batches: int = 0
    mini_batches_done: int = 0
    mini_batches_failed: int = 0
    mini_batches_running: int = 0
    items: int = 0
    items_succeeded: int = 0
    items_failed: int = 0
    retries: int = 0
    items_per_second: float | None = None
    eta_seconds: float | None = None

    @classmethod
    def of(cls, batches: list[MiniBatch], rate: float | None = None) -> Progress:
        done = [b for b in batches if b.status == "done"]
        failed = [b for b in batches if b.status == "failed"]
        p = cls(mini_batches=len(batches), mini_batches_done=len(done), mini_batches_failed=len(failed),
                mini_batches_running=sum(b.status == "running" for b in batches),
                items=sum(len(b.files) for b in batches), items_succeeded=sum(b.succeeded for b in batches),
                items_failed=sum(b.failed for b in batches), retries=sum(max(b.attempts - 1, 0) for b in batches))
        if rate:
            left = sum(len(b.files) for b in batches if b.status in ("pending", "running"))
            p.items_per_second, p.eta_seconds = round(rate, 2), round(left / rate, 1)
        return p


class Worker:
    """One worker process and its reply pipe."""

    def __init__(self, index: int, job_dir: Path, launch: Launch) -> None:
        self.name = f"worker-{index}"
        self.job_dir = job_dir
        self.launch = launch
        self.proc: asyncio.subprocess.Process | None = None
        self.replies: asyncio.StreamReader | None = None
        self._transport: asyncio.BaseTransport | None = None

    async def start(self) -> dict[str, Any]:
        """Started and initialised (init() ran, or the model loaded): its first answer."""
        logs = self.job_dir / "logs" / "user"
        outputs = []
        for stream in ("stdout", "stderr"):
            (logs / stream).mkdir(parents=True, exist_ok=True)
            outputs.append((logs / stream / f"{self.name}.txt").open("ab"))
        read_end, write_end = os.pipe()
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *worker_command(self.launch.python, BATCH_MODULE), "--reply-fd", str(write_end),
                "--parent-pid", str(os.getpid()), env=self.launch.env, stdin=asyncio.subprocess.PIPE,
                stdout=outputs[0], stderr=outputs[1], pass_fds=(write_end,), start_new_session=True)
        finally:
            os.close(write_end)
            for out in outputs:
                out.close()
        children.started(self.proc.pid, "batch", self.name)
        loop = asyncio.get_running_loop()
        self.replies = asyncio.StreamReader(limit=2**24)
        self._transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(self.replies), os.fdopen(read_end, "rb"))  # type: ignore[arg-type]
        first = await self.reply()
        if not first.get("ready"):
            raise WorkerFailed(first.get("error") or "the worker ended before it was ready")
        return first

    async def reply(self) -> dict[str, Any]:
        assert self.replies is not None
        line = await self.replies.readline()
        if not line:
            code = await self.proc.wait() if self.proc else None
            return {"ok": False, "ready": False, "error": f"the worker process ended (exit code {code}); its "
                    f"output is in logs/user/stderr/{self.name}.txt"}
        return json.loads(line)

    async def score(self, batch: MiniBatch, part: Path) -> dict[str, Any]:
        assert self.proc and self.proc.stdin
        self.proc.stdin.write(json.dumps({"idx": batch.idx, "files": batch.files, "part": str(part)}).encode()
                              + b"\n")
        await self.proc.stdin.drain()
        return await self.reply()

    async def stop(self, grace: float = 5.0) -> None:
        """Asked to end (stdin closed), then SIGTERM and SIGKILL to its process group if it lingers."""
        proc = self.proc
        if proc is None:
            return
        if proc.returncode is None and proc.stdin:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        for sig, wait in ((None, grace), (signal.SIGTERM, STOP_GRACE), (signal.SIGKILL, None)):
            if proc.returncode is not None:
                break
            if sig is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, sig)
            try:
                await asyncio.wait_for(proc.wait(), wait)
            except TimeoutError:
                continue
        children.ended(proc.pid)
        if self._transport is not None:
            self._transport.close()

    def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")


@dataclass
class JobRunner:
    registry: Registry
    job: JobRecord
    job_dir: Path  # parts/, logs/ (and outputs/score/ unless the invoke gave --output-path)
    launch: Launch
    on_change: Callable[[], None] = lambda: None
    batches: list[MiniBatch] = field(default_factory=list)
    stopping: str | None = None  # "Canceled", or "Failed" (error threshold passed)
    _dirty: dict[int, MiniBatch] = field(default_factory=dict)
    _workers: list[Worker] = field(default_factory=list)
    _queue: asyncio.Queue[MiniBatch | None] = field(default_factory=asyncio.Queue)
    _started: float = 0.0
    _left: int = 0  # mini-batches not yet done or failed: the job ends at 0
    _merger: Merger | None = None  # append_row: the output, grown as mini-batches end in order
    _merging: asyncio.Task[None] | None = None
    _merged_upto: int = 0  # the mini-batches before this one are in the output
    _items_done_here: int = 0
    _error: str | None = None

    @property
    def settings(self) -> Any:
        return self.job.spec.settings

    def progress(self) -> Progress:
        elapsed = time.monotonic() - self._started if self._started else 0.0
        rate = self._items_done_here / elapsed if elapsed > 1 and self._items_done_here else None
        return Progress.of(self.batches, rate)

    # -- the run ------------------------------------------------------------------------------

    async def run(self) -> str:
        """To the end: the job's final state (Completed, Failed, Canceled)."""
        self.batches = await asyncio.to_thread(self.registry.mini_batches, self.job.name)
        self._left = sum(b.status not in FINAL for b in self.batches)
        for b in self.batches:
            if b.status == "running":  # in flight when a daemon was killed: runs again
                self._mark(b, "pending")
        (self.job_dir / "parts").mkdir(parents=True, exist_ok=True)
        Path(self.job.output_dir).mkdir(parents=True, exist_ok=True)
        if self.settings.output_action == "append_row":
            self._merger = Merger(Path(self.job.output_dir) / self.settings.output_file_name)
        queue = self._queue
        for b in self.batches:
            if b.status == "pending":
                queue.put_nowait(b)
        count = plan.worker_count(self.job.spec.resources.instance_count, self.settings.max_concurrency_per_instance,
                                  queue.qsize())
        self._workers = [Worker(i, self.job_dir, self.launch) for i in range(count)]
        await self._set_status("Running")
        self._overview(f"{len(self.batches)} mini-batches of at most {self.settings.mini_batch_size} file(s); "
                       f"{count} worker process(es); {queue.qsize()} mini-batch(es) to run")
        flusher = asyncio.create_task(self._flush_loop())
        self._started = time.monotonic()
        # Workers are asked to end as soon as the work is done; the output is merged meanwhile (an
        # interpreter with onnxruntime takes a while to exit), and they are waited for before returning.
        stopped: asyncio.Future[Any] | None = None
        try:
            if queue.qsize():
                await asyncio.gather(*(self._work(w) for w in self._workers))
            stopped = asyncio.gather(*(w.stop(grace=0 if self.stopping else 5.0) for w in self._workers))
            await self._flush()
            return await self._finish()
        finally:
            flusher.cancel()
            if stopped is None:  # interrupted (the daemon stops): the job stays unfinished in the ledger
                stopped = asyncio.gather(*(w.stop(grace=0) for w in self._workers))
                await self._flush()
            await asyncio.shield(stopped)

    async def _work(self, worker: Worker) -> None:
        """One worker's loop: take a mini-batch, score it, retry or record it, until none is left."""
        started = False
        queue = self._queue
        while not self.stopping:
            batch = await queue.get()
            if batch is None or self.stopping:
                break
            if not started:
                try:
                    await worker.start()
                except WorkerFailed as exc:  # init() or the model load fails the same way in every worker
                    queue.put_nowait(batch)
                    self._stop("Failed", f"a worker could not start: {exc}")
                    break
                started = True
            self._mark(batch, "running", attempts=batch.attempts + 1)
            answer = await self._score(worker, batch)
            if self.stopping:
                break
            if answer.get("ok"):
                items = int(answer.get("items", 0))
                self._mark(batch, "done", succeeded=items, failed=max(len(batch.files) - items, 0), error=None)
                self._items_done_here += len(batch.files)
            else:
                error = str(answer.get("error") or "failed")
                retry = batch.attempts <= self.settings.retry_settings.max_retries
                self._log_error(f"mini-batch {batch.idx} ({len(batch.files)} file(s)), attempt {batch.attempts} of "
                                f"{self.settings.retry_settings.max_retries + 1}: {error}"
                                + ("; retried" if retry else "; failed, no retry left"))
                if retry:
                    self._mark(batch, "pending", error=error)
                    queue.put_nowait(batch)
                else:
                    self._mark(batch, "failed", succeeded=0, failed=len(batch.files), error=error)
                if answer.get("restart"):
                    started = False
                failed_items = sum(b.failed for b in self.batches)
                if plan.over_threshold(failed_items, self.settings.error_threshold):
                    last = (error.strip().splitlines() or [error])[-1]
                    self._stop("Failed", f"{failed_items} failed item(s) exceed error_threshold "
                                         f"{self.settings.error_threshold}; last error: {last}")
            if self._left == 0:
                self._release()
                break

    def _release(self) -> None:
        """Workers waiting for work that will not come end their loops."""
        for _ in self._workers:
            self._queue.put_nowait(None)

    def _stop(self, status: str, error: str | None) -> None:
        if self.stopping is None:
            self.stopping, self._error = status, error
            if error:
                self._log_error(error)
        for w in self._workers:
            w.kill()
        self._release()

    async def _score(self, worker: Worker, batch: MiniBatch) -> dict[str, Any]:
        """The worker's answer; a timeout or a dead worker is a failed attempt, and the worker starts again."""
        timeout = self.settings.retry_settings.timeout
        part = self.job_dir / "parts" / f"{batch.idx:06d}"
        try:
            answer = await asyncio.wait_for(worker.score(batch, part), timeout)
        except TimeoutError:
            worker.kill()
            await worker.stop(grace=0)
            return {"ok": False, "restart": True,
                    "error": f"timed out: run() took longer than retry_settings.timeout ({timeout} s)"}
        except (ConnectionError, BrokenPipeError) as exc:
            await worker.stop(grace=0)
            return {"ok": False, "restart": True, "error": f"the worker process ended: {exc}"}
        if "ready" in answer:  # the reply pipe closed: the worker died mid-mini-batch
            await worker.stop(grace=0)
            answer["restart"] = True
        return answer

    def _mark(self, batch: MiniBatch, status: str, **changes: Any) -> None:
        self._left -= status in FINAL and batch.status not in FINAL
        batch.status = status
        for name, value in changes.items():
            setattr(batch, name, value)
        self._dirty[batch.idx] = batch
        self.on_change()
        if status in FINAL and self._merger is not None and (self._merging is None or self._merging.done()):
            self._merging = asyncio.get_running_loop().create_task(self._merge_ready())

    async def _merge_ready(self) -> None:
        """Parts into the output, in mini-batch order, as far as the mini-batches are over."""
        assert self._merger is not None
        while self._merged_upto < len(self.batches) and self.batches[self._merged_upto].status in FINAL:
            batch = self.batches[self._merged_upto]
            if batch.status == "done":
                for suffix in (".txt", ".arrow"):
                    part = self.job_dir / "parts" / f"{batch.idx:06d}{suffix}"
                    if part.exists():
                        await asyncio.to_thread(self._merger.add, part)
            self._merged_upto += 1

    async def _merged(self) -> None:
        """Every part merged: the merge under way, then what it did not reach."""
        if self._merging is not None:
            await self._merging
        await self._merge_ready()

    def cancel(self) -> None:
        """Stops the job: its workers are killed at once."""
        self._stop("Canceled", None)

    # -- bookkeeping --------------------------------------------------------------------------

    async def _flush_loop(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            await self._flush()
            if time.monotonic() - last >= OVERVIEW_SECONDS:
                last = time.monotonic()
                self._overview(self._summary())

    async def _flush(self) -> None:
        if self._dirty:
            changed, self._dirty = list(self._dirty.values()), {}
            rows = [MiniBatch(**{f: getattr(b, f) for f in MiniBatch.__struct_fields__}) for b in changed]
            await asyncio.to_thread(self.registry.record_mini_batches, self.job.name, rows)

    async def _set_status(self, status: str, error: str | None = None) -> None:
        await asyncio.to_thread(self.registry.set_job_status, self.job.name, status, error)
        self.on_change()

    def _summary(self) -> str:
        p = self.progress()
        rate = f", {p.items_per_second} items/s" if p.items_per_second else ""
        return (f"{p.mini_batches_done + p.mini_batches_failed} of {p.mini_batches} mini-batches processed "
                f"({p.mini_batches_failed} failed); {p.items_succeeded} of {p.items} items succeeded, "
                f"{p.items_failed} failed, {p.retries} retries{rate}")

    def _overview(self, text: str) -> None:
        with (self._logs() / "job_progress_overview.txt").open("a") as out:
            out.write(f"{_stamp()} {text}\n")

    def _log_error(self, text: str) -> None:
        with (self._logs() / "job_error.txt").open("a") as out:
            out.write(f"{_stamp()} {text.rstrip()}\n")

    def _logs(self) -> Path:
        folder = self.job_dir / "logs"
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    async def _finish(self) -> str:
        status = self.stopping or "Completed"
        error = self._error if status == "Failed" else None
        if self._merger is not None:
            try:
                if status == "Completed":
                    await self._merged()
                    await asyncio.to_thread(self._merger.commit)
                    shutil.rmtree(self.job_dir / "parts", ignore_errors=True)
                elif self._merging is not None:
                    await asyncio.gather(self._merging, return_exceptions=True)
            except OSError as exc:
                status, error = "Failed", f"the output could not be written: {exc}"
            finally:
                await asyncio.to_thread(self._merger.discard)  # a job that did not complete leaves no output
        await asyncio.to_thread(self._report, status, error)
        await self._set_status(status, error)
        return status

    def _report(self, status: str, error: str | None) -> None:
        summary = self._summary()
        self._overview(f"{status}: {summary}")
        with (self._logs() / "job_result.txt").open("w") as out:
            out.write(f"{status}\n{summary}\n" + (f"{error}\n" if error else ""))
        report = self._logs() / "sys" / "job_report"
        report.mkdir(parents=True, exist_ok=True)
        with (report / "processed_mini-batches.csv").open("w") as out:
            out.write("mini_batch,status,attempts,succeeded,failed,files\n")
            for b in self.batches:
                files = " ".join(os.path.basename(f) for f in b.files)
                out.write(f"{b.idx},{b.status},{b.attempts},{b.succeeded},{b.failed},\"{files}\"\n")
