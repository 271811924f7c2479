"""What every renderer shares: names, labels, the Azure SKU table, security settings, probes, YAML."""

from __future__ import annotations

import math
import re
from typing import Any

import yaml

from appliance.specs.effects import is_gpu_sku
from appliance.specs.entities import Probe

PART_OF = "app.kubernetes.io/part-of"
WORKER_UID = 10001  # the package image's user (appliance/builder/dockerfile.py UID)
KEYS_DIR = "/var/run/secrets/appliance/endpoint-keys"  # where the key Secret is mounted; the worker reads it
KEY_NAMES = ("primaryKey", "secondaryKey")  # the Secret's keys: get-credentials' field names
WORKER_COMMAND = ["/opt/venv/bin/python", "-m", "appliance.scoring"]
SHARD_COMMAND = ["/opt/venv/bin/python", "-m", "appliance.scoring.shard"]
GPU_RESOURCE = "nvidia.com/gpu"

# Azure VM size → what one container gets: (CPU cores, memory GiB, NVIDIA GPUs). Memory is about 85% of
# the VM's (the rest is the kubelet's and the node's daemons'), so a pod fits a node of that size.
# CPU is a request (no CPU limit: throttling hurts latency); memory and GPUs are requests = limits.
SKUS: dict[str, tuple[float, int, int]] = {
    "standard_ds1_v2": (1, 3, 0),
    "standard_ds2_v2": (2, 6, 0),
    "standard_ds3_v2": (4, 12, 0),
    "standard_ds4_v2": (8, 24, 0),
    "standard_ds5_v2": (16, 48, 0),
    "standard_d2as_v4": (2, 7, 0),
    "standard_d4as_v4": (4, 14, 0),
    "standard_d8as_v4": (8, 28, 0),
    "standard_d16as_v4": (16, 54, 0),
    "standard_d32as_v4": (32, 108, 0),
    "standard_f2s_v2": (2, 3, 0),
    "standard_f4s_v2": (4, 7, 0),
    "standard_f8s_v2": (8, 14, 0),
    "standard_f16s_v2": (16, 28, 0),
    "standard_f32s_v2": (32, 54, 0),
    "standard_f48s_v2": (48, 82, 0),
    "standard_f64s_v2": (64, 108, 0),
    "standard_f72s_v2": (72, 122, 0),
    "standard_e2s_v3": (2, 14, 0),
    "standard_e4s_v3": (4, 27, 0),
    "standard_e8s_v3": (8, 54, 0),
    "standard_e16s_v3": (16, 108, 0),
    "standard_e32s_v3": (32, 217, 0),
    "standard_e48s_v3": (48, 326, 0),
    "standard_e64s_v3": (64, 369, 0),
    "standard_nc6s_v3": (6, 95, 1),  # V100
    "standard_nc12s_v3": (12, 190, 2),
    "standard_nc24s_v3": (24, 380, 4),
    "standard_nc24rs_v3": (24, 380, 4),
    "standard_nc4as_t4_v3": (4, 23, 1),  # T4
    "standard_nc8as_t4_v3": (8, 47, 1),
    "standard_nc16as_t4_v3": (16, 93, 1),
    "standard_nc64as_t4_v3": (64, 374, 4),
    "standard_nc24ads_a100_v4": (24, 187, 1),  # A100 80GB
    "standard_nc48ads_a100_v4": (48, 374, 2),
    "standard_nc96ads_a100_v4": (96, 748, 4),
    "standard_nd40rs_v2": (40, 571, 8),  # V100 32GB
    "standard_nd96asr_v4": (96, 765, 8),  # A100 40GB
    "standard_nd96amsr_a100_v4": (96, 1615, 8),  # A100 80GB
    "standard_nd96isr_h100_v5": (96, 1615, 8),  # H100
    "standard_nc40ads_h100_v5": (40, 272, 1),  # H100 NVL
    "standard_nc80adis_h100_v5": (80, 544, 2),
}
DEFAULT_SKU = (1.0, 2, 0)  # no instance_type (or one not in the table): a small pod, said in a warning


def k8s_name(*parts: str) -> str:
    """A DNS-1123 name from Azure names (which allow capitals and underscores), at most 63 characters."""
    text = re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")
    return text[:63].rstrip("-") or "x"


def labels(endpoint: str, deployment: str | None, version: str | None, component: str) -> dict[str, str]:
    """The recommended labels; `name` + `instance` are the selector (stable across versions)."""
    return {"app.kubernetes.io/name": k8s_name(endpoint),
            "app.kubernetes.io/instance": k8s_name(endpoint, deployment) if deployment else k8s_name(endpoint),
            "app.kubernetes.io/version": label_value(version or "1"),
            "app.kubernetes.io/component": component,
            PART_OF: k8s_name(endpoint)}


def selector(all_labels: dict[str, str]) -> dict[str, str]:
    return {k: all_labels[k] for k in ("app.kubernetes.io/name", "app.kubernetes.io/instance")}


def label_value(text: str) -> str:
    value = re.sub(r"[^A-Za-z0-9._-]+", "-", text)[:63].strip("-._")
    return value or "1"


def metadata(name: str, all_labels: dict[str, str], annotations: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": dict(all_labels)}
    if annotations:
        meta["annotations"] = annotations
    return meta


def sku(instance_type: str | None) -> tuple[float, int, int, bool]:
    """(CPU, memory GiB, GPUs, known): from the table; an unknown GPU SKU gets 1 GPU."""
    if instance_type and (found := SKUS.get(instance_type.lower())):
        return (*found, True)
    cpu, mem, _ = DEFAULT_SKU
    return cpu, mem, 1 if is_gpu_sku(instance_type) else 0, not instance_type


def resources(instance_type: str | None, explicit: dict[str, Any] | None,
              sized: tuple[int, int] | None = None) -> tuple[dict[str, Any], int]:
    """Requests and limits (and the GPU count): a Kubernetes deployment's own `resources` as written,
    else what `deployment profile` measured (`sized`: CPU millicores, memory MiB; GPUs still the SKU's),
    else from the SKU table."""
    if explicit:
        out = {k: {r: str(v) if not isinstance(v, int) else v for r, v in (explicit.get(k) or {}).items()}
               for k in ("requests", "limits") if explicit.get(k)}
        gpus = int(str((explicit.get("limits") or explicit.get("requests") or {}).get(GPU_RESOURCE, 0)))
        return out, gpus
    cpu, mem, gpus, _ = sku(instance_type)
    cpu_text = str(int(cpu)) if cpu == int(cpu) else f"{int(cpu * 1000)}m"
    mem_text = f"{mem}Gi"
    if sized is not None:
        cpu_text, mem_text = f"{sized[0]}m", f"{sized[1]}Mi"
    requests: dict[str, Any] = {"cpu": cpu_text, "memory": mem_text}
    limits: dict[str, Any] = {"memory": mem_text}
    if gpus:
        requests[GPU_RESOURCE] = gpus
        limits[GPU_RESOURCE] = gpus
    return {"requests": requests, "limits": limits}, gpus


def sku_warning(instance_type: str | None, subject: str) -> str | None:
    if instance_type is None:
        return f"{subject}: no instance_type; it gets 1 CPU and 2Gi (set resources in the overlay)"
    if instance_type.lower() not in SKUS:
        gpu = " and 1 GPU (a GPU family)" if is_gpu_sku(instance_type) else ""
        return (f"{subject}: instance_type {instance_type} is not in the SKU table; it gets 1 CPU and 2Gi{gpu} "
                "(set resources in the overlay)")
    return None


def pod_security() -> dict[str, Any]:
    return {"runAsNonRoot": True, "runAsUser": WORKER_UID, "runAsGroup": WORKER_UID, "fsGroup": WORKER_UID,
            "seccompProfile": {"type": "RuntimeDefault"}}


def container_security() -> dict[str, Any]:
    return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]}}


def gpu_scheduling() -> dict[str, Any]:
    """Nodes with NVIDIA GPUs: the GPU Operator's feature-discovery label and the usual taint."""
    return {"nodeSelector": {"nvidia.com/gpu.present": "true"},
            "tolerations": [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}]}


def probe(settings: Probe, path: str, port: str, liveness: bool = False) -> dict[str, Any]:
    """Azure's probe settings as a Kubernetes HTTP probe (a liveness probe's success threshold is 1)."""
    return {"httpGet": {"path": path, "port": port},
            "initialDelaySeconds": settings.initial_delay, "periodSeconds": settings.period,
            "timeoutSeconds": settings.timeout, "successThreshold": 1 if liveness else settings.success_threshold,
            "failureThreshold": settings.failure_threshold}


def startup_probe(readiness: Probe, path: str, port: str, period: int = 5) -> dict[str, Any]:
    """Lets a slow model load as long as Azure would (initial_delay + failure_threshold × period) before
    liveness starts counting."""
    budget = readiness.initial_delay + readiness.failure_threshold * readiness.period
    return {"httpGet": {"path": path, "port": port}, "periodSeconds": period, "timeoutSeconds": readiness.timeout,
            "failureThreshold": max(1, math.ceil(budget / period))}


def tmp_volumes() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """An emptyDir for /tmp (the root filesystem is read-only) and a memory-backed /dev/shm."""
    volumes = [{"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
               {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}}]
    mounts = [{"name": "tmp", "mountPath": "/tmp"}, {"name": "dshm", "mountPath": "/dev/shm"}]
    return volumes, mounts


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump(*documents: Any, header: str = "") -> str:
    """Deterministic YAML: keys in construction order, documents separated by `---`; `header` is a
    comment block put first."""
    body = "---\n".join(yaml.dump(d, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=120,
                                  allow_unicode=True) for d in documents)
    comment = "".join(f"# {line}".rstrip() + "\n" for line in header.splitlines()) if header else ""
    return comment + body
