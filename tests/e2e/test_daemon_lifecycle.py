"""A control plane you can trust: workers die with their daemon (even `kill -9`), a new daemon removes
what a killed one left in its home, and the daemon binds its port before it restores anything."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import psutil
from conftest import APPLIANCE, Daemon, wait_until

SCRIPT = "def init():\n    pass\n\ndef run(raw_data):\n    return {'ok': True}\n"
SIX_ENV = ("name: six-env\nimage: mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04\n"
           "conda_file:\n  dependencies:\n    - pip:\n      - six==1.16.0\n")


def project(root: Path, extra: str = "") -> Path:
    (root / "code").mkdir(parents=True)
    (root / "code" / "score.py").write_text(SCRIPT)
    (root / "endpoint.yml").write_text("name: my-ep\nauth_mode: key\n")
    (root / "blue.yml").write_text("name: blue\nendpoint_name: my-ep\ncode_configuration:\n  code: ./code\n"
                                   f"  scoring_script: score.py\nruntime: process\n{extra}")
    (root / "env.yml").write_text(SIX_ENV)
    return root


def gone(proc: psutil.Process) -> bool:
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def descendants(pid: int, word: str) -> list[psutil.Process]:
    found = []
    for child in psutil.Process(pid).children(recursive=True):
        try:
            if word in " ".join(child.cmdline()):
                found.append(child)
        except psutil.NoSuchProcess:
            pass
    return found


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_workers_die_with_a_killed_daemon(tmp_path: Path) -> None:
    root = project(tmp_path / "p", "instance_count: 2\n")
    daemon = Daemon(tmp_path / "home").start()
    workers: list[psutil.Process] = []
    try:
        daemon.cli("apply", "-f", "endpoint.yml", "-f", "blue.yml", cwd=root)
        assert daemon.score("my-ep", {}).json() == {"ok": True}
        workers = descendants(daemon.proc.pid, "appliance.scoring")
        assert len(workers) == 2
        daemon.stop(signal.SIGKILL)
        killed = time.monotonic()
        wait_until(lambda: all(gone(w) for w in workers), 2, "the workers to die with their daemon")
        print(f"workers gone {time.monotonic() - killed:.3f}s after kill -9")
        assert len(list((daemon.home / "run").glob("[0-9]*.json"))) == 2  # recorded, for a later daemon
    finally:
        for w in workers:
            if not gone(w):
                w.kill()


def test_a_new_daemon_removes_what_a_killed_one_left(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "run").mkdir(parents=True)
    old_daemon = dead_pid()
    # A worker of a dead daemon, still running (no parent-death signal: an older version, or another OS).
    orphan = subprocess.Popen(["sleep", "300"], start_new_session=True)
    # A live process whose pid was recycled: its record's start time is not its own. It stays.
    stranger = subprocess.Popen(["sleep", "300"], start_new_session=True)
    for proc, started in ((orphan, psutil.Process(orphan.pid).create_time()),
                          (stranger, psutil.Process(stranger.pid).create_time() - 100)):
        (home / "run" / f"{proc.pid}.json").write_text(json.dumps(
            {"pid": proc.pid, "started": started, "kind": "worker", "name": "blue-0", "daemon": old_daemon}))
    # Its half-built venv, and its temporary run folder; a staging folder of a live process stays.
    staging = home / "envs" / f".{'a' * 64}.{old_daemon}"
    (staging / "lib").mkdir(parents=True)
    live_staging = home / "envs" / f".{'b' * 64}.{os.getpid()}"
    live_staging.mkdir()
    run_dir = Path(tempfile.mkdtemp(prefix="appliance-"))
    (run_dir / "i0.sock").write_text("")
    (home / "run" / "daemon.json").write_text(json.dumps({"pid": old_daemon, "run_dir": str(run_dir)}))
    daemon = Daemon(home)
    try:
        daemon.start()
        assert orphan.wait(timeout=5) is not None
        assert stranger.poll() is None
        assert not staging.exists() and live_staging.exists()
        assert not run_dir.exists()
        assert not (home / "run" / f"{orphan.pid}.json").exists()
        record = json.loads((home / "run" / "daemon.json").read_text())
        assert record["pid"] == daemon.proc.pid and Path(record["run_dir"]).is_dir()
        assert "left behind" in daemon.log.read_text()
    finally:
        daemon.stop()
        for proc in (orphan, stranger):
            proc.kill()
            proc.wait()
    assert not Path(record["run_dir"]).exists()  # a clean stop leaves no run folder either
    assert not list((home / "run").glob("*.json"))


def test_a_build_interrupted_by_kill_is_cleaned_up_by_the_next_daemon(tmp_path: Path) -> None:
    root = project(tmp_path / "p", "environment: azureml:six-env:1\n")
    daemon = Daemon(tmp_path / "home").start()
    applying = subprocess.Popen([APPLIANCE, "apply", "-f", "endpoint.yml", "-f", "env.yml", "-f", "blue.yml"],
                                cwd=root, env=daemon.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        old = daemon.proc.pid
        envs = daemon.home / "envs"

        def staging() -> list[Path]:  # the half-built venv, or the worker's wheels being fetched
            return [*envs.glob(f".*.{old}"), *(envs / ".wheels").glob(f".*.{old}")]

        pips = wait_until(lambda: staging() and descendants(old, "pip"), 60, "a build to be under way")
        daemon.stop(signal.SIGKILL)
        left = staging()
        Daemon.start(daemon)
        assert all(gone(p) for p in pips)
        assert not any(s.exists() for s in left)
        wait_until(lambda: json.loads(daemon.cli("deployment", "show", "my-ep", "blue", "-o", "json").stdout)
                   ["provisioning_state"] == "Succeeded", 120, "the restored deployment")  # built afresh
    finally:
        applying.kill()
        applying.wait()
        daemon.stop()


def test_a_port_in_use_is_one_clear_line_and_nothing_is_restored(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "run").mkdir(parents=True)
    orphan = subprocess.Popen(["sleep", "300"], start_new_session=True)
    (home / "run" / f"{orphan.pid}.json").write_text(json.dumps(
        {"pid": orphan.pid, "started": psutil.Process(orphan.pid).create_time(), "kind": "worker",
         "daemon": dead_pid()}))
    try:
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            port = busy.getsockname()[1]
            result = subprocess.run([APPLIANCE, "up", "--headless", "--port", str(port)], capture_output=True,
                                    text=True, timeout=60, env={**os.environ, "APPLIANCE_HOME": str(home)})
        assert result.returncode == 1
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
        assert str(port) in lines[0] and "--port" in lines[0] and "in use" in lines[0], lines
        assert not (home / "appliance.duckdb").exists()  # nothing opened, nothing restored
        assert orphan.poll() is None  # nor cleaned up: that is for a daemon that serves
        assert not (home / "daemon.json").exists()
    finally:
        orphan.kill()
        orphan.wait()


def test_the_port_is_bound_before_state_is_restored_and_serving_means_serving(tmp_path: Path) -> None:
    root = project(tmp_path / "p", "environment: azureml:six-env:1\n")
    daemon = Daemon(tmp_path / "home").start()
    daemon.cli("apply", "-f", "endpoint.yml", "-f", "env.yml", "-f", "blue.yml", cwd=root)
    daemon.stop()
    subprocess.run(["rm", "-rf", str(daemon.home / "envs")], check=True)  # the restore rebuilds it: slow
    build_log = daemon.home / "logs" / "my-ep" / "blue" / "build.log"
    built_before = build_log.stat().st_size
    out = tmp_path / "restart.log"
    with out.open("wb") as sink:
        proc = subprocess.Popen([APPLIANCE, "up", "--headless", "--port", str(daemon.port)], env=daemon.env,
                                stdout=sink, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: build_log.stat().st_size > built_before or proc.poll() is not None, 60,
                   "the restore to rebuild the venv")
        assert proc.poll() is None, out.read_text()
        with socket.create_connection(("127.0.0.1", daemon.port), timeout=2):
            pass  # bound while the restore is still building
        wait_until(lambda: b" serving " in out.read_bytes() or proc.poll() is not None, 120, "serving")
        assert httpx.get(f"{daemon.url}/api/v1/health", headers=daemon.admin, timeout=2).status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


def test_port_zero_serves_on_the_port_it_got(tmp_path: Path) -> None:
    """`--port 0`: the daemon announces the port the system gave it, not 0."""
    home = tmp_path / "home"
    out = tmp_path / "up.log"
    with out.open("wb") as sink:
        proc = subprocess.Popen([APPLIANCE, "up", "--headless", "--port", "0"], stdout=sink, stderr=subprocess.STDOUT,
                                env={**os.environ, "APPLIANCE_HOME": str(home)})
    try:
        url = wait_until(lambda: (json.loads((home / "daemon.json").read_text())["url"]
                                  if (home / "daemon.json").exists() else proc.poll() is not None), 30, "daemon.json")
        assert isinstance(url, str) and not url.endswith(":0"), (url, out.read_text())
        token = (home / "admin.token").read_text().strip()
        assert httpx.get(f"{url}/api/v1/health", headers={"authorization": f"Bearer {token}"},
                         timeout=2).status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)



def test_a_worker_whose_daemon_is_gone_before_it_starts_exits_at_once(tmp_path: Path) -> None:
    """The race the parent-death signal leaves open: the daemon died before the worker asked for it."""
    import sys

    result = subprocess.run([sys.executable, "-m", "appliance.scoring", "--socket", str(tmp_path / "w.sock"),
                             "--parent-pid", str(dead_pid())], capture_output=True, text=True, timeout=30,
                            env={**os.environ, "AZUREML_ENTRY_SCRIPT": "score.py", "AML_APP_ROOT": str(tmp_path)})
    assert result.returncode == 1 and "is gone" in result.stderr, result.stderr
    assert not (tmp_path / "w.sock").exists()
