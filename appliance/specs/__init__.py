"""The declarative model: Azure ML CLI v2 entities, their parsing and validation, name rules."""

from appliance.specs.documents import (
    Document,
    check_set_key,
    load_file,
    parse,
    read_yaml,
    registry_ref,
    set_field,
    split_ref,
)
from appliance.specs.entities import (
    BatchDeploymentSpec,
    BatchEndpointSpec,
    BatchSettings,
    CodeConfiguration,
    DataSpec,
    EnvironmentSpec,
    ModelSpec,
    OnlineDeploymentSpec,
    OnlineEndpointSpec,
    Probe,
    RequestSettings,
)
from appliance.specs.errors import Conflict, NotFound, SpecError

__all__ = [
    "BatchDeploymentSpec",
    "BatchEndpointSpec",
    "BatchSettings",
    "CodeConfiguration",
    "Conflict",
    "DataSpec",
    "Document",
    "EnvironmentSpec",
    "ModelSpec",
    "NotFound",
    "OnlineDeploymentSpec",
    "OnlineEndpointSpec",
    "Probe",
    "RequestSettings",
    "SpecError",
    "check_set_key",
    "load_file",
    "parse",
    "read_yaml",
    "registry_ref",
    "set_field",
    "split_ref",
]
