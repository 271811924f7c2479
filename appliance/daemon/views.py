"""JSON views of stored entities, joined with what the runtime knows."""

from __future__ import annotations

from typing import Any

import msgspec

from appliance.registry import DeploymentRecord, EndpointRecord, EnvironmentRecord, Event, ModelRecord
from appliance.runtime import DeploymentRuntime


def model(rec: ModelRecord) -> dict[str, Any]:
    return {**msgspec.to_builtins(rec), "id": rec.ref}


def environment(rec: EnvironmentRecord) -> dict[str, Any]:
    return {**msgspec.to_builtins(rec), "id": rec.ref}


def endpoint(rec: EndpointRecord, base_url: str) -> dict[str, Any]:
    spec = msgspec.to_builtins(rec.spec)
    spec.setdefault("traffic", {})
    spec.setdefault("mirror_traffic", {})
    spec.setdefault("auth_mode", "key")
    return {**spec, "scoring_uri": f"{base_url}/endpoints/{rec.name}/score",
            "swagger_uri": f"{base_url}/endpoints/{rec.name}/swagger.json",
            "provisioning_state": "Succeeded",
            "created_at": rec.created_at, "updated_at": rec.updated_at}


def deployment(rec: DeploymentRecord, runtime: DeploymentRuntime | None, traffic: int) -> dict[str, Any]:
    status = runtime.describe() if runtime else {"provisioning_state": "Creating", "error": None,
                                                 "provider": None, "instances": []}
    return {**msgspec.to_builtins(rec.spec), **status, "traffic": traffic,
            "created_at": rec.created_at, "updated_at": rec.updated_at}


def event(ev: Event) -> dict[str, Any]:
    return msgspec.to_builtins(ev)
