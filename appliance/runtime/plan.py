"""What it takes to launch a deployment's instances, resolved by the daemon from the registry."""

from __future__ import annotations

from dataclasses import dataclass, field

from appliance.specs import Probe, RequestSettings


@dataclass(frozen=True)
class LaunchPlan:
    endpoint: str
    deployment: str
    instance_count: int
    model_name: str | None
    model_version: str | None
    model_dir: str | None  # becomes AZUREML_MODEL_DIR
    code_dir: str | None = None  # becomes AML_APP_ROOT
    scoring_script: str | None = None
    environment_variables: tuple[tuple[str, str], ...] = ()
    request_settings: RequestSettings = field(default_factory=RequestSettings)
    liveness_probe: Probe = field(default_factory=Probe)
    readiness_probe: Probe = field(default_factory=Probe)
    requirements: tuple[str, ...] = ()  # the environment's pip requirements: a venv of its own
    python: str | None = None  # interpreter; None = the appliance's own
    runtime: str = "process"  # or "docker", or "inprocess" (no-code ONNX in the daemon)
    image: str | None = None  # docker: the image to run (an environment image, or a custom one)
    port: int = 8080  # docker: the port the container serves on
    routes: tuple[str, str, str] = ("/score", "/", "/")  # scoring, liveness, readiness paths
    gpu: bool = False  # docker: ask the engine for GPUs
    model_mount: str | None = None  # docker: where the model goes (AZUREML_MODEL_DIR); None: Azure's default
    data_collection: str | None = None  # the worker's APPLIANCE_DATA_COLLECTION (scoring/collect.py), or None

    @property
    def key(self) -> tuple[str, str]:
        return self.endpoint, self.deployment

    def same_instances(self, other: LaunchPlan | None) -> bool:
        """Whether `other` runs the same code on the same model (only the count may differ)."""
        if other is None:
            return False
        fields = ("model_dir", "code_dir", "scoring_script", "environment_variables", "requirements", "python",
                  "model_name", "model_version", "runtime", "image", "port", "routes", "gpu",
                  "model_mount", "data_collection")
        return all(getattr(self, f) == getattr(other, f) for f in fields)
