"""The daemon's child processes (workers, pip builds), recorded in its home so that none outlives it.

Workers end with their daemon on their own (a parent-death signal, set by `appliance.scoring`).
These records cover the rest: a daemon that is killed (`kill -9`, the OOM killer) leaves them
behind, and the next daemon on the same home ends every recorded process that is still the one
recorded (same pid and same start time: a recycled pid is left alone), removes the half-built
venvs of dead pids and the killed daemon's temporary run folder.

`$APPLIANCE_HOME/run/<pid>.json` holds one child, `run/daemon.json` the daemon that owns the home.
Only the daemon records anything (`use`); elsewhere `started` and `ended` do nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

DAEMON = "daemon.json"
# envs/.<digest>.<pid> and envs/.wheels/.<digest>.<pid>: a venv, or the worker's wheels, being built by <pid>
_STAGING = re.compile(r"^\.[0-9a-f]+\.(\d+)$")


@dataclass
class Leftovers:
    processes: int = 0
    venvs: int = 0
    run_dirs: int = 0

    def __bool__(self) -> bool:
        return bool(self.processes or self.venvs or self.run_dirs)

    def __str__(self) -> str:
        return (f"{self.processes} process(es), {self.venvs} half-built venv(s), "
                f"{self.run_dirs} run folder(s)")


class Children:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def add(self, pid: int, kind: str, name: str = "") -> None:
        try:
            started = psutil.Process(pid).create_time()
        except psutil.Error:  # already gone
            return
        self._write(self.folder / f"{pid}.json", {"pid": pid, "started": started, "kind": kind, "name": name,
                                                  "daemon": os.getpid()})

    def discard(self, pid: int) -> None:
        (self.folder / f"{pid}.json").unlink(missing_ok=True)

    def claim(self, run_dir: Path, envs: Path) -> Leftovers:
        """At start-up, with the home locked: whatever an earlier daemon left, ended or removed; then
        this daemon and its run folder recorded."""
        self.folder.mkdir(mode=0o700, exist_ok=True)
        left = Leftovers()
        victims: list[psutil.Process] = []
        for path in self.folder.glob("*.json"):
            if path.name != DAEMON:
                victims += _still_running(_read(path))
                path.unlink(missing_ok=True)
        for proc in victims:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        _wait_gone(victims, 5.0)
        left.processes = len(victims)
        for folder in (envs, envs / ".wheels"):  # after the builds were ended: nothing writes there any more
            for path in folder.iterdir() if folder.is_dir() else ():
                match = _STAGING.match(path.name)
                if match and path.is_dir() and int(match.group(1)) != os.getpid() \
                        and not psutil.pid_exists(int(match.group(1))):
                    shutil.rmtree(path, ignore_errors=True)
                    left.venvs += 1
        old = _read(self.folder / DAEMON).get("run_dir")
        if isinstance(old, str) and _is_run_dir(Path(old)) and Path(old) != run_dir and Path(old).exists():
            shutil.rmtree(old, ignore_errors=True)
            left.run_dirs += 1
        me = psutil.Process()
        self._write(self.folder / DAEMON, {"pid": me.pid, "started": me.create_time(), "run_dir": str(run_dir)})
        return left

    def release(self) -> None:
        """At a clean stop, its run folder removed. Children still recorded are still running (a build
        the stop did not wait for): the next daemon ends them."""
        (self.folder / DAEMON).unlink(missing_ok=True)

    @staticmethod
    def _write(path: Path, record: dict[str, Any]) -> None:
        temporary = path.with_name(f".{path.name}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(record) + "\n")
        os.replace(temporary, path)


def _read(path: Path) -> dict[str, Any]:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _still_running(record: dict[str, Any]) -> list[psutil.Process]:
    """The recorded process and its descendants, if it still is the process recorded."""
    try:
        proc = psutil.Process(int(record["pid"]))
        if abs(proc.create_time() - float(record["started"])) > 0.05 or proc.pid == os.getpid():
            return []  # the pid was recycled: someone else's process now
        return [proc, *proc.children(recursive=True)]
    except (psutil.Error, KeyError, ValueError, TypeError):
        return []


def _wait_gone(procs: list[psutil.Process], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not all(_gone(p) for p in procs):
        time.sleep(0.02)


def _gone(proc: psutil.Process) -> bool:
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


def _is_run_dir(path: Path) -> bool:
    """Only a folder the daemon makes for itself (`tempfile.mkdtemp(prefix="appliance-")`) is removed."""
    return path.is_absolute() and path.parent == Path(tempfile.gettempdir()) and path.name.startswith("appliance-")


_records: Children | None = None


def use(records: Children | None) -> None:
    """The daemon's records (None: record nothing)."""
    global _records
    _records = records


def started(pid: int, kind: str, name: str = "") -> None:
    if _records is not None:
        with contextlib.suppress(OSError):
            _records.add(pid, kind, name)


def ended(pid: int | None) -> None:
    if _records is not None and pid is not None:
        with contextlib.suppress(OSError):
            _records.discard(pid)
