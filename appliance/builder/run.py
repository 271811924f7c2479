"""Running an installer or a build, its output streamed line by line to whoever waits on it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from appliance import children

Say = Callable[[str], Any]


class BuildError(RuntimeError):
    """A build failed; the message says which step and ends with the tail of its output."""


def host_environment(env: dict[str, str] | None = None) -> dict[str, str]:
    """`env` (default: this process's) for a program of the machine, such as its python3: in the
    one-file build, without the library path that points at the binary's own unpacked libraries
    (PyInstaller keeps the user's in LD_LIBRARY_PATH_ORIG)."""
    env = dict(os.environ if env is None else env)
    if getattr(sys, "frozen", False):
        orig = env.pop("LD_LIBRARY_PATH_ORIG", None)
        if orig is None:
            env.pop("LD_LIBRARY_PATH", None)
        else:
            env["LD_LIBRARY_PATH"] = orig
    return env


def run(command: list[str], say: Say, what: str) -> None:
    tail: list[str] = []
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env=host_environment()) as proc:
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
