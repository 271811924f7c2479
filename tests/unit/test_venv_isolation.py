"""An environment's venv: the worker's pins (what it imports to serve, at the daemon's own versions), the
venv's name changing with them, and the worker's path (this daemon's `appliance` package, nothing else)."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import appliance
from appliance.builder import venv
from appliance.runtime.plan import LaunchPlan
from appliance.runtime.process import ProcessInstance


def version(dist: str) -> str:
    return importlib.metadata.version(dist)


def pinned(pins: list[str]) -> dict[str, str]:
    return {venv.canonical(p.split("==")[0]): p.split("==")[1] for p in pins}


def test_a_scripts_venv_gets_the_server_and_azures_script_packages_at_the_daemons_versions() -> None:
    pins = pinned(venv.worker_pins(["numpy"]))
    for dist in ("httptools", "uvloop", "msgspec", "flask", "inference-schema", "click",
                 "werkzeug"):  # and what they need in turn
        assert pins[dist] == version(dist)
    assert "numpy" not in pins  # the environment's own, unpinned
    assert not {"onnxruntime", "onnxruntime-gpu", "duckdb", "litestar", "httpx", "textual", "docker",
                "watchfiles", "scikit-learn", "uvicorn"} & pins.keys()


def test_numpy_and_onnxruntime_only_for_a_no_code_onnx_model() -> None:
    assert "numpy" not in pinned(venv.worker_pins(["six"]))
    pins = pinned(venv.worker_pins(["six"], onnx=True))
    runtime = venv.canonical(importlib.metadata.packages_distributions()["onnxruntime"][0])
    assert pins["numpy"] == version("numpy") and pins[runtime] == version(runtime)
    assert "flask" not in pins and "inference-schema" not in pins


def test_what_the_environment_names_is_its_own() -> None:
    pins = pinned(venv.worker_pins(["Flask==2.3.*", "click<8", "onnxruntime==1.19.2", "numpy==1.26.*"], onnx=True))
    assert not {"flask", "click", "numpy", "onnxruntime", "onnxruntime-gpu"} & pins.keys()
    assert pins["httptools"] == version("httptools")


def test_named_reads_names_not_options_paths_or_urls() -> None:
    assert venv.named(["scikit_learn[all]>=1.4", "numpy==1.26.*", "pkg @ https://example.com/pkg.whl",
                       "git+https://example.com/x.git", "-r requirements.txt", "./local", "/abs/path.whl"]) == \
        {"scikit-learn", "numpy", "pkg"}
    assert "onnxruntime" in venv.named(["onnxruntime-gpu==1.19"])  # any build of it


def test_the_venvs_name_changes_with_the_workers_pins() -> None:
    reqs = ["numpy"]
    pins = venv.worker_pins(reqs)
    assert venv.digest(reqs, pins) != venv.digest(reqs)  # a venv of the fallback days is not reused
    assert venv.digest(reqs, pins) != venv.digest(reqs, [*pins[:-1], pins[-1] + ".post1"])
    assert venv.digest(reqs, pins) == venv.digest(list(reqs), list(pins))
    assert venv.digest(reqs, pins) != venv.digest(reqs, venv.worker_pins(reqs, onnx=True))


def test_the_worker_path_holds_only_this_daemons_appliance_package(tmp_path: Path) -> None:
    folder = venv.worker_path(tmp_path / "worker-path")
    assert os.listdir(folder) == ["appliance"]
    assert (folder / "appliance").resolve() == Path(appliance.__file__).resolve().parent
    assert venv.worker_path(folder) == folder and os.listdir(folder) == ["appliance"]  # again: as it was
    (folder / "appliance").unlink()
    (folder / "appliance").symlink_to(tmp_path)  # another daemon's, say: replaced
    assert (venv.worker_path(folder) / "appliance").resolve() == Path(appliance.__file__).resolve().parent


def plan(**changes: object) -> LaunchPlan:
    base = {"endpoint": "ep", "deployment": "blue", "instance_count": 1, "model_name": None,
            "model_version": None, "model_dir": None, "code_dir": "/code", "scoring_script": "score.py"}
    return LaunchPlan(**{**base, **changes})  # type: ignore[arg-type]


def test_a_venv_worker_gets_the_worker_path_and_not_the_daemons(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", "/the/daemons/own")
    env = ProcessInstance("i", plan(python="/envs/x/bin/python"), tmp_path / "i0.sock", tmp_path / "l").environment()
    assert env["PYTHONPATH"] == str(tmp_path / "worker-path")
    assert os.listdir(tmp_path / "worker-path") == ["appliance"]
    own = plan(python="/envs/x/bin/python", environment_variables=(("PYTHONPATH", "/mine"),))
    env = ProcessInstance("i", own, tmp_path / "i0.sock", tmp_path / "l").environment()
    assert env["PYTHONPATH"] == f"{tmp_path / 'worker-path'}{os.pathsep}/mine"  # the deployment's own, after
    # In the daemon's own interpreter (no environment): as it was.
    assert ProcessInstance("i", plan(), tmp_path / "i0.sock", tmp_path / "l").environment()["PYTHONPATH"] == \
        "/the/daemons/own"


def test_the_scoring_modules_import_none_of_the_heavy_packages() -> None:
    code = ("import sys; import appliance.scoring.app, appliance.scoring.onnx_model, appliance.scoring.script, "
            "appliance.scoring.swagger, appliance.scoring.server; print(__import__('json').dumps(sorted(sys.modules)))")
    loaded = set(json.loads(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                                           text=True).stdout))
    heavy = {"numpy", "onnxruntime", "flask", "inference_schema", "duckdb", "docker", "textual", "click",
             "watchfiles", "litestar", "httpx", "uvicorn"}
    assert not heavy & {m.split(".")[0] for m in loaded}
