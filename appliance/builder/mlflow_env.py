"""The environment of a no-code MLflow model (`type: mlflow_model`, no environment): as on Azure, the
model's own. Its MLmodel's `python_function` flavor names the conda file (`env: conda.yaml`, or
`env: {conda: ..., virtualenv: python_env.yaml}`); its pip packages become the venv's requirements
(`venv.requirements`, as for any environment), else the model's requirements.txt.

Two changes, both said in the build log: `azureml-inference-server-http` is left out (the worker
serves in its place), and `mlflow` is installed as `mlflow-skinny` at the same version (the same
`mlflow` package, `mlflow.pyfunc` and every flavor, without the tracking server, UI and SQL stack that
serving never imports); mlflow-skinny is added when the model's requirements name neither.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from appliance.builder import venv
from appliance.specs import EnvironmentSpec, SpecError

MLMODEL = "MLmodel"
_LEFT_OUT = {"azureml-inference-server-http"}  # the worker stands in for Azure's inference server
_MLFLOW = re.compile(r"^\s*mlflow(?=\s*(?:[<>=!~;\[]|$))", re.IGNORECASE)


def mlmodel_folder(path: Path) -> Path | None:
    """The folder holding the MLmodel file: `path` itself, or (a registered model's stored layout,
    Azure's AZUREML_MODEL_DIR) its one subfolder that has one."""
    if (path / MLMODEL).is_file():
        return path
    found = [p.parent for p in path.glob(f"*/{MLMODEL}")] if path.is_dir() else []
    return found[0] if len(found) == 1 else None


def read_mlmodel(folder: Path) -> dict[str, Any]:
    try:
        doc = yaml.safe_load((folder / MLMODEL).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise SpecError(f"{folder / MLMODEL} can't be read: {exc}", field="model.path") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("flavors"), dict):
        raise SpecError(f"{folder / MLMODEL} has no flavors: it is not an MLflow model", field="model.path")
    if "python_function" not in doc["flavors"]:
        raise SpecError(f"{folder / MLMODEL} has no python_function flavor (it has {', '.join(doc['flavors'])}): "
                        "mlflow.pyfunc can't serve it without a scoring script", field="model.path")
    return doc


def requirements(folder: Path) -> tuple[list[str], list[str]]:
    """(pip requirements, notes for the build log) of the model in `folder`."""
    doc = read_mlmodel(folder)
    env = doc["flavors"]["python_function"].get("env")
    conda_name = env.get("conda") if isinstance(env, dict) else env
    reqs: list[str] | None = None
    source = ""
    if isinstance(conda_name, str) and (folder / conda_name).is_file():
        try:
            conda = yaml.safe_load((folder / conda_name).read_text())
        except yaml.YAMLError as exc:
            raise SpecError(f"{folder / conda_name} is not YAML: {exc}", field="model.path") from None
        if isinstance(conda, dict):
            reqs = [r for r in venv.requirements(EnvironmentSpec(conda_file=conda)) if not r.startswith("-r")]
            source = conda_name
    if reqs is None and (folder / "requirements.txt").is_file():
        lines = (folder / "requirements.txt").read_text().splitlines()
        reqs = [s for line in lines if (s := line.split("#")[0].strip()) and not s.startswith("-")]
        source = "requirements.txt"
    reqs = reqs or []
    notes = [f"the MLflow model's environment, from its {source or 'MLmodel (no conda.yaml, no requirements.txt)'}"]
    kept = [r for r in reqs if venv.canonical(re.split(r"[\s<>=!~;\[]", r.strip(), maxsplit=1)[0]) not in _LEFT_OUT]
    if len(kept) < len(reqs):
        notes.append("left out azureml-inference-server-http: the appliance's worker serves in its place")
    swapped = [_MLFLOW.sub("mlflow-skinny", r) for r in kept]
    if swapped != kept:
        notes.append("mlflow installed as mlflow-skinny (the same mlflow.pyfunc, without its server and UI)")
    if not venv.named(swapped) & {"mlflow", "mlflow-skinny"}:
        version = doc.get("mlflow_version")
        swapped.append(f"mlflow-skinny=={version}" if isinstance(version, str) else "mlflow-skinny")
        notes.append(f"added {swapped[-1]}: the model's requirements lack mlflow, which serves it")
    return swapped, notes


def signature(folder: Path) -> dict[str, Any] | None:
    """The MLmodel's signature, its JSON strings decoded (for `model show`)."""
    import json

    sig = read_mlmodel(folder).get("signature")
    if not isinstance(sig, dict):
        return None
    out: dict[str, Any] = {}
    for key in ("inputs", "outputs", "params"):
        value = sig.get(key)
        try:
            out[key] = json.loads(value) if isinstance(value, str) else value
        except ValueError:
            out[key] = value
    return out
