"""Shared by the export tests: a sample state to render, and the validators (kubernetes-validate for core
kinds, the official CRDs' openAPIV3Schema made strict for HTTPRoute, VirtualService, InferenceService)."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

from appliance.export import BatchEndpointExport, BatchUnit, ImageRef, OnlineEndpointExport, OnlineUnit
from appliance.specs.entities import (
    BatchDeploymentSpec,
    BatchEndpointSpec,
    BatchResources,
    BatchSettings,
    OnlineDeploymentSpec,
    OnlineEndpointSpec,
    Probe,
    RetrySettings,
    ScaleSettings,
)

CRDS = Path("/work/shared/k8s-crds")
KUBECTL = "/usr/bin/kubectl"
K8S_VERSION = "1.33"
CRD_FILES = {"HTTPRoute": ("gateway.networking.k8s.io_httproutes.v1.3.0.yaml", "v1"),
             "VirtualService": ("networking.istio.io_virtualservices.yaml", "v1"),
             "InferenceService": ("serving.kserve.io_inferenceservices.yaml", "v1beta1")}


def image(name: str, pinned: bool = True) -> ImageRef:
    return ImageRef(name=f"appliance/{name}", new_name=f"registry.example.com/team/{name}",
                    digest="sha256:" + ("ab" * 32 if pinned else "cd" * 32), pinned=pinned)


def sample(traffic: dict[str, int] | None = None, mirror: dict[str, int] | None = None
           ) -> tuple[list[OnlineEndpointExport], list[BatchEndpointExport]]:
    ep = OnlineEndpointSpec(name="My-Ep", traffic={"blue": 90, "green": 10, "red": 0} if traffic is None else traffic,
                            mirror_traffic={"red": 20} if mirror is None else mirror)
    blue = OnlineUnit(spec=OnlineDeploymentSpec(
        name="blue", endpoint_name="My-Ep", model="azureml:iris:1", instance_type="Standard_DS3_v2", instance_count=3,
        environment_variables={"LOG_LEVEL": "debug", "B": "2"},
        readiness_probe=Probe(initial_delay=5, period=3, failure_threshold=4),
        scale_settings=ScaleSettings(type="target_utilization", min_instances=2, max_instances=6,
                                     target_utilization_percentage=60)),
        image=image("my-ep-blue"), kind="onnx", model_name="iris", model_version="1")
    green = OnlineUnit(spec=OnlineDeploymentSpec(
        name="green", endpoint_name="My-Ep", model="azureml:iris:2", instance_type="Standard_NC6s_v3"),
        image=image("my-ep-green"), kind="script", model_name="iris", model_version="2")
    red = OnlineUnit(spec=OnlineDeploymentSpec(name="red", endpoint_name="My-Ep", model="azureml:iris:2",
                                               instance_type="Standard_F4s_v2"),
                     image=image("my-ep-red", pinned=False), kind="mlflow", model_name="iris", model_version="2")
    nightly = BatchUnit(spec=BatchDeploymentSpec(
        name="nightly", endpoint_name="my-batch", model="azureml:iris:1",
        resources=BatchResources(instance_count=2, instance_type="Standard_DS3_v2"),
        settings=BatchSettings(mini_batch_size=5, max_concurrency_per_instance=3, environment_variables={"X": "y"},
                               retry_settings=RetrySettings(max_retries=4))),
        image=image("my-batch-nightly"), model_name="iris", model_version="1")
    return ([OnlineEndpointExport(spec=ep, deployments=(blue, green, red))],
            [BatchEndpointExport(spec=BatchEndpointSpec(name="my-batch"), deployments=(nightly,))])


def _strict(schema: Any) -> Any:
    """additionalProperties: false wherever an object lists its properties (unknown fields refused)."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        preserve = out.get("x-kubernetes-preserve-unknown-fields")
        if "properties" in out and "additionalProperties" not in out and not preserve:
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@functools.cache
def crd_validator(kind: str) -> jsonschema.protocols.Validator:
    file, version = CRD_FILES[kind]
    crd = next(d for d in yaml.safe_load_all((CRDS / file).read_text()) if d and d.get("kind") ==
               "CustomResourceDefinition")
    schema = next(v["schema"]["openAPIV3Schema"] for v in crd["spec"]["versions"] if v["name"] == version)
    strict = _strict(schema)
    # apiVersion/kind/metadata are the API server's (TypeMeta, ObjectMeta; Istio's schema leaves them out):
    strict["properties"]["apiVersion"] = {"type": "string"}
    strict["properties"]["kind"] = {"type": "string"}
    # metadata is the API server's ObjectMeta: checked by shape here (name, labels, annotations, namespace).
    strict["properties"]["metadata"] = {"type": "object", "additionalProperties": False, "properties": {
        "name": {"type": "string"}, "namespace": {"type": "string"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}}}, "required": ["name"]}
    return jsonschema.Draft7Validator(strict)


def validate(document: dict[str, Any]) -> None:
    """Raises if the object is not valid: core kinds strictly for Kubernetes 1.33, CRDs by their schema."""
    kind = document["kind"]
    if kind in CRD_FILES:
        assert document["apiVersion"].endswith("/" + CRD_FILES[kind][1]), document["apiVersion"]
        errors = sorted(crd_validator(kind).iter_errors(document), key=lambda e: list(e.path))
        assert not errors, f"{kind} {document['metadata']['name']}: " + "; ".join(
            f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors[:5])
    elif kind != "Kustomization":
        kubernetes_validate.validate(document, K8S_VERSION, strict=True)


def write(files: dict[str, str], root: Path) -> Path:
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    return root


def kustomize(folder: Path) -> list[dict[str, Any]]:
    built = subprocess.run([KUBECTL, "kustomize", str(folder)], capture_output=True, text=True, timeout=60)
    assert built.returncode == 0, built.stderr
    return [d for d in yaml.safe_load_all(built.stdout) if d]


def documents(files: dict[str, str]) -> list[dict[str, Any]]:
    return [d for path, text in files.items() if path.endswith(".yaml") for d in yaml.safe_load_all(text) if d]
