"""Scheduled model monitors in the daemon: create (checked, its first run planned), run now, and the
scheduler that runs each due monitor off the event loop, stores its signals, records an event for each
failing signal (`monitor.signal`), and plans the next run from the trigger (`schedule.next_run`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from appliance.daemon import background
from appliance.registry import Registry
from appliance.registry.records import MonitorRecord, MonitorRun
from appliance.specs import NotFound, SpecError, split_ref
from appliance.telemetry import schedule, signals

log = logging.getLogger("appliance.monitors")

TICK = 30.0  # seconds between looks at the registry at most; a create wakes the scheduler at once


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Monitors:
    """`clock` (naive UTC) and `tick` are injectable: tests run the scheduler's loop in virtual time."""

    def __init__(self, registry: Registry, *, clock: Callable[[], datetime] = _now, tick: float = TICK) -> None:
        self.registry = registry
        self.clock = clock
        self.tick = tick
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._current: asyncio.Future[MonitorRun | None] | None = None

    # -- create ---------------------------------------------------------------------------------

    def _resolve(self, base: Path | None) -> signals.Resolve:
        def resolve(value: str, field: str) -> str:
            if value.startswith("azureml:"):
                name, version = split_ref(value, field)
                data = self.registry.find_data(name, version)
                if data is None:
                    raise NotFound(f"{field}: data asset {value!r} is not registered (see `appliance data list`)",
                                   field=field)
                return str(self.registry.artifacts.path(data.digest) / data.path_name)
            if "://" in value:
                raise SpecError(f"{value[:200]!r}: a local file or folder, or a data asset azureml:NAME:VERSION; "
                                "there is no cloud storage here", field=field)
            path = Path(value)
            if not path.is_absolute():
                if base is None:
                    raise SpecError(f"{value[:200]!r}: a relative path needs the document's folder", field=field)
                path = base / path
            if not path.exists():
                raise SpecError(f"{value[:200]!r}: no such file or folder ({path})", field=field)
            return str(path.resolve())
        return resolve

    def create(self, body: dict[str, Any], base: Path | None) -> MonitorRecord:
        """Checks the document, its deployment and reference data; stores it (replacing one of its name)."""
        now = self.clock()
        spec = signals.parse(body, now, self._resolve(base))
        self.registry.get_deployment(spec["endpoint"], spec["deployment"])  # 404 for an unknown one
        with self.registry.transaction():
            existed = self.registry.find_monitor(spec["name"]) is not None
            record = self.registry.put_monitor(spec, schedule.next_run(schedule.from_dict(spec["trigger"]), now))
            self.registry.add_event("monitor.updated" if existed else "monitor.created",
                                    f"{spec['endpoint']}/{spec['deployment']}", monitor=spec["name"])
        return record

    def wake(self) -> None:
        """On the event loop, after a create: the scheduler looks again (the new monitor may be due first)."""
        self._wake.set()

    def delete(self, name: str) -> None:
        record = self.registry.get_monitor(name)
        with self.registry.transaction():
            self.registry.delete_monitor(name)
            self.registry.add_event("monitor.deleted", f"{record.endpoint_name}/{record.deployment_name}",
                                    monitor=name)

    # -- runs -----------------------------------------------------------------------------------

    def run(self, name: str, scheduled: bool = False) -> MonitorRun | None:
        """Runs the monitor now (blocking: call it off the event loop). A scheduled run plans the next; a
        run asked for keeps the plan. None if the monitor was deleted meanwhile."""
        record = self.registry.get_monitor(name)
        now = self.clock()
        if self.registry.find_deployment(record.endpoint_name, record.deployment_name) is None:
            result: dict[str, Any] = {"at": now.isoformat(), "status": "error", "signals": {}, "error": (
                f"deployment {record.endpoint_name}/{record.deployment_name} does not exist (any more)")}
        else:
            result = signals.run(self.registry.home, record.spec, now)
        following = schedule.next_run(schedule.from_dict(record.spec["trigger"]), now) if scheduled \
            else record.next_run_at
        subject = f"{record.endpoint_name}/{record.deployment_name}"
        with self.registry.transaction():  # the run and its events seen together
            stored = self.registry.add_monitor_run(name, now, result, following)
            if stored is None:
                return None
            for signal, outcome in result["signals"].items():
                if outcome["status"] in ("failed", "error"):
                    self.registry.add_event("monitor.signal", subject, monitor=name, signal=signal,
                                            status=outcome["status"], failed_features=outcome["failed_features"])
            if result.get("error"):
                self.registry.add_event("monitor.signal", subject, monitor=name, status="error",
                                        error=result["error"])
        return stored

    async def run_due(self) -> int:
        """Runs every monitor due by the clock, one after the other, off the event loop; how many ran."""
        due = await asyncio.to_thread(self.registry.due_monitors, self.clock())
        ran = 0
        for record in due:
            try:
                # shielded: a stop waits for the run in its thread rather than close the registry under it
                self._current = asyncio.ensure_future(background.run(self.run, record.name, True))
                if await asyncio.shield(self._current) is not None:
                    ran += 1
            except NotFound:
                continue  # deleted since it was found due
            except Exception:
                log.exception("monitor %s: the run failed", record.name)
                # planned on regardless: a monitor that always fails must not run at every tick
                await asyncio.to_thread(self._skip, record)
        return ran

    def _skip(self, record: MonitorRecord) -> None:
        now = self.clock()
        self.registry.add_monitor_run(record.name, now, {"at": now.isoformat(), "status": "error", "signals": {},
                                                         "error": "the run failed; see the daemon log"},
                                      schedule.next_run(schedule.from_dict(record.spec["trigger"]), now))

    async def _loop(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.run_due()
                upcoming = await asyncio.to_thread(self.registry.next_monitor_run)
            except Exception:
                log.exception("monitors: the scheduler's round failed")
                upcoming = None
            wait = self.tick
            if upcoming is not None:
                wait = max(0.0, min(wait, (upcoming - self.clock()).total_seconds()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=wait)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="monitor scheduler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._current is not None:
            await asyncio.wait([self._current])
            self._current = None
