"""What the registry returns: stored entities with their bookkeeping."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from msgspec import Struct

from appliance.specs import EnvironmentSpec, OnlineDeploymentSpec, OnlineEndpointSpec


class ModelRecord(Struct, kw_only=True):
    name: str
    version: str
    type: str
    framework: str
    digest: str
    path_name: str
    signature: dict[str, Any] | None
    tags: dict[str, str]
    description: str
    created_at: datetime
    archived: bool = False  # `model archive`: hidden from `model list`, usable by name:version

    @property
    def ref(self) -> str:
        return f"azureml:{self.name}:{self.version}"


class EnvironmentRecord(Struct, kw_only=True):
    name: str
    version: str
    digest: str
    spec: EnvironmentSpec
    created_at: datetime

    @property
    def ref(self) -> str:
        return f"azureml:{self.name}:{self.version}"


class EndpointRecord(Struct, kw_only=True):
    spec: OnlineEndpointSpec
    id: str  # random, given at creation: a re-created endpoint of the same name has another (tokens sign it)
    primary_key: str  # plaintext here; sealed in the database
    secondary_key: str
    created_at: datetime
    updated_at: datetime

    @property
    def name(self) -> str:
        return self.spec.name


class DeploymentRecord(Struct, kw_only=True):
    spec: OnlineDeploymentSpec  # model/environment are azureml:name:version references
    code_digest: str | None
    created_at: datetime
    updated_at: datetime

    @property
    def key(self) -> tuple[str, str]:
        return self.spec.endpoint_name, self.spec.name


class Event(Struct, kw_only=True):
    id: int
    at: datetime
    kind: str
    subject: str
    detail: dict[str, Any]
