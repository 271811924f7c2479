"""What the renderers need besides the specs: a small typed description of each deployment's image."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from appliance.specs.entities import BatchDeploymentSpec, BatchEndpointSpec, OnlineDeploymentSpec, OnlineEndpointSpec

Kind = Literal["onnx", "script", "mlflow", "custom"]
Target = Literal["gateway", "istio", "kserve"]
PLACEHOLDER_REGISTRY = "registry.invalid"  # RFC 2606: a name that can never resolve, so nobody pulls it by mistake
PLACEHOLDER_DIGEST = "sha256:" + "0" * 64


@dataclass(frozen=True)
class ImageRef:
    """An image in the base (`name`, what `appliance package` tags locally, without a tag) and where the
    overlays pin it: `new_name@digest`. `pinned` is false when `digest` is a placeholder (the local image
    id, the image not pushed anywhere yet)."""

    name: str
    new_name: str
    digest: str
    pinned: bool

    @property
    def reference(self) -> str:
        return f"{self.new_name}@{self.digest}"


@dataclass(frozen=True)
class Sized:
    """A deployment's measured size (`deployment profile`'s recommendation): the container's requests
    instead of the SKU table's."""

    cpu_millicores: int
    memory_mib: int


@dataclass(frozen=True)
class OnlineUnit:
    spec: OnlineDeploymentSpec
    image: ImageRef
    kind: Kind = "onnx"
    model_name: str | None = None
    model_version: str | None = None
    port: int = 8080
    liveness_path: str = "/"
    readiness_path: str = "/"
    scoring_path: str = "/score"
    sized: Sized | None = None  # from `deployment profile`, when it was profiled


@dataclass(frozen=True)
class OnlineEndpointExport:
    spec: OnlineEndpointSpec
    deployments: tuple[OnlineUnit, ...]


@dataclass(frozen=True)
class BatchUnit:
    spec: BatchDeploymentSpec
    image: ImageRef
    model_name: str | None = None
    model_version: str | None = None


@dataclass(frozen=True)
class BatchEndpointExport:
    spec: BatchEndpointSpec
    deployments: tuple[BatchUnit, ...]


@dataclass(frozen=True)
class Options:
    target: Target = "gateway"
    namespace: str = "appliance"
    gateway: str = "appliance-gateway"  # the Gateway (Gateway API) or Istio gateway the routes attach to
    dev_namespace: str | None = None  # default: <namespace>-dev
    notes: tuple[str, ...] = field(default=())  # said in the README (e.g. how images were made)
