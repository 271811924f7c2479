"""DuckDB schema and migrations (the only code that writes SQL), and the artifact store."""

from appliance.registry.artifacts import Artifact, ArtifactStore, digest_of
from appliance.registry.records import (
    FINAL_STATES,
    BatchDeploymentRecord,
    BatchEndpointRecord,
    DataRecord,
    DeploymentRecord,
    EndpointRecord,
    EnvironmentRecord,
    Event,
    JobRecord,
    MiniBatch,
    ModelRecord,
)
from appliance.registry.store import Registry

__all__ = [
    "FINAL_STATES",
    "Artifact",
    "ArtifactStore",
    "BatchDeploymentRecord",
    "BatchEndpointRecord",
    "DataRecord",
    "DeploymentRecord",
    "EndpointRecord",
    "EnvironmentRecord",
    "Event",
    "JobRecord",
    "MiniBatch",
    "ModelRecord",
    "Registry",
    "digest_of",
]
