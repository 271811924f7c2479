"""The declarative model: the Azure ML CLI v2 entities, as typed structs.

Field names and defaults are Azure's (reference: azureml.md). Appliance extensions are marked.
Paths are absolute once a document is loaded (`appliance.specs.documents`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

Percent = Annotated[int, Meta(ge=0, le=100)]
Positive = Annotated[int, Meta(ge=1)]
NonNegative = Annotated[int, Meta(ge=0)]


class Spec(Struct, kw_only=True, forbid_unknown_fields=False):
    """Base of every entity; unknown fields are reported as warnings by the loader."""


class ModelSpec(Spec):
    name: str | None = None
    version: str | int | None = None  # Azure's examples write `version: 1`
    path: str | None = None
    type: str = "custom_model"
    description: str = ""
    tags: dict[str, str] = {}
    properties: dict[str, str] = {}
    stage: str | None = None
    # Appliance extension: `onnx` is inferred when the path holds an .onnx file.
    framework: Literal["onnx", "custom"] | None = None


class Route(Spec):
    path: str
    port: Annotated[int, Meta(ge=1, le=65535)]


class InferenceConfig(Spec):
    liveness_route: Route
    readiness_route: Route
    scoring_route: Route


class BuildContext(Spec):
    path: str
    dockerfile_path: str = "Dockerfile"


class EnvironmentSpec(Spec):
    name: str | None = None
    version: str | int | None = None
    image: str | None = None
    conda_file: str | dict[str, Any] | None = None
    build: BuildContext | None = None
    inference_config: InferenceConfig | None = None
    os_type: Literal["linux", "windows"] = "linux"
    description: str = ""
    tags: dict[str, str] = {}


class OnlineEndpointSpec(Spec):
    name: str
    description: str = ""
    tags: dict[str, str] = {}
    auth_mode: Literal["key", "aml_token", "aad_token"] = "key"
    traffic: dict[str, int] = {}  # ranges are checked with the traffic rules, naming the deployment
    mirror_traffic: dict[str, int] = {}
    identity: dict[str, Any] | None = None
    public_network_access: Literal["enabled", "disabled"] = "enabled"
    compute: str | None = None
    kind: str | None = None


class CodeConfiguration(Spec):
    code: str
    scoring_script: str


class RequestSettings(Spec):
    request_timeout_ms: Annotated[int, Meta(ge=1, le=180_000)] = 5000
    max_concurrent_requests_per_instance: Positive = 1
    max_queue_wait_ms: NonNegative = 500


class Probe(Spec):
    initial_delay: NonNegative = 10
    period: Positive = 10
    timeout: Positive = 2
    success_threshold: Positive = 1
    failure_threshold: Positive = 30


class ScaleSettings(Spec):
    type: Literal["default", "target_utilization"] = "default"
    min_instances: NonNegative | None = None
    max_instances: Positive | None = None
    target_utilization_percentage: Percent | None = None
    polling_interval: Positive | None = None


class OnlineDeploymentSpec(Spec):
    name: str
    endpoint_name: str
    description: str = ""
    tags: dict[str, str] = {}
    model: str | ModelSpec | None = None
    code_configuration: CodeConfiguration | None = None
    environment: str | EnvironmentSpec | None = None
    environment_variables: dict[str, str] = {}
    instance_type: str | None = None
    instance_count: Positive = 1
    request_settings: RequestSettings = msgspec.field(default_factory=RequestSettings)
    liveness_probe: Probe = msgspec.field(default_factory=Probe)
    readiness_probe: Probe = msgspec.field(default_factory=Probe)
    scale_settings: ScaleSettings | None = None
    app_insights_enabled: bool = False
    data_collector: dict[str, Any] | None = None
    resources: dict[str, Any] | None = None
    egress_public_network_access: Literal["enabled", "disabled"] = "enabled"
    # A custom container's model folder (default /var/azureml-app/azureml-models/<name>/<version>).
    model_mount_path: str | None = None
    type: Literal["managed", "kubernetes"] | None = None
    # Appliance extensions.
    runtime: Literal["process", "docker", "inprocess"] | None = None  # unset: see Control.runtime
    watch: bool = False


class BatchDefaults(Spec):
    deployment_name: str | None = None


class BatchEndpointSpec(Spec):
    name: str
    description: str = ""
    tags: dict[str, str] = {}
    auth_mode: Literal["key", "aml_token", "aad_token"] = "aad_token"  # Azure's batch default
    defaults: BatchDefaults = msgspec.field(default_factory=BatchDefaults)


class RetrySettings(Spec):
    max_retries: NonNegative = 3
    timeout: Positive = 30  # seconds a mini-batch may take


class BatchSettings(Spec):
    mini_batch_size: Positive = 10  # files per run() call
    max_concurrency_per_instance: Positive = 1
    output_action: Literal["append_row", "summary_only"] = "append_row"
    output_file_name: str = "predictions.csv"
    retry_settings: RetrySettings = msgspec.field(default_factory=RetrySettings)
    error_threshold: Annotated[int, Meta(ge=-1)] = -1  # failed items tolerated; -1: all
    logging_level: Literal["debug", "info", "warning", "error", "critical"] = "info"
    environment_variables: dict[str, str] = {}
    # Appliance extension (no-code ONNX on tabular files): columns copied beside the predictions.
    key_columns: list[str] = []


class BatchResources(Spec):
    instance_count: Positive = 1
    instance_type: str | None = None
    properties: dict[str, Any] = {}


# Azure's legacy batch deployment YAML writes the settings at the root.
LEGACY_SETTINGS = ("mini_batch_size", "max_concurrency_per_instance", "output_action", "output_file_name",
                   "retry_settings", "error_threshold", "logging_level", "environment_variables")


class BatchDeploymentSpec(Spec):
    name: str
    endpoint_name: str
    description: str = ""
    tags: dict[str, str] = {}
    type: Literal["model", "pipeline"] = "model"
    model: str | ModelSpec | None = None
    code_configuration: CodeConfiguration | None = None
    environment: str | EnvironmentSpec | None = None
    compute: str | None = None  # recorded; jobs run on this machine
    resources: BatchResources = msgspec.field(default_factory=BatchResources)
    settings: BatchSettings = msgspec.field(default_factory=BatchSettings)
    component: Any = None  # a pipeline deployment's (refused, with why)


class DataSpec(Spec):
    name: str
    path: str
    version: str | int | None = None
    type: Literal["uri_folder", "uri_file"] = "uri_folder"
    description: str = ""
    tags: dict[str, str] = {}


KINDS: dict[str, type[Spec]] = {
    "model": ModelSpec,
    "environment": EnvironmentSpec,
    "online_endpoint": OnlineEndpointSpec,
    "online_deployment": OnlineDeploymentSpec,
    "batch_endpoint": BatchEndpointSpec,
    "batch_deployment": BatchDeploymentSpec,
    "data": DataSpec,
}
