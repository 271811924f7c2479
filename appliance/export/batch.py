"""Per batch deployment: an Indexed Job (each pod scores its share of the input list by
JOB_COMPLETION_INDEX with `python -m appliance.scoring.shard`, the batch worker's drivers) and a
suspended CronJob variant for schedules."""

from __future__ import annotations

from typing import Any

from appliance.export import common
from appliance.export.inputs import BatchUnit

INPUT = "/mnt/input"
OUTPUT = "/mnt/output"
TTL = 86_400  # finished Jobs (and their pods' logs) stay a day


def names(unit: BatchUnit) -> str:
    return common.k8s_name(unit.spec.endpoint_name, unit.spec.name)


def shards(unit: BatchUnit) -> int:
    """Azure runs instance_count × max_concurrency_per_instance workers: one index each."""
    return unit.spec.resources.instance_count * unit.spec.settings.max_concurrency_per_instance


def unit_labels(unit: BatchUnit) -> dict[str, str]:
    return common.labels(unit.spec.endpoint_name, unit.spec.name, unit.model_version, "batch-deployment")


def claims(unit: BatchUnit) -> tuple[str, str]:
    """The PersistentVolumeClaims the input list is read from and the outputs written to (the user's)."""
    return f"{names(unit)}-input", f"{names(unit)}-output"


def job_template(unit: BatchUnit) -> dict[str, Any]:
    spec, settings = unit.spec, unit.spec.settings
    count = shards(unit)
    all_labels = unit_labels(unit)
    res, gpus = common.resources(spec.resources.instance_type, None)
    volumes, mounts = common.tmp_volumes()
    source, sink = claims(unit)
    volumes += [{"name": "input", "persistentVolumeClaim": {"claimName": source, "readOnly": True}},
                {"name": "output", "persistentVolumeClaim": {"claimName": sink}}]
    mounts += [{"name": "input", "mountPath": INPUT, "readOnly": True}, {"name": "output", "mountPath": OUTPUT}]
    env = [{"name": "APPLIANCE_SHARDS", "value": str(count)},
           {"name": "AZUREML_BATCH_MINI_BATCH_SIZE", "value": str(settings.mini_batch_size)},
           {"name": "AZUREML_BATCH_OUTPUT_ACTION", "value": settings.output_action},
           {"name": "AZUREML_BATCH_OUTPUT_FILE_NAME", "value": settings.output_file_name},
           {"name": "AZUREML_BATCH_TIMEOUT", "value": str(settings.retry_settings.timeout)},
           {"name": "AZUREML_LOG_LEVEL", "value": settings.logging_level},
           {"name": "TMPDIR", "value": "/tmp"}]
    cont: dict[str, Any] = {"name": "shard", "image": unit.image.name, "command": list(common.SHARD_COMMAND),
                            "args": ["--input", INPUT, "--output", OUTPUT], "env": env}
    if settings.environment_variables:
        cont["envFrom"] = [{"configMapRef": {"name": f"{names(unit)}-env"}}]
    cont.update({"resources": res, "securityContext": common.container_security(), "volumeMounts": mounts})
    pod: dict[str, Any] = {"restartPolicy": "Never", "automountServiceAccountToken": False,
                           "securityContext": common.pod_security(), "containers": [cont], "volumes": volumes}
    if gpus:
        pod.update(common.gpu_scheduling())
    job: dict[str, Any] = {
        "completionMode": "Indexed", "completions": count, "parallelism": count,
        # A failed pod retries its own index (its mini-batches) up to max_retries times.
        "backoffLimitPerIndex": settings.retry_settings.max_retries,
        "ttlSecondsAfterFinished": TTL,
        "template": {"metadata": {"labels": all_labels}, "spec": pod},
    }
    if settings.error_threshold == 0:
        job["maxFailedIndexes"] = 0  # any failed index fails the Job at once
    return job


def job(unit: BatchUnit) -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": common.metadata(names(unit), unit_labels(unit)),
            "spec": job_template(unit)}


def cron_job(unit: BatchUnit, schedule: str = "0 2 * * *", time_zone: str = "Etc/UTC") -> dict[str, Any]:
    """Suspended until the schedule is set for real (`suspend: false` in the overlay)."""
    return {"apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": common.metadata(names(unit), unit_labels(unit)),
            "spec": {"schedule": schedule, "timeZone": time_zone, "concurrencyPolicy": "Forbid", "suspend": True,
                     "successfulJobsHistoryLimit": 3, "failedJobsHistoryLimit": 3,
                     "jobTemplate": {"metadata": {"labels": unit_labels(unit)}, "spec": job_template(unit)}}}


def config_map(unit: BatchUnit) -> dict[str, Any] | None:
    if not unit.spec.settings.environment_variables:
        return None
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": common.metadata(f"{names(unit)}-env", unit_labels(unit)),
            "data": dict(sorted(unit.spec.settings.environment_variables.items()))}
