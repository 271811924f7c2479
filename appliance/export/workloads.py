"""Per online deployment: Deployment, Service, PodDisruptionBudget, HorizontalPodAutoscaler, ConfigMap,
ServiceAccount (and the container spec KServe reuses)."""

from __future__ import annotations

from typing import Any

from appliance.export import common
from appliance.export.inputs import OnlineUnit


def names(endpoint: str, unit: OnlineUnit) -> str:
    return common.k8s_name(endpoint, unit.spec.name)


def unit_labels(unit: OnlineUnit) -> dict[str, str]:
    return common.labels(unit.spec.endpoint_name, unit.spec.name, unit.model_version, "online-deployment")


def sized(unit: OnlineUnit) -> tuple[int, int] | None:
    """(CPU millicores, memory MiB) of the deployment's profile, if it was profiled."""
    return (unit.sized.cpu_millicores, unit.sized.memory_mib) if unit.sized else None


def keys_secret(endpoint: str) -> str:
    """The Secret holding the endpoint's keys (created by the user from get-credentials; never exported)."""
    return common.k8s_name(endpoint, "keys")


def container(unit: OnlineUnit, name: str = "worker") -> tuple[dict[str, Any], list[dict[str, Any]], int]:
    """The worker container, the pod's volumes, and its GPU count."""
    spec = unit.spec
    base = names(spec.endpoint_name, unit)
    res, gpus = common.resources(spec.instance_type, spec.resources, sized(unit))
    volumes, mounts = common.tmp_volumes()
    volumes.append({"name": "endpoint-keys", "secret": {"secretName": keys_secret(spec.endpoint_name),
                                                        "defaultMode": 0o440}})
    mounts.append({"name": "endpoint-keys", "mountPath": common.KEYS_DIR, "readOnly": True})
    out: dict[str, Any] = {"name": name, "image": unit.image.name}
    if unit.kind != "custom":  # the worker of `appliance package`; a custom container keeps its own entry point
        out["command"] = list(common.WORKER_COMMAND)
        out["args"] = ["--host", "0.0.0.0", "--port", str(unit.port)]
    out["ports"] = [{"name": "http", "containerPort": unit.port, "protocol": "TCP"}]
    out["env"] = [{"name": "APPLIANCE_ENDPOINT_KEYS_FILE", "value": common.KEYS_DIR},
                  {"name": "TMPDIR", "value": "/tmp"}]
    if spec.environment_variables:
        out["envFrom"] = [{"configMapRef": {"name": f"{base}-env"}}]
    out["resources"] = res
    out["startupProbe"] = common.startup_probe(spec.readiness_probe, unit.readiness_path, "http")
    out["readinessProbe"] = common.probe(spec.readiness_probe, unit.readiness_path, "http")
    out["livenessProbe"] = common.probe(spec.liveness_probe, unit.liveness_path, "http", liveness=True)
    out["securityContext"] = common.container_security()
    out["volumeMounts"] = mounts
    return out, volumes, gpus


def pod_spec(unit: OnlineUnit, cont: dict[str, Any], volumes: list[dict[str, Any]], gpus: int,
             all_labels: dict[str, str]) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "serviceAccountName": names(unit.spec.endpoint_name, unit),
        "automountServiceAccountToken": False,
        "securityContext": common.pod_security(),
        # Azure's request_timeout_ms is the most a request may take: let in-flight ones finish on a stop.
        "terminationGracePeriodSeconds": max(30, unit.spec.request_settings.request_timeout_ms // 1000 + 10),
        "containers": [cont],
        "volumes": volumes,
        "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                                       "whenUnsatisfiable": "ScheduleAnyway",
                                       "labelSelector": {"matchLabels": common.selector(all_labels)}}],
    }
    if gpus:
        spec.update(common.gpu_scheduling())
    return spec


def deployment(unit: OnlineUnit) -> dict[str, Any]:
    spec = unit.spec
    name = names(spec.endpoint_name, unit)
    all_labels = unit_labels(unit)
    cont, volumes, gpus = container(unit)
    # GPUs are scarce: replace one pod at a time without a surge pod that would wait for a free GPU.
    strategy = {"maxSurge": 0, "maxUnavailable": 1} if gpus else {"maxSurge": 1, "maxUnavailable": 0}
    annotations = {"appliance.io/azure-deployment": f"{spec.endpoint_name}/{spec.name}"}
    if spec.instance_type:
        annotations["appliance.io/instance-type"] = spec.instance_type
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": common.metadata(name, all_labels, annotations),
        "spec": {
            "replicas": spec.instance_count,
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": common.selector(all_labels)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": strategy},
            "template": {"metadata": {"labels": all_labels},
                         "spec": pod_spec(unit, cont, volumes, gpus, all_labels)},
        },
    }


def service(unit: OnlineUnit) -> dict[str, Any]:
    all_labels = unit_labels(unit)
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": common.metadata(names(unit.spec.endpoint_name, unit), all_labels),
            "spec": {"type": "ClusterIP", "selector": common.selector(all_labels),
                     "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]}}


def pdb(unit: OnlineUnit) -> dict[str, Any]:
    all_labels = unit_labels(unit)
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": common.metadata(names(unit.spec.endpoint_name, unit), all_labels),
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": common.selector(all_labels)},
                     "unhealthyPodEvictionPolicy": "AlwaysAllow"}}


def hpa(unit: OnlineUnit) -> dict[str, Any] | None:
    """Azure's target_utilization autoscale as autoscaling/v2 on CPU (Azure's default metric)."""
    scale = unit.spec.scale_settings
    if scale is None or scale.type != "target_utilization":
        return None
    name = names(unit.spec.endpoint_name, unit)
    low = max(1, scale.min_instances if scale.min_instances is not None else 1)
    high = max(low, scale.max_instances if scale.max_instances is not None else max(low, unit.spec.instance_count))
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": common.metadata(name, unit_labels(unit)),
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                     "minReplicas": low, "maxReplicas": high,
                     "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                         "type": "Utilization", "averageUtilization": scale.target_utilization_percentage or 70}}}],
                     "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300,
                                                "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}]},
                                  "scaleUp": {"stabilizationWindowSeconds": 0}}}}


def config_map(unit: OnlineUnit) -> dict[str, Any] | None:
    if not unit.spec.environment_variables:
        return None
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": common.metadata(f"{names(unit.spec.endpoint_name, unit)}-env", unit_labels(unit)),
            "data": dict(sorted(unit.spec.environment_variables.items()))}


def service_account(unit: OnlineUnit) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": common.metadata(names(unit.spec.endpoint_name, unit), unit_labels(unit)),
            "automountServiceAccountToken": False}
