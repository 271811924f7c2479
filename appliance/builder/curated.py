"""Azure ML's curated environments, as this appliance builds them: a pure table, no I/O.

`azureml://registries/azureml/environments/NAME/labels/latest` (or `/versions/N`) and the workspace
spelling `azureml:AzureML-NAME:N` name an environment Azure publishes; its definition is public, in
Azure/azureml-assets (`assets/<area>/environments/NAME/context/conda_dependencies.yaml`). Each entry
below copies, from that repository at SNAPSHOT, what a scoring script can import: the Python, the
frameworks and their conda/pip pins (`{{latest-pypi-version}}` there: unpinned here). What serves
requests on Azure (azureml-inference-server-http, azureml-defaults) is this appliance's worker here,
and the training environments' Azure SDK, telemetry and notebook/profiling tools (azureml-core,
azureml-mlflow, azureml-telemetry, debugpy, ipykernel, tensorboard, py-spy, ...) are left out: they
play no part in serving. Azure numbers curated versions itself (not in the repository): every
version of a name is served with the one definition below, and the apply result says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SNAPSHOT = "azureml-assets 4b41f8c (2026-07-23)"
REGISTRY = "azureml"  # the registry of Azure's curated environments
PREFIX = "AzureML-"  # their workspace spelling: azureml:AzureML-sklearn-1.5:N


@dataclass(frozen=True)
class Curated:
    name: str
    source: str  # the folder in Azure/azureml-assets
    python: str
    conda: tuple[str, ...]  # conda dependencies, as Azure pins them
    pip: tuple[str, ...]  # pip dependencies, as Azure pins them (serving-relevant ones)
    left_out: tuple[str, ...] = ()  # what Azure's image has and this one does not
    # Pins with no wheel for Python 3.11+ (what the worker runs on), replaced, and said so: (Azure's, here).
    local: tuple[tuple[str, str], ...] = ()
    refused: str = ""  # why it can't be built here at all

    def conda_file(self) -> dict[str, Any]:
        swap = dict(self.local)
        return {"name": self.name, "channels": ["conda-forge"],
                "dependencies": [f"python={self.python}", *(swap.get(c, c) for c in self.conda),
                                 {"pip": [swap.get(p, p) for p in self.pip]}]}

    def summary(self) -> str:
        return " ".join((f"python={self.python}", *self.conda, *self.pip))


# numpy 1.22 has wheels up to CPython 3.10; 1.23.2 is the first with 3.11 wheels (and <2: see venv.NUMPY_1).
_NUMPY = ("numpy~=1.22.0", "numpy>=1.23.2,<2")
# scikit-learn-intelex: an opt-in accelerator of ~200 MB (import sklearnex; patch_sklearn()); pyarrow: a
# security floor for azureml-dataset-runtime, itself left out.
_OPTIONAL = ("scikit-learn-intelex", "pyarrow")
_TRAINING_TOOLS = ("azureml-core", "azureml-defaults", "azureml-mlflow", "azureml-telemetry", "debugpy",
                   "ipykernel", "tensorboard", "py-spy", "psutil", "matplotlib", "tqdm", "py-cpuinfo",
                   "torch-tb-profiler")

TABLE: dict[str, Curated] = {c.name: c for c in (
    Curated("minimal-py311-inference", "assets/inference/environments/minimal-py311-inference", "3.11",
            (), ("numpy", "joblib", "azure-storage-blob", "azure-identity"),
            ("azureml-inference-server-http",)),
    Curated("mlflow-py312-inference", "assets/inference/environments/mlflow-py312-inference", "3.12",
            (), ("mlflow", "scikit-learn", "cloudpickle", "psutil", "pandas", "numpy", "joblib"),
            ("azureml-inference-server-http", "azureml-ai-monitoring")),
    Curated("sklearn-1.5", "assets/training/general/environments/sklearn-1.5", "3.10",
            ("pandas~=1.5.3", "scipy~=1.10.0", "numpy~=1.22.0"),
            ("scikit-learn~=1.5.0", "joblib~=1.2.0"),
            ("azureml-inference-server-http", *_OPTIONAL, *_TRAINING_TOOLS), (_NUMPY,)),
    Curated("sklearn-1.1", "assets/training/general/environments/sklearn-1.1", "3.9",
            ("pandas~=1.3.0", "scipy~=1.10.0", "numpy~=1.22.0"),
            ("scikit-learn~=1.1.0", "joblib~=1.2.0"), (*_OPTIONAL, *_TRAINING_TOOLS),
            (_NUMPY, ("pandas~=1.3.0", "pandas~=1.5.3"))),  # pandas 1.3: wheels up to 3.10; 1.5.3 has 3.11
    Curated("sklearn-1.0", "assets/training/general/environments/sklearn-1.0", "3.9",
            ("pandas~=1.3.0", "scipy~=1.10.0", "numpy~=1.22.0"),
            ("scikit-learn~=1.0.0", "joblib~=1.2.0"), _TRAINING_TOOLS,
            refused="it pins scikit-learn~=1.0.0 and pandas~=1.3.0 on Python 3.9, which publish no wheels for "
                    "Python 3.11+ (what this appliance's worker runs on); use sklearn-1.1 or sklearn-1.5, or an "
                    "inline environment"),
    Curated("lightgbm-3.3", "assets/training/general/environments/lightgbm-3.3", "3.10",
            ("pandas~=1.5.3", "scipy~=1.10.0", "numpy~=1.22.0"),
            ("scikit-learn~=1.5.1", "xgboost~=1.7.6", "lightgbm>=4.6.0"),
            ("distributed", "adlfs", "pyarrow", *_TRAINING_TOOLS), (_NUMPY,)),
)}
# Not in the table: the GPU ones (minimal-py312-cuda12.4-inference, acpt-pytorch-*-cuda*,
# tensorflow-2.16-cuda*: CUDA images, several GB); Azure's retired ones (minimal-ubuntu22.04-py39-cpu-inference,
# sklearn-1.0-ubuntu20.04-py38-cpu, ...: no longer in azureml-assets, so no published definition to copy).
# xgboost has no curated environment of its own: lightgbm-3.3 carries it.


def known() -> list[str]:
    return sorted(TABLE)


def lookup(name: str) -> Curated | None:
    """The entry for `sklearn-1.5`, `AzureML-sklearn-1.5` (any case), or None."""
    key = name[len(PREFIX):] if name.lower().startswith(PREFIX.lower()) else name
    return next((c for n, c in TABLE.items() if n.lower() == key.lower()), None)


def unknown(name: str) -> str:
    return (f"curated environment {name!r} is not one this appliance knows; known (from {SNAPSHOT}): "
            f"{', '.join(known())}. Give the environment inline (image + conda_file) or register it with "
            "`appliance environment create`")


def environment(entry: Curated, version: str | None) -> dict[str, Any]:
    """An environment document body (name AzureML-NAME) for `entry`, requested at `version` (None: latest)."""
    asked = f"version {version}" if version else "label latest"
    note = (f"curated environment {entry.name} ({asked}) is built from this appliance's copy of its published "
            f"definition ({SNAPSHOT}, {entry.source}): {entry.summary()}"
            + (f"; left out: {', '.join(entry.left_out)}" if entry.left_out else "")
            + (f"; for Python 3.11+: {', '.join(f'{a} → {b}' for a, b in entry.local)}" if entry.local else ""))
    return {"name": PREFIX + entry.name, "version": version or "latest",
            "image": f"mcr.microsoft.com/azureml/curated/{entry.name}:latest",
            "conda_file": entry.conda_file(), "description": note}
