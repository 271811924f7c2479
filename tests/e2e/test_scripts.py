"""Scoring scripts in their own environments, supervision, logs, scaling, rolling replace and
hot reload — each under a real daemon, with real child processes and real venvs."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from conftest import Daemon, wait_until

ENDPOINT = "name: my-ep\nauth_mode: key\n"
VERSION_SCRIPT = """\
import json, os, sys
import six

def init():
    print("init in", sys.prefix, flush=True)

def run(raw_data):
    return {"six": six.__version__, "prefix": sys.prefix, "mode": os.environ.get("MODE", "")}
"""
ECHO = "def init():\n    pass\n\ndef run(raw_data):\n    return {'answer': %r}\n"


def write(project: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(text)
    return project


def deployment(name: str, code: str, extra: str = "") -> str:
    return (f"name: {name}\nendpoint_name: my-ep\ncode_configuration:\n  code: ./{code}\n"
            f"  scoring_script: score.py\n{extra}")


async def _load_until(daemon: Daemon, key: str, stop: asyncio.Event, concurrency: int = 4,
                      **headers: str) -> list[httpx.Response]:
    results: list[httpx.Response] = []
    async with httpx.AsyncClient(base_url=daemon.url, timeout=30,
                                 headers={"authorization": f"Bearer {key}", **headers}) as client:
        async def worker() -> None:
            while not stop.is_set():
                results.append(await client.post("/endpoints/my-ep/score", json={}))
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return results


def under_load(daemon: Daemon, action: "callable", **headers: str) -> list[httpx.Response]:  # noqa: UP037
    """Run `action` (blocking, in a thread) while clients keep scoring; every response returned."""
    key = daemon.key("my-ep")

    async def scenario() -> list[httpx.Response]:
        stop = asyncio.Event()
        load = asyncio.create_task(_load_until(daemon, key, stop, **headers))
        await asyncio.sleep(0.3)
        await asyncio.to_thread(action)
        await asyncio.sleep(0.3)
        stop.set()
        return await load

    return asyncio.run(scenario())


def test_environment_venv_is_built_once_and_shared(daemon: Daemon, tmp_path: Path) -> None:
    project = write(tmp_path / "p", {
        "endpoint.yml": ENDPOINT,
        "env/conda.yml": "name: six-env\ndependencies:\n  - python=3.11\n  - pip\n  - pip:\n    - six==1.16.0\n",
        "env.yml": "name: six-env\nimage: mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04\n"
                   "conda_file: env/conda.yml\n",
        "code/score.py": VERSION_SCRIPT,
        "blue.yml": deployment("blue", "code", "environment: azureml:six-env:1\n"),
        "green.yml": deployment("green", "code", "environment: azureml:six-env@latest\n"),
    })
    applied = daemon.cli("apply", "-f", "endpoint.yml", "-f", "env.yml", "-f", "blue.yml", "-f", "green.yml",
                         cwd=project)
    assert "building environment venv" in applied.stderr and "six" in applied.stderr  # progress, as it happens
    envs = [p for p in (daemon.home / "envs").iterdir() if not p.name.startswith(".")]
    assert len(envs) == 1  # one venv for the two deployments
    for name in ("blue", "green"):
        answer = daemon.score("my-ep", {}, **{"azureml-model-deployment": name}).json()
        assert answer["six"] == "1.16.0" and answer["prefix"] == str(envs[0])
    build = daemon.cli("deployment", "logs", "my-ep", "blue", "--instance", "build").stdout
    assert "six==1.16.0" in build and "ready" in build

    daemon.stop()
    daemon.start()
    answer = wait_until(lambda: (r := daemon.score("my-ep", {}, **{"azureml-model-deployment": "blue"}))
                        .status_code == 200 and r.json(), 30, "blue after a restart")
    assert answer["prefix"] == str(envs[0])
    rebuilt = daemon.cli("deployment", "logs", "my-ep", "blue", "--instance", "build").stdout
    assert rebuilt.count("building environment venv") == 1  # reused, not rebuilt


def test_failed_install_fails_only_that_deployment(daemon: Daemon, tmp_path: Path) -> None:
    project = write(tmp_path / "p", {
        "endpoint.yml": ENDPOINT,
        "code/score.py": ECHO % "ok",
        "conda.yml": "dependencies:\n  - pip:\n    - appliance-no-such-package-anywhere==0.0.1\n",
        "blue.yml": deployment("blue", "code"),
        "bad.yml": deployment("bad", "code", "environment:\n  image: python:3.11-slim\n  conda_file: conda.yml\n"),
    })
    daemon.cli("apply", "-f", "endpoint.yml", "-f", "blue.yml", cwd=project)
    result = daemon.cli("apply", "-f", "bad.yml", cwd=project, check=False)
    assert result.returncode != 0 and "Failed" in result.stderr
    shown = json.loads(daemon.cli("deployment", "show", "my-ep", "bad", "-o", "json").stdout)
    assert shown["provisioning_state"] == "Failed"
    assert "pip install failed" in shown["error"] and "appliance-no-such-package-anywhere" in shown["error"]
    logs = daemon.cli("deployment", "logs", "my-ep", "bad").stdout
    assert "appliance-no-such-package-anywhere" in logs
    assert daemon.score("my-ep", {}).json() == {"answer": "ok"}  # blue is untouched


def test_a_client_expecting_100_continue_gets_the_scripts_answer(daemon: Daemon, tmp_path: Path) -> None:
    """curl sends `Expect: 100-continue` before a large body: the router answers it, and the worker behind
    it sees the request whole (the header is not passed on, so no interim answer comes back through)."""
    project = write(tmp_path / "p", {"endpoint.yml": ENDPOINT, "code/score.py": ECHO % "ok",
                                     "blue.yml": deployment("blue", "code")})
    daemon.cli("apply", "-f", "endpoint.yml", "-f", "blue.yml", cwd=project)
    (project / "big.json").write_text(json.dumps({"data": ["x" * 100] * 200}))
    result = subprocess.run(["curl", "-sS", "-i", "-H", f"Authorization: Bearer {daemon.key('my-ep')}",
                             "-H", "Content-Type: application/json", "-H", "Expect: 100-continue",
                             "--data-binary", "@big.json", f"{daemon.url}/endpoints/my-ep/score"],
                            capture_output=True, text=True, timeout=30, cwd=project)
    assert result.returncode == 0, result.stderr
    head, _, body = result.stdout.replace("\r\n", "\n").rpartition("\n\n")
    assert head.count("HTTP/1.1 100") <= 1 and "HTTP/1.1 200" in head  # curl shows the router's own 100, if any
    assert json.loads(body) == {"answer": "ok"}


def test_init_that_keeps_failing_shows_failed(daemon: Daemon, tmp_path: Path) -> None:
    project = write(tmp_path / "p", {
        "endpoint.yml": ENDPOINT,
        "code/score.py": "def init():\n    raise ValueError('no model file here')\n\ndef run(raw_data):\n    pass\n",
        "blue.yml": deployment("blue", "code"),
    })
    result = daemon.cli("apply", "-f", "endpoint.yml", "-f", "blue.yml", cwd=project, check=False)
    assert result.returncode != 0
    shown = json.loads(daemon.cli("deployment", "show", "my-ep", "blue", "-o", "json").stdout)
    assert shown["provisioning_state"] == "Failed"
    instance = shown["instances"][0]
    assert instance["state"] == "failed" and "no model file here" in instance["error"]
    assert "exit code 3" in instance["error"]
    logs = daemon.cli("deployment", "logs", "my-ep", "blue", "--tail", "50").stdout
    assert "ValueError: no model file here" in logs


def test_deployment_logs_filters(daemon: Daemon, tmp_path: Path) -> None:
    project = write(tmp_path / "p", {
        "endpoint.yml": ENDPOINT,
        "code/score.py": "def init():\n    print('hello from init', flush=True)\n\n"
                         "def run(raw_data):\n    print('scoring', raw_data, flush=True)\n    return 1\n",
        "blue.yml": deployment("blue", "code", "instance_count: 2\n"),
    })
    daemon.cli("apply", "-f", "endpoint.yml", "-f", "blue.yml", cwd=project)
    everything = daemon.cli("deployment", "logs", "my-ep", "blue").stdout
    assert everything.count("hello from init") == 2
    line = next(ln for ln in everything.splitlines() if "hello from init" in ln)
    name, stamp, stream = line.split()[:3]
    assert name.startswith("blue-") and stamp.endswith("Z") and stream == "stdout"
    one = daemon.cli("deployment", "logs", "my-ep", "blue", "--instance", name).stdout
    assert one.count("hello from init") == 1
    assert len(daemon.cli("deployment", "logs", "my-ep", "blue", "--tail", "1").stdout.splitlines()) == 1
    assert daemon.cli("deployment", "logs", "my-ep", "blue", "--since", "5m").stdout.count("hello from init") == 2
    daemon.score("my-ep", {"x": 1})
    wait_until(lambda: "scoring" in daemon.cli("deployment", "logs", "my-ep", "blue").stdout, 10,
               "the request to reach the log")


def test_scale_and_rolling_replace_fail_no_request(daemon: Daemon, tmp_path: Path) -> None:
    project = write(tmp_path / "p", {
        "endpoint.yml": ENDPOINT,
        "code/score.py": VERSION_SCRIPT.replace("import six\n", "").replace('"six": six.__version__, ', ""),
        "blue.yml": deployment("blue", "code", "request_settings:\n  max_concurrent_requests_per_instance: 4\n"),
    })
    daemon.cli("apply", "-f", "endpoint.yml", "-f", "blue.yml", cwd=project)
    before = {i["pid"] for i in json.loads(daemon.cli("deployment", "show", "my-ep", "blue", "-o", "json")
                                           .stdout)["instances"]}

    responses = under_load(daemon, lambda: daemon.cli("deployment", "update", "my-ep", "blue",
                                                      "--set", "instance_count=3"))
    assert responses and [r.status_code for r in responses if r.status_code != 200] == []
    shown = json.loads(daemon.cli("deployment", "show", "my-ep", "blue", "-o", "json").stdout)
    assert len(shown["instances"]) == 3 and {i["state"] for i in shown["instances"]} == {"ready"}
    assert before <= {i["pid"] for i in shown["instances"]}  # scaling kept the running instance

    # A changed spec: new instances first, traffic moves, then the old ones drain — nothing fails.
    responses = under_load(daemon, lambda: daemon.cli("deployment", "update", "my-ep", "blue",
                                                      "--set", "environment_variables.MODE=v2"))
    assert responses and [r.status_code for r in responses if r.status_code != 200] == []
    assert responses[-1].json()["mode"] == "v2"
    after = json.loads(daemon.cli("deployment", "show", "my-ep", "blue", "-o", "json").stdout)
    assert len(after["instances"]) == 3 and not ({i["pid"] for i in after["instances"]} & before)


@pytest.fixture
def watching(tmp_path: Path) -> Daemon:
    d = Daemon(tmp_path / "home", "--watch").start()
    yield d
    if d.proc and d.proc.poll() is None:
        d.stop()


def stored_code(daemon: Daemon) -> list[str]:
    """The score.py of every code snapshot the daemon keeps on disk."""
    return sorted(p.read_text() for p in (daemon.home / "artifacts" / "sha256").glob("*/code/score.py"))


def test_hot_reload(watching: Daemon, tmp_path: Path) -> None:
    daemon = watching
    project = write(tmp_path / "p", {"endpoint.yml": ENDPOINT, "code/score.py": ECHO % "one",
                                     "blue.yml": deployment("blue", "code")})
    daemon.cli("apply", "-f", "endpoint.yml", "-f", "blue.yml", cwd=project)
    assert daemon.score("my-ep", {}).json() == {"answer": "one"}

    def edit() -> None:
        (project / "code" / "score.py").write_text(ECHO % "two")
        started = time.monotonic()
        wait_until(lambda: daemon.score("my-ep", {}).json() == {"answer": "two"}, 10, "the reloaded code")
        print(f"hot reload took {time.monotonic() - started:.2f}s")

    responses = under_load(daemon, edit)
    assert [r.status_code for r in responses if r.status_code != 200] == []
    # Each save is a new snapshot: the replaced one goes once its instances have drained.
    wait_until(lambda: stored_code(daemon) == [ECHO % "two"], 15, "only the running code's snapshot to stay")

    # Code that fails to import: the old instances keep serving, the error shows.
    (project / "code" / "score.py").write_text("def init(:\n")

    def failed() -> bool:
        shown = json.loads(daemon.cli("deployment", "show", "my-ep", "blue", "-o", "json").stdout)
        return bool(shown["error"]) and shown

    shown = wait_until(failed, 30, "the failed reload to show")
    assert "SyntaxError" in shown["error"] and "still serving the previous version" in shown["error"]
    assert daemon.score("my-ep", {}).json() == {"answer": "two"}
    assert stored_code(daemon) == sorted([ECHO % "two", "def init(:\n"])  # the one serving stays

    (project / "code" / "score.py").write_text(ECHO % "three")
    wait_until(lambda: daemon.score("my-ep", {}).json() == {"answer": "three"}, 10, "the mended code")
    wait_until(lambda: stored_code(daemon) == [ECHO % "three"], 15, "the superseded snapshots to go")
    daemon.cli("endpoint", "delete", "my-ep", "--yes")
    assert stored_code(daemon) == []  # a deleted deployment's code goes with it
