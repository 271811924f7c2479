"""`appliance up` on a real terminal (tmux): the daemon as a child process with the UI attached;
quitting asks whether to stop it; "keep serving" leaves it serving until Ctrl-C."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from conftest import APPLIANCE, free_port, wait_until

assert shutil.which("tmux"), "tmux is needed: install.sh --test installs it"


def screen(session: str) -> str:
    return subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True).stdout


@pytest.fixture
def session(tmp_path: Path) -> Iterator[tuple[str, int, Path]]:
    name, port = f"up-{tmp_path.name}"[:40], free_port()
    home = tmp_path / "home"
    command = f"APPLIANCE_HOME={home} {APPLIANCE} up --port {port}; echo EXIT=$?; sleep 30"
    subprocess.run(["tmux", "new-session", "-d", "-s", name, "-x", "100", "-y", "30", command], check=True)
    yield name, port, home
    subprocess.run(["tmux", "kill-session", "-t", name], capture_output=True)


def healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def daemons(port: int) -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["cmdline"]) if "--headless" in (p.info["cmdline"] or [])
            and str(port) in (p.info["cmdline"] or [])]


def test_up_runs_the_daemon_beside_the_ui_and_stops_it_on_quit(session: tuple[str, int, Path]) -> None:
    name, port, home = session
    wait_until(lambda: "endpoints (0)" in screen(name), 30, "the UI's endpoints view")
    assert healthy(port) and len(daemons(port)) == 1  # the daemon is a process of its own
    assert f"http://localhost:{port}" in screen(name) and (home / "daemon.json").exists()
    subprocess.run(["tmux", "send-keys", "-t", name, "q"], check=True)
    wait_until(lambda: "Stop the daemon too?" in screen(name), 10, "the quit question")
    subprocess.run(["tmux", "send-keys", "-t", name, "y"], check=True)
    wait_until(lambda: "EXIT=0" in screen(name), 30, "a clean exit")
    assert not healthy(port) and not daemons(port)


def test_keep_serving_after_the_ui_closes(session: tuple[str, int, Path]) -> None:
    name, port, _ = session
    wait_until(lambda: "endpoints (0)" in screen(name), 30, "the UI's endpoints view")
    subprocess.run(["tmux", "send-keys", "-t", name, "q"], check=True)
    wait_until(lambda: "Stop the daemon too?" in screen(name), 10, "the quit question")
    subprocess.run(["tmux", "send-keys", "-t", name, "n"], check=True)
    wait_until(lambda: "the terminal UI closed" in screen(name), 10, "the note")
    assert healthy(port)
    subprocess.run(["tmux", "send-keys", "-t", name, "C-c"], check=True)
    wait_until(lambda: "EXIT=" in screen(name), 30, "an exit after Ctrl-C")
    assert "EXIT=0" in screen(name), screen(name)
    assert not healthy(port) and not daemons(port)
