"""`POST /api/v1/export`: endpoints as Kubernetes manifests (kustomize base + overlays, `--target gateway |
istio | kserve`) or as Azure ML CLI v2 YAML. Reads the registry, packages each online deployment's image
(Control.package; with `push`, pushed to `registry` and pinned by its digest), renders with
`appliance.export` (pure) and answers {files: {path: text}, copies: {path: source folder}, warnings}."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
from litestar import Request, post
from litestar.response import Stream
from msgspec import Meta, Struct

from appliance.builder import images
from appliance.builder.run import BuildError
from appliance.daemon.api import _BODY, _MISSING, BuildLine, _answers, _control, _ndjson, _stream
from appliance.daemon.control import Control, custom_container
from appliance.export import (
    BatchEndpointExport,
    BatchUnit,
    ImageRef,
    OnlineEndpointExport,
    OnlineUnit,
    Options,
    azure,
    common,
    render,
)
from appliance.export.inputs import PLACEHOLDER_DIGEST, PLACEHOLDER_REGISTRY, Sized
from appliance.registry import DeploymentRecord
from appliance.specs import EnvironmentSpec, ModelSpec, SpecError, split_ref
from appliance.specs.names import ENDPOINT_NAME

Name = Annotated[str, Meta(pattern=ENDPOINT_NAME.pattern, min_length=3, max_length=32)]
Registry = Annotated[str, Meta(pattern=r"^[a-z0-9]([a-z0-9.:_-]*[a-z0-9])?(/[a-z0-9._-]+)*$", max_length=200)]
Namespace = Annotated[str, Meta(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=58)]


class ExportIn(Struct, forbid_unknown_fields=True):
    endpoints: Annotated[list[Name], Meta(min_length=1, max_length=50)]
    format: Literal["kubernetes", "azure"] = "kubernetes"
    target: Literal["gateway", "istio", "kserve"] = "gateway"
    registry: Registry | None = None  # REGISTRY[/PREFIX] the images are (or get) pushed to
    namespace: Namespace = "appliance"
    push: bool = False


@post("/export", status_code=200, media_type="application/x-ndjson",
      responses=_answers(*_BODY, _MISSING, _ndjson(BuildLine)))
async def export(request: Request[Any, Any, Any], data: ExportIn) -> Stream:
    """The endpoints (online or batch) as files: image builds streamed as NDJSON lines, then the `result`
    {files, copies, warnings} (`copies`: output path → folder to copy there, for --format azure)."""
    control = _control(request)
    if data.push and not data.registry:
        raise SpecError("push needs a registry to push to (--registry REG)", field="registry")
    await asyncio.to_thread(_check, control, data.endpoints)  # a 404 before the stream starts
    return _stream(lambda say: asyncio.to_thread(run, control, data, say))


def _check(control: Control, names: list[str]) -> None:
    for name in names:
        if control.registry.find_endpoint(name) is None and control.registry.find_batch_endpoint(name) is None:
            control.registry.get_endpoint(name)  # NotFound, the registry's own message


def run(control: Control, data: ExportIn, say: Any) -> dict[str, Any]:
    if data.format == "azure":
        return _azure(control, data.endpoints)
    reg = control.registry
    online: list[OnlineEndpointExport] = []
    batches: list[BatchEndpointExport] = []
    warnings: list[str] = []
    for name in sorted(set(data.endpoints)):
        if (ep := reg.find_endpoint(name)) is not None:
            units = tuple(_online_unit(control, rec, data, say, warnings) for rec in reg.list_deployments(name))
            online.append(OnlineEndpointExport(spec=ep.spec, deployments=units))
        else:
            bep = reg.get_batch_endpoint(name)
            bunits = []
            for brec in reg.list_batch_deployments(name):
                model = _model_of(control, brec.spec.model)
                tag = f"appliance/{common.k8s_name(name, brec.spec.name)}"
                warnings.append(f"batch deployment {name}/{brec.spec.name}: its image is not built by export yet; "
                                f"build one from its environment with the model and code in, and set {tag} in "
                                "the overlays")
                bunits.append(BatchUnit(spec=brec.spec, image=_placeholder(tag, None, data.registry),
                                        model_name=model[0] if model else None,
                                        model_version=model[1] if model else None))
            batches.append(BatchEndpointExport(spec=bep.spec, deployments=tuple(bunits)))
    files, notes = render(online, batches, Options(target=data.target, namespace=data.namespace))
    return {"files": files, "copies": {}, "warnings": warnings + notes}


def _model_of(control: Control, ref: Any) -> tuple[str, str] | None:
    if not isinstance(ref, str):
        return None
    model = control.registry.get_model(*split_ref(ref, "model"))
    return model.name, model.version


def _placeholder(tag: str, image_id: str | None, registry: str | None) -> ImageRef:
    repo = tag.split(":", 1)[0]
    where = f"{registry}/{repo.rsplit('/', 1)[-1]}" if registry else f"{PLACEHOLDER_REGISTRY}/{repo}"
    return ImageRef(name=repo, new_name=where, digest=image_id or PLACEHOLDER_DIGEST, pinned=False)


def _online_unit(control: Control, rec: DeploymentRecord, data: ExportIn, say: Any,
                 warnings: list[str]) -> OnlineUnit:
    spec = rec.spec
    plan = control.plan(rec)
    env = control.registry.get_environment(*split_ref(spec.environment, "environment")) \
        if isinstance(spec.environment, str) else None
    kind: Any = "script" if plan.scoring_script else "mlflow" if "MLFLOW_MODEL_FOLDER" in \
        dict(plan.environment_variables) else "custom" if env is not None and custom_container(spec, env) else "onnx"
    score, live, ready = plan.routes
    repo_name = common.k8s_name(spec.endpoint_name, spec.name)
    push = f"{data.registry}/{repo_name}" if data.push and data.registry else None
    try:
        packaged = control.package(spec.endpoint_name, spec.name, push, say)
    except (BuildError, images.DockerUnavailable) as exc:
        warnings.append(f"deployment {spec.endpoint_name}/{spec.name}: not packaged ({exc}); its image is a "
                        "placeholder")
        image = _placeholder(f"appliance/{repo_name}", None, data.registry)
    else:
        if push:
            new_name, _, digest = packaged["reference"].partition("@")
            image = ImageRef(name=packaged["image"].split(":", 1)[0], new_name=new_name, digest=digest, pinned=True)
        else:
            image = _placeholder(packaged["image"], packaged["id"], data.registry)
    return OnlineUnit(spec=spec, image=image, kind=kind, model_name=plan.model_name,
                      model_version=plan.model_version, port=plan.port if kind == "custom" else 8080,
                      liveness_path=live, readiness_path=ready, scoring_path=score, sized=_sized(control, rec))


def _sized(control: Control, rec: DeploymentRecord) -> Sized | None:
    """The CPU and memory `deployment profile` recommended for the deployment, if it was profiled."""
    stored = control.registry.find_profile(rec.spec.endpoint_name, rec.spec.name) or {}
    recommended = stored.get("recommendation") or {}
    try:
        return Sized(cpu_millicores=int(recommended["cpu_millicores"]), memory_mib=int(recommended["memory_mib"]))
    except (KeyError, TypeError, ValueError):
        return None


def _azure(control: Control, names: list[str]) -> dict[str, Any]:
    """Azure ML YAML of the endpoints, their deployments and the models and environments they use; the
    model, code and build folders are listed in `copies` (the client copies them beside the YAML)."""
    reg = control.registry
    store = reg.artifacts
    copies: dict[str, str] = {}
    models: dict[tuple[str, str], ModelSpec] = {}
    envs: dict[tuple[str, str], EnvironmentSpec] = {}
    endpoints, deployments, bendpoints, bdeployments = [], [], [], []

    def refs(spec: Any, code_digest: str | None, folder: str) -> Any:
        if isinstance(spec.model, str):
            model = reg.get_model(*split_ref(spec.model, "model"))
            if (model.name, model.version) not in models:
                where = common.k8s_name(model.name, model.version)
                copies[f"models/{where}/{model.path_name}"] = str(store.path(model.digest) / model.path_name)
                models[(model.name, model.version)] = ModelSpec(
                    name=model.name, version=model.version, path=f"./{where}/{model.path_name}", type=model.type,
                    description=model.description, tags=model.tags)
        if isinstance(spec.environment, str) and not spec.environment.startswith("azureml://"):
            env = reg.find_environment(*split_ref(spec.environment, "environment"))
            if env is not None and (env.name, env.version) not in envs:
                env_spec = env.spec
                if env_spec.build is not None:
                    where = f"{common.k8s_name(env.name, env.version)}-build"
                    copies[f"environments/{where}"] = env_spec.build.path
                    env_spec = msgspec.structs.replace(
                        env_spec, build=msgspec.structs.replace(env_spec.build, path=f"./{where}"))
                envs[(env.name, env.version)] = env_spec
        if code_digest and spec.code_configuration:
            copies[f"code/{folder}"] = str(store.path(code_digest) / reg.artifact_name(code_digest))
            spec = msgspec.structs.replace(spec, code_configuration=msgspec.structs.replace(
                spec.code_configuration, code=f"../../code/{folder}"))
        return spec

    for name in sorted(set(names)):
        if (ep := reg.find_endpoint(name)) is not None:
            endpoints.append(ep.spec)
            for rec in reg.list_deployments(name):
                deployments.append(refs(rec.spec, rec.code_digest, common.k8s_name(name, rec.spec.name)))
        else:
            bendpoints.append(reg.get_batch_endpoint(name).spec)
            for brec in reg.list_batch_deployments(name):
                bdeployments.append(refs(brec.spec, brec.code_digest, common.k8s_name(name, brec.spec.name)))
    files = azure.render(list(models.values()), list(envs.values()), endpoints, deployments, bendpoints,
                         bdeployments)
    missing = [path for path in copies.values() if not Path(path).exists()]
    warnings = [f"{path}: not found; copy it by hand" for path in missing]
    return {"files": files, "copies": dict(sorted(copies.items())), "warnings": warnings}


HANDLERS = [export]
