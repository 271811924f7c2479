"""Per endpoint, `--target kserve`: one InferenceService (serving.kserve.io/v1beta1) in Standard mode.

The deployment with the most live traffic is the `predictor`; every other is a `spec.canary[]` entry
with its `trafficPercent` (KServe v0.20's Standard-mode traffic split). A no-code ONNX deployment runs
on KServe's Triton runtime (Open Inference Protocol V2); anything else runs the packaged image as a
custom container. KServe has no request mirroring (kserve#2978) and no header routing: both are said
in the file and in the command's warnings.
"""

from __future__ import annotations

from typing import Any

from appliance.export import common
from appliance.export.gateway import live, mirror
from appliance.export.inputs import OnlineEndpointExport, OnlineUnit
from appliance.export.workloads import container, names, sized

TRITON = "kserve-tritonserver"


def storage_placeholder(unit: OnlineUnit) -> str:
    return f"s3://CHANGE-ME/models/{unit.model_name or unit.spec.name}"


def predictor(unit: OnlineUnit) -> dict[str, Any]:
    spec = unit.spec
    out: dict[str, Any] = {"serviceAccountName": names(spec.endpoint_name, unit),
                           "minReplicas": spec.instance_count, "maxReplicas": spec.instance_count}
    scale = spec.scale_settings
    if scale is not None and scale.type == "target_utilization":
        out["minReplicas"] = max(1, scale.min_instances or 1)
        out["maxReplicas"] = max(out["minReplicas"], scale.max_instances or spec.instance_count)
        out["scaleMetric"] = "cpu"
        out["scaleTarget"] = scale.target_utilization_percentage or 70
    cont, volumes, gpus = container(unit, "kserve-container")
    if unit.kind == "onnx":
        res, _ = common.resources(spec.instance_type, spec.resources, sized(unit))
        out["model"] = {"modelFormat": {"name": "onnx"}, "runtime": TRITON, "protocolVersion": "v2",
                        "storageUri": storage_placeholder(unit), "resources": res}
    else:
        out["automountServiceAccountToken"] = False
        out["securityContext"] = common.pod_security()
        out["containers"] = [cont]
        out["volumes"] = volumes
    if gpus:
        out.update(common.gpu_scheduling())
    return out


def split(export: OnlineEndpointExport) -> tuple[OnlineUnit, list[tuple[OnlineUnit, int]]]:
    """(the predictor, [(a canary, its percent)]): the predictor takes what the canaries don't."""
    weights = dict(live(export))
    ordered = sorted(export.deployments, key=lambda u: (-weights.get(u.spec.name, 0), u.spec.name))
    return ordered[0], [(u, weights.get(u.spec.name, 0)) for u in ordered[1:]]


def inference_service(export: OnlineEndpointExport) -> tuple[dict[str, Any], str]:
    """The InferenceService and the comment that goes above it (what it can't express)."""
    ep = export.spec.name
    main, canaries = split(export)
    spec: dict[str, Any] = {"predictor": predictor(main)}
    if canaries:
        spec["canary"] = [{"trafficPercent": pct, "predictor": predictor(u)} for u, pct in canaries]
    labels = common.labels(ep, None, None, "inference-service")
    notes = [f"InferenceService for endpoint {ep}: predictor {main.spec.name}"
             + "".join(f", canary {u.spec.name} {pct}%" for u, pct in canaries) + "."]
    if (mirrored := mirror(export)) is not None:
        notes.append(f"NOT EXPRESSED: mirror traffic {mirrored[0]}={mirrored[1]}% (KServe has no request "
                     "mirroring, kserve#2978); use --target istio or gateway to mirror.")
    notes.append("NOT EXPRESSED: the azureml-model-deployment header pin (KServe routes by traffic share only).")
    if any(u.kind == "onnx" for u in export.deployments):
        notes.append("ONNX deployments run on the kserve-tritonserver runtime (V2 protocol at /v2/...): upload "
                     "the model in Triton's layout (<name>/1/model.onnx) and set storageUri; Triton checks no keys.")
    return {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "metadata": common.metadata(common.k8s_name(ep), labels,
                                        {"serving.kserve.io/deploymentMode": "Standard"}),
            "spec": spec}, "\n".join(notes)


def warnings(export: OnlineEndpointExport) -> list[str]:
    ep = export.spec.name
    out = [f"endpoint {ep}: KServe can't express the azureml-model-deployment header pin"]
    if (mirrored := mirror(export)) is not None:
        out.append(f"endpoint {ep}: KServe can't mirror traffic ({mirrored[0]}={mirrored[1]}% is not exported); "
                   "use --target istio or --target gateway")
    for unit in export.deployments:
        if unit.kind == "onnx":
            out.append(f"endpoint {ep}: deployment {unit.spec.name} runs on KServe's Triton runtime: set its "
                       f"storageUri (now {storage_placeholder(unit)}); Triton doesn't check the endpoint's keys")
    return out
