"""Curated environment references, the curated table, and how a conda file's pins are honoured (issue 19,
points 3 and 4): pure parts, no daemon."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.builder import curated, venv
from appliance.specs import EnvironmentSpec, SpecError, parse, registry_ref

# Shaped like Azure's cli/endpoints/online/managed/inference-schema/env.yml.
INFERENCE_SCHEMA = {"name": "amlex-infschema", "channels": ["conda-forge"],
                    "dependencies": ["python=3.10", "scikit-learn=1.2.2", "numpy", "pandas",
                                     {"pip": ["joblib", "azureml-inference-server-http", "inference-schema"]}]}


def spec(conda: dict) -> EnvironmentSpec:
    return EnvironmentSpec(image="mcr.microsoft.com/azureml/minimal-py312-inference:latest", conda_file=conda)


# -- references ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("ref", "expected"), [
    ("azureml://registries/azureml/environments/sklearn-1.5/labels/latest", ("azureml", "sklearn-1.5", None)),
    ("azureml://registries/azureml/environments/sklearn-1.5/versions/24", ("azureml", "sklearn-1.5", "24")),
    ("azureml://registries/azureml/environments/minimal-py311-inference/versions/3",
     ("azureml", "minimal-py311-inference", "3")),
    ("azureml:AzureML-sklearn-1.5:1", None),  # the workspace spelling: an ordinary azureml:name:version
])
def test_registry_references_parse(ref: str, expected: tuple | None) -> None:
    assert registry_ref(ref, "environment") == expected


@pytest.mark.parametrize("ref", ["azureml://registries/azureml/environments/sklearn-1.5",
                                 "azureml://registries/azureml/environments/sklearn-1.5/labels/stable",
                                 "azureml://registries/azureml/models/m/versions/1"])
def test_malformed_registry_references_are_refused_naming_the_shapes(ref: str) -> None:
    with pytest.raises(SpecError, match="labels/latest") as exc:
        registry_ref(ref, "environment")
    assert exc.value.field == "environment"


@pytest.mark.parametrize("ref", ["azureml://registries/azureml/environments/sklearn-1.5/labels/latest",
                                 "azureml:AzureML-sklearn-1.5:3"])
def test_a_deployment_document_accepts_curated_references(ref: str, tmp_path: Path) -> None:
    (tmp_path / "score.py").write_text("def init(): pass\ndef run(d): return d\n")
    body = {"name": "blue", "endpoint_name": "my-ep", "environment": ref,
            "code_configuration": {"code": ".", "scoring_script": "score.py"}}
    doc = parse(body, "blue.yml", tmp_path)
    assert doc.spec.environment == ref


# -- the table -----------------------------------------------------------------------------------

def test_the_table_holds_the_common_inference_environments() -> None:
    assert {"sklearn-1.5", "sklearn-1.0", "minimal-py311-inference", "lightgbm-3.3"} <= set(curated.known())
    entry = curated.lookup("AzureML-SKLEARN-1.5")  # Azure's workspace spelling, any case
    assert entry is not None and entry.name == "sklearn-1.5"
    assert curated.lookup("sklearn-1.5") is entry
    assert "scikit-learn~=1.5.0" in entry.pip and entry.python == "3.10"
    assert curated.lookup("xgboost-9") is None


def test_an_unknown_curated_environment_lists_the_known_ones() -> None:
    message = curated.unknown("tensorflow-9.9")
    assert "tensorflow-9.9" in message
    assert all(name in message for name in curated.known())


@pytest.mark.parametrize("name", sorted(curated.TABLE))
def test_each_entry_is_an_environment_this_appliance_builds(name: str) -> None:
    entry = curated.TABLE[name]
    body = curated.environment(entry, "7")
    assert body["name"] == f"AzureML-{name}" and body["version"] == "7"
    env = EnvironmentSpec(**body)
    reqs = venv.requirements(env)
    assert reqs, name
    assert not any(r.startswith(("azureml-core", "azureml-defaults", "debugpy")) for r in reqs)
    assert venv.python_pin(env) == entry.python
    assert "version 7" in body["description"] and curated.SNAPSHOT in body["description"]
    for azure, here in entry.local:  # pins without wheels for 3.11+: replaced, and said
        assert azure not in reqs and here in reqs
        assert f"{azure} → {here}" in body["description"]


def test_sklearn_1_5_maps_to_its_published_pins() -> None:
    reqs = venv.requirements(EnvironmentSpec(**curated.environment(curated.TABLE["sklearn-1.5"], None)))
    assert reqs == ["pandas~=1.5.3", "scipy~=1.10.0", "numpy>=1.23.2,<2", "scikit-learn~=1.5.0", "joblib~=1.2.0"]


def test_sklearn_1_0_is_refused_with_why() -> None:
    assert "wheels" in curated.TABLE["sklearn-1.0"].refused


# -- numpy's binary-compatibility bound ------------------------------------------------------------

@pytest.mark.parametrize(("reqs", "bounded"), [
    (["scikit-learn==1.2.2.*", "numpy", "pandas"], ["scikit-learn==1.2.2.*", "numpy<2", "pandas"]),
    (["scikit-learn==1.2.2"], ["scikit-learn==1.2.2", "numpy<2"]),
    (["pandas<2.2", "joblib"], ["pandas<2.2", "joblib", "numpy<2"]),
    (["scipy~=1.10.0"], ["scipy~=1.10.0", "numpy<2"]),
    (["torch==2.1.0"], ["torch==2.1.0", "numpy<2"]),
])
def test_numpy_1_builds_get_numpy_below_2(reqs: list[str], bounded: list[str]) -> None:
    got, why = venv.numpy_bound(reqs)
    assert got == bounded
    assert why and "numpy<2" in why


@pytest.mark.parametrize("reqs", [
    ["scikit-learn==1.5.*", "numpy"],  # built against numpy 2
    ["scikit-learn~=1.5.0"],
    ["scikit-learn>=1.0"],  # allows newer releases: pip picks one built against numpy 2
    ["scikit-learn"],
    ["scikit-learn==1.2.2", "numpy==2.0.1"],  # numpy pinned by the environment: its choice
    ["scikit-learn==1.2.2", "numpy>=1.24"],
    ["lightgbm==3.3.5", "requests"],  # not in the table (ctypes, no numpy C ABI)
])
def test_numpy_is_left_alone_otherwise(reqs: list[str]) -> None:
    assert venv.numpy_bound(reqs) == (reqs, None)


def test_the_inference_schema_conda_file() -> None:
    env = spec(INFERENCE_SCHEMA)
    assert venv.requirements(env) == ["scikit-learn==1.2.2.*", "numpy<2", "pandas", "joblib",
                                      "azureml-inference-server-http", "inference-schema"]
    assert venv.python_pin(env) == "3.10"
    said = venv.notes(env)
    assert any("channels conda-forge" in n for n in said)
    assert any(n.startswith("numpy<2 added: scikit-learn==1.2.2.*") for n in said)
    assert any("python=3.10" in n for n in said)  # no 3.10 worker here: which Python is used instead


# -- interpreter choice -------------------------------------------------------------------------------

FOUND = [((3, 12, 4), "/opt/uv/cpython-3.12/bin/python3.12"), ((3, 13, 1), "/usr/bin/python3.13"),
         ((3, 10, 14), "/root/.pyenv/versions/3.10.14/bin/python")]


@pytest.mark.parametrize(("pin", "found", "path", "says"), [
    (None, FOUND, None, None),  # no pin: the appliance's own Python
    ("3.11", FOUND, None, None),  # the appliance's own matches
    ("3.12", FOUND, "/opt/uv/cpython-3.12/bin/python3.12", None),
    ("3.13", FOUND, "/usr/bin/python3.13", None),
    ("3.12", [], None, "no Python 3.12 is installed here"),
    ("3.10", FOUND, None, "the worker needs Python 3.11+"),  # found, but the worker can't run on it
])
def test_the_interpreter_for_a_python_pin(pin: str | None, found: list, path: str | None, says: str | None) -> None:
    chosen, note = venv.choose_python(pin, found, (3, 11, 9))
    assert chosen == path
    if says is None:
        assert note is None
    else:
        assert note is not None and says in note and "3.11.9" in note  # names the version used


@pytest.mark.parametrize(("dep", "pin"), [("python=3.10", "3.10"), ("python==3.12.*", "3.12"),
                                          ("python=3.9.18", "3.9"), ("conda-forge::python=3.11", "3.11"),
                                          ("python", None), ("python>=3.8", None)])
def test_python_pins_are_read(dep: str, pin: str | None) -> None:
    assert venv.python_pin(spec({"dependencies": [dep, "numpy"]})) == pin


def test_venvs_of_different_interpreters_have_different_names() -> None:
    import sys
    assert venv.digest(["numpy"], [], None) == venv.digest(["numpy"], [])
    assert venv.digest(["numpy"], [], sys.executable) == venv.digest(["numpy"], [])  # the same Python
