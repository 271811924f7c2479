"""Issue 19, points 3 and 4, on a real daemon: a score.py on a curated environment reference, and one on a
conda file shaped like Azure's inference-schema examples (python=3.10, conda-forge, scikit-learn=1.2.2 with
numpy unpinned), which on pip alone would get numpy 2 and fail in init() with "numpy.dtype size changed".
One daemon and one apply for both: their two venvs build concurrently, once."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Daemon

CURATED = "azureml://registries/azureml/environments/sklearn-1.5/labels/latest"
ENV_YML = """\
name: amlex-infschema
channels:
  - conda-forge
dependencies:
  - python=3.10
  - scikit-learn=1.2.2
  - numpy
  - pandas
  - pip:
    - joblib
    - inference-schema
"""
# A pickled model made with the environment's own scikit-learn, loaded back in init() (Azure's example loads
# models/iris.pkl with joblib); run() answers with what the venv holds.
SCORE = """\
import os, tempfile
import joblib, numpy, pandas, sklearn
from sklearn.linear_model import LogisticRegression

def init():
    global model
    path = os.path.join(tempfile.mkdtemp(), "model.pkl")
    x = numpy.array([[0.0, 0.0], [0.1, 0.2], [1.0, 1.0], [0.9, 1.1]])
    joblib.dump(LogisticRegression().fit(x, [0, 0, 1, 1]), path)
    model = joblib.load(path)

def run(raw_data):
    import json, sys
    rows = pandas.DataFrame(json.loads(raw_data)["data"])
    return {"predict": model.predict(rows.to_numpy()).tolist(), "sklearn": sklearn.__version__,
            "numpy": numpy.__version__, "pandas": pandas.__version__, "python": sys.version.split()[0]}
"""


def deployment(name: str, environment: str) -> str:
    return (f"name: {name}\nendpoint_name: my-ep\nenvironment: {environment}\n"
            f"code_configuration:\n  code: ./code\n  scoring_script: score.py\ninstance_type: Standard_DS3_v2\n")


@pytest.fixture(scope="module")
def applied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, str]]:
    root = tmp_path_factory.mktemp("curated")
    project = root / "p"
    inline = ("\n  image: mcr.microsoft.com/azureml/minimal-py312-inference:latest\n  conda_file: env.yml")
    files = {"endpoint.yml": "name: my-ep\nauth_mode: key\n", "env.yml": ENV_YML, "code/score.py": SCORE,
             "curated.yml": deployment("curated", CURATED), "infschema.yml": deployment("infschema", inline)}
    for name, text in files.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(text)
    daemon = Daemon(root / "home").start()
    try:
        result = daemon.cli("apply", "-f", "endpoint.yml", "-f", "curated.yml", "-f", "infschema.yml", cwd=project)
        yield daemon, result.stdout + result.stderr
    finally:
        daemon.stop()


ROWS = {"data": [[0.0, 0.1], [1.0, 0.95]]}


def test_a_curated_environment_reference_builds_its_published_definition(applied: tuple[Daemon, str]) -> None:
    daemon, output = applied
    answer = daemon.score("my-ep", ROWS, **{"azureml-model-deployment": "curated"}).json()
    assert answer["predict"] == [0, 1]
    assert answer["sklearn"].startswith("1.5.") and answer["pandas"].startswith("1.5.")
    assert answer["numpy"].startswith("1.")
    assert "curated environment sklearn-1.5 (label latest)" in output and "azureml-assets" in output
    shown = json.loads(daemon.cli("deployment", "show", "my-ep", "curated", "-o", "json").stdout)
    assert shown["environment"].startswith("azureml:AzureML-sklearn-1.5:")


def test_the_inference_schema_conda_file_serves_as_shipped(applied: tuple[Daemon, str]) -> None:
    daemon, output = applied
    answer = daemon.score("my-ep", ROWS, **{"azureml-model-deployment": "infschema"}).json()
    assert answer["predict"] == [0, 1]
    assert answer["sklearn"] == "1.2.2" and answer["numpy"].startswith("1.")  # numpy<2, as conda would pick
    assert "numpy<2 added: scikit-learn==1.2.2.*" in output
    assert "python=3.10 pinned" in output and "channels conda-forge" in output
    # Once in the apply result's warnings (and once in the build's progress, as the build log has it).
    assert sum("numpy<2 added" in line and "note:" not in line for line in output.splitlines()) == 1
    log = (daemon.home / "logs" / "my-ep" / "infschema" / "build.log").read_text()
    assert "note: numpy<2 added" in log


def test_an_unknown_curated_environment_lists_the_known_ones(applied: tuple[Daemon, str], tmp_path: Path) -> None:
    daemon, _ = applied
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "score.py").write_text("def init(): pass\ndef run(d): return d\n")
    (tmp_path / "bad.yml").write_text(deployment(
        "bad", "azureml://registries/azureml/environments/tensorflow-9.9/labels/latest"))
    result = daemon.cli("apply", "-f", "bad.yml", cwd=tmp_path, check=False)
    assert result.returncode != 0
    said = result.stdout + result.stderr
    assert "tensorflow-9.9" in said and "sklearn-1.5" in said and "minimal-py311-inference" in said
