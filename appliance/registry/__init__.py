"""DuckDB schema and migrations (the only code that writes SQL), and the artifact store."""

from appliance.registry.artifacts import Artifact, ArtifactStore, digest_of
from appliance.registry.records import (
    DeploymentRecord,
    EndpointRecord,
    EnvironmentRecord,
    Event,
    ModelRecord,
)
from appliance.registry.store import Registry

__all__ = [
    "Artifact",
    "ArtifactStore",
    "DeploymentRecord",
    "EndpointRecord",
    "EnvironmentRecord",
    "Event",
    "ModelRecord",
    "Registry",
    "digest_of",
]
