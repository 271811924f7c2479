"""Running an installer or a build, its output streamed line by line to whoever waits on it."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from typing import Any

from appliance import children

Say = Callable[[str], Any]


class BuildError(RuntimeError):
    """A build failed; the message says which step and ends with the tail of its output."""


def run(command: list[str], say: Say, what: str) -> None:
    tail: list[str] = []
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        children.started(proc.pid, "build", what)  # ended by the next daemon, should this one be killed
        try:
            assert proc.stdout
            for line in proc.stdout:
                say(line.rstrip())
                tail = [*tail[-19:], line.rstrip()]
        finally:
            proc.wait()
            children.ended(proc.pid)
    if proc.returncode != 0:
        raise BuildError(f"{what} failed (exit code {proc.returncode}):\n" + "\n".join(tail))
