"""What of a document has no effect here: said once per document when it is applied.

Azure's files carry fields for its cloud (VM sizes, autoscale, managed identities, network isolation).
They are accepted and stored (and shown and exported as written), but a laptop can't act on them: the
user is told which are only recorded, and which Azure behaviour is not emulated, rather than left to
assume. Pure: the GPU count is asked of the caller, and only when a document asks for a GPU.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from appliance.specs.entities import (
    BatchDeploymentSpec,
    BatchEndpointSpec,
    EnvironmentSpec,
    OnlineDeploymentSpec,
    OnlineEndpointSpec,
)

GPU_SKUS = ("_NC", "_ND", "_NV")  # Azure's GPU VM families (Standard_NC6s_v3, STANDARD_NC4AS_T4_V3, ...)

# Per kind: (field, "recorded" or "not emulated", is it set to something that would matter on Azure).
_Rule = tuple[str, str, Callable[[Any], bool]]
_SET: Callable[[Any], bool] = lambda v: v is not None and v != {}  # noqa: E731
RULES: dict[type, tuple[_Rule, ...]] = {
    OnlineDeploymentSpec: (
        ("instance_type", "recorded", _SET),  # a VM size: instances here share this machine
        ("scale_settings", "recorded", _SET),  # autoscale: instance_count is what runs
        ("resources", "recorded", _SET),  # Kubernetes requests/limits
        ("type", "recorded", _SET),  # managed or kubernetes
        ("app_insights_enabled", "not emulated", bool),
        ("egress_public_network_access", "not emulated", lambda v: v == "disabled"),
    ),
    OnlineEndpointSpec: (
        ("compute", "recorded", _SET),
        ("kind", "recorded", _SET),
        ("identity", "not emulated", _SET),
        ("public_network_access", "not emulated", lambda v: v == "disabled"),
    ),
    EnvironmentSpec: (
        ("os_type", "not emulated", lambda v: v == "windows"),
    ),
    BatchDeploymentSpec: (
        ("compute", "recorded", _SET),  # a cluster: jobs run on this machine, instance_count × concurrency workers
        ("resources.instance_type", "recorded", _SET),
    ),
    BatchEndpointSpec: (
        ("auth_mode", "not emulated", lambda v: v == "aad_token"),  # Entra tokens: the endpoint's keys stand in
    ),
}


def is_gpu_sku(instance_type: str | None) -> bool:
    return bool(instance_type) and any(f in str(instance_type).upper() for f in GPU_SKUS)


def wants_gpu(spec: OnlineDeploymentSpec) -> bool:
    """A GPU instance_type (Standard_NC6s_v3 ...) or nvidia.com/gpu in Kubernetes resources."""
    if is_gpu_sku(spec.instance_type):
        return True
    resources = spec.resources or {}
    return any("nvidia.com/gpu" in (resources.get(k) or {}) for k in ("requests", "limits"))


def unused(spec: Any) -> tuple[list[str], list[str]]:
    """(recorded for export, not emulated): the fields of `spec` set to something with no local effect."""
    recorded: list[str] = []
    ignored: list[str] = []
    for name, what, matters in RULES.get(type(spec), ()):
        value = spec
        for part in name.split("."):
            value = getattr(value, part)
        if matters(value):
            (recorded if what == "recorded" else ignored).append(name)
    return recorded, ignored


def gpu_note(spec: OnlineDeploymentSpec, gpus: int) -> str:
    """What a GPU instance_type gets here, given the CUDA devices found."""
    sku = f"instance_type {spec.instance_type} is a GPU SKU"
    if gpus > 0:
        return f"{sku}: {gpus} CUDA device(s) found, used by ONNX models and visible to scoring scripts"
    return f"{sku}, but no GPU was found here (no CUDA driver or device): it runs on the CPU instead"


def _subject(spec: Any) -> str:
    if isinstance(spec, OnlineDeploymentSpec):
        return f"deployment {spec.endpoint_name}/{spec.name}"
    if isinstance(spec, BatchDeploymentSpec):
        return f"batch deployment {spec.endpoint_name}/{spec.name}"
    if isinstance(spec, OnlineEndpointSpec):
        return f"endpoint {spec.name}"
    if isinstance(spec, BatchEndpointSpec):
        return f"batch endpoint {spec.name}"
    return f"environment {spec.name}" if spec.name else "environment"


def warnings(documents: Iterable[Any], gpus: Callable[[], int]) -> list[str]:
    """One line per document (`source: subject: recorded for export: ...; not emulated: ...`), and one
    per GPU instance_type. `documents` have `.spec` and `.source`; `gpus()` is asked at most once."""
    lines: list[str] = []
    found: list[int] = []
    for doc in documents:
        specs = [doc.spec]
        if isinstance(doc.spec, OnlineDeploymentSpec) and isinstance(doc.spec.environment, EnvironmentSpec):
            specs.append(doc.spec.environment)
        for spec in specs:
            recorded, ignored = unused(spec)
            parts = ([f"recorded for export: {', '.join(recorded)}"] if recorded else []) + \
                    ([f"not emulated: {', '.join(ignored)}"] if ignored else [])
            if parts:
                lines.append(f"{doc.source}: {_subject(spec)}: {'; '.join(parts)}")
        if isinstance(doc.spec, OnlineDeploymentSpec) and is_gpu_sku(doc.spec.instance_type):
            if not found:
                found.append(gpus())
            lines.append(f"{doc.source}: {_subject(doc.spec)}: {gpu_note(doc.spec, found[0])}")
    return lines
