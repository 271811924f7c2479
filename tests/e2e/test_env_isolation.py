"""A deployment's environment sees its own packages and what the worker needs to serve, nothing of the
daemon's: a score.py importing what its conda file lacks fails with ModuleNotFoundError, as on Azure."""

from __future__ import annotations

import json
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT, Daemon

ENDPOINT = "name: my-ep\nauth_mode: key\n"
# numpy only: neither scikit-learn nor anything of the appliance's own (duckdb, litestar, httpx ...).
CONDA = "name: np-env\ndependencies:\n  - python=3.11\n  - pip\n  - numpy\n"
ENV = "name: np-env\nimage: mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04\nconda_file: conda.yml\n"
DAEMONS_OWN = ("duckdb", "litestar", "httpx", "sklearn", "textual", "docker", "watchfiles", "rich", "yaml",
               "onnxruntime", "cryptography", "psutil")
PROBE = """\
import importlib, importlib.util, sys
import numpy

def init():
    pass

def run(raw_data):
    def fails(name):
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            return exc.name
        return None
    import appliance.scoring
    return {"numpy": numpy.__version__, "prefix": sys.prefix, "path": sys.path,
            "scoring": appliance.scoring.__file__,
            "found": [n for n in DAEMONS_OWN if importlib.util.find_spec(n) is not None],
            "registry": fails("appliance.registry.store"), "daemon": fails("appliance.daemon.control")}
""".replace("DAEMONS_OWN", repr(DAEMONS_OWN))
SKLEARN = "def init():\n    import sklearn\n\ndef run(raw_data):\n    return 1\n"
HOSTS = "def init():\n    import %s\n\ndef run(raw_data):\n    return 1\n"


def deployment(name: str) -> str:
    return (f"name: {name}\nendpoint_name: my-ep\nenvironment: azureml:np-env:1\n"
            f"code_configuration:\n  code: ./{name}\n  scoring_script: score.py\n")


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Daemon]:
    """A daemon started outside the checkout: its workers can't find `appliance` in their working folder."""
    monkeypatch.chdir(tmp_path)
    d = Daemon(tmp_path / "home").start()
    yield d
    if d.proc and d.proc.poll() is None:
        d.stop()


def test_a_score_py_sees_only_its_environment(elsewhere: Daemon, tmp_path: Path) -> None:
    daemon = elsewhere
    project = tmp_path / "p"
    files = {"endpoint.yml": ENDPOINT, "conda.yml": CONDA, "env.yml": ENV,
             "probe/score.py": PROBE, "sklearn/score.py": SKLEARN, "probe.yml": deployment("probe"),
             "sklearn.yml": deployment("sklearn")}
    for module in ("duckdb", "litestar", "httpx"):
        files[f"{module}/score.py"] = HOSTS % module
        files[f"{module}.yml"] = deployment(module)
    for name, text in files.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(text)
    daemon.cli("apply", "-f", "endpoint.yml", "-f", "env.yml", "-f", "probe.yml", cwd=project)

    answer = daemon.score("my-ep", {}, **{"azureml-model-deployment": "probe"}).json()
    envs = [p for p in (daemon.home / "envs").iterdir() if not p.name.startswith(".")]
    assert len(envs) == 1 and answer["prefix"] == str(envs[0])  # in the environment's venv
    assert answer["found"] == []  # none of the daemon's own packages
    assert answer["registry"] in DAEMONS_OWN and answer["daemon"] in DAEMONS_OWN  # the rest isn't importable
    daemons_site = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    assert not daemons_site & set(answer["path"]) and str(ROOT) not in answer["path"], answer["path"]
    # The worker's code is this daemon's own package, whichever daemon built the venv.
    assert Path(answer["scoring"]).resolve() == ROOT / "appliance" / "scoring" / "__init__.py"
    assert all("appliance" not in p.read_text() for p in envs[0].glob("lib/python*/site-packages/*.pth"))

    for name, missing in (("sklearn", "sklearn"), ("duckdb", "duckdb"), ("litestar", "litestar"), ("httpx", "httpx")):
        result = daemon.cli("apply", "-f", f"{name}.yml", cwd=project, check=False)
        assert result.returncode != 0, f"{name}: init() imported {missing}"
        shown = json.loads(daemon.cli("deployment", "show", "my-ep", name, "-o", "json").stdout)
        assert shown["provisioning_state"] == "Failed"
        [instance] = shown["instances"]
        assert instance["state"] == "failed" and f"No module named '{missing}'" in instance["error"]
        logs = daemon.cli("deployment", "logs", "my-ep", name, "--tail", "60").stdout
        assert f"ModuleNotFoundError: No module named '{missing}'" in logs
    assert len([p for p in (daemon.home / "envs").iterdir() if not p.name.startswith(".")]) == 1  # one build
    assert daemon.score("my-ep", {}, **{"azureml-model-deployment": "probe"}).status_code == 200


def test_a_score_py_with_what_it_imports_listed_works(daemon: Daemon, tmp_path: Path) -> None:
    project = tmp_path / "p"
    conda = CONDA.replace("  - numpy\n", "  - numpy\n  - pip:\n    - scikit-learn\n")
    score = ("import numpy, sklearn\nfrom sklearn.linear_model import LinearRegression\n\n"
             "def init():\n    global model\n    model = LinearRegression().fit([[0.0], [1.0]], [0.0, 2.0])\n\n"
             "def run(raw_data):\n    return {'sklearn': sklearn.__version__, "
             "'y': model.predict(numpy.array([[2.0]])).tolist()}\n")
    for name, text in {"endpoint.yml": ENDPOINT, "conda.yml": conda, "env.yml": ENV, "fine/score.py": score,
                       "fine.yml": deployment("fine")}.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(text)
    daemon.cli("apply", "-f", "endpoint.yml", "-f", "env.yml", "-f", "fine.yml", cwd=project)
    answer = daemon.score("my-ep", {}).json()
    assert abs(answer["y"][0] - 4.0) < 1e-9 and answer["sklearn"]


def test_a_deployment_without_an_environment_runs_in_the_daemons_python(daemon: Daemon, tmp_path: Path) -> None:
    project = tmp_path / "p"
    score = "import sys\n\ndef init():\n    pass\n\ndef run(raw_data):\n    return {'prefix': sys.prefix}\n"
    for name, text in {"endpoint.yml": ENDPOINT, "fine/score.py": score,
                       "fine.yml": "name: fine\nendpoint_name: my-ep\ncode_configuration:\n  code: ./fine\n"
                                 "  scoring_script: score.py\n"}.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(text)
    daemon.cli("apply", "-f", "endpoint.yml", "-f", "fine.yml", cwd=project)
    assert daemon.score("my-ep", {}).json() == {"prefix": sys.prefix}
    assert not (daemon.home / "envs").exists() or not any((daemon.home / "envs").iterdir())


def test_a_no_code_onnx_model_in_an_environment_that_lists_onnxruntime(daemon: Daemon, iris_project: Path) -> None:
    """The worker's ONNX path in a venv: numpy and onnxruntime are the environment's (imported lazily by
    the worker, so a scoring script's venv needs neither)."""
    (iris_project / "conda.yml").write_text("dependencies:\n  - python=3.11\n  - pip:\n    - onnxruntime\n")
    blue = iris_project / "blue.yml"
    blue.write_text(blue.read_text() + "environment:\n  image: python:3.11-slim\n  conda_file: conda.yml\n")
    daemon.cli("apply", "-f", "endpoint.yml", "-f", "blue.yml", cwd=iris_project)
    shown = json.loads(daemon.cli("deployment", "show", "my-ep", "blue", "-o", "json").stdout)
    assert shown["runtime"] == "process" and shown["provisioning_state"] == "Succeeded"
    envs = [p for p in (daemon.home / "envs").iterdir() if not p.name.startswith(".")]
    assert len(envs) == 1 and list(envs[0].glob("lib/python*/site-packages/onnxruntime"))
    response = daemon.score("my-ep", {"data": [[5.1, 3.5, 1.4, 0.2], [6.2, 3.4, 5.4, 2.3]]})
    assert response.status_code == 200 and response.json()["label"] == [0, 2]
