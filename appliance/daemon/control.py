"""Control-plane operations, independent of HTTP: apply documents, create and delete, restore.

Each write runs in a worker thread as one registry transaction (a failed apply stores nothing,
and artifacts it copied are removed); then the runtime and the routing table follow the registry.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import secrets
import weakref
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from appliance.builder import curated, dockerfile, images, mlflow_env, venv
from appliance.builder.run import BuildError
from appliance.daemon import background
from appliance.daemon.jobs import Jobs
from appliance.daemon.monitors import Monitors
from appliance.registry import (
    BatchDeploymentRecord,
    BatchEndpointRecord,
    DataRecord,
    DeploymentRecord,
    EndpointRecord,
    EnvironmentRecord,
    ModelRecord,
    Registry,
)
from appliance.registry.artifacts import Artifact
from appliance.router import EndpointRoute, RoutingTable, tokens
from appliance.runtime import DeploymentRuntime, LaunchPlan, Supervisor, logs
from appliance.scoring import batching, collect, providers
from appliance.scoring.onnx_model import OnnxModel, find_onnx_file, triton_name
from appliance.specs import (
    BatchDeploymentSpec,
    BatchEndpointSpec,
    Conflict,
    DataSpec,
    Document,
    EnvironmentSpec,
    ModelSpec,
    OnlineDeploymentSpec,
    OnlineEndpointSpec,
    SpecError,
    check_set_key,
    effects,
    parse,
    registry_ref,
    set_field,
    split_ref,
)
from appliance.specs import traffic as traffic_rules

log = logging.getLogger("appliance.control")

Progress = Callable[[str], None]  # a line of a long operation's output, for the user waiting on it
ORDER = {"environment": 0, "model": 1, "data": 1, "online_endpoint": 2, "batch_endpoint": 2, "online_deployment": 3,
         "batch_deployment": 3}


@dataclass
class Outcome:
    """What an apply did, for the CLI to print."""

    applied: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    deployments: list[tuple[str, str]] = field(default_factory=list)  # to (re)start
    batch_deployments: list[tuple[str, str]] = field(default_factory=list)
    endpoints: set[str] = field(default_factory=set)  # whose routing changed


def new_key() -> str:
    return secrets.token_urlsafe(32)


def _not_inprocess(spec: OnlineDeploymentSpec, environment: EnvironmentRecord | None) -> str | None:
    """Why this deployment can't be served inside the daemon, or None if it can: only a no-code ONNX
    model runs there, nothing of the user's (code, packages, an image of its own)."""
    if spec.code_configuration is not None:
        return f"this deployment runs a scoring script ({spec.code_configuration.scoring_script})"
    if environment is not None and (environment.spec.inference_config or environment.spec.build
                                    or venv.requirements(environment.spec)):
        return f"its environment {environment.name}:{environment.version} installs packages or brings an image"
    return None


def _check_batching(spec: OnlineDeploymentSpec, model: ModelRecord | None, byoc: str | None) -> None:
    """The appliance's dynamic batching, asked for in environment_variables (Azure passes them through and
    ignores these). Checked here, not with the spec's other fields: the worker reads the variables itself,
    so their names and limits live in scoring/batching.py, which specs may not import."""
    try:
        config = batching.settings(spec.environment_variables)
    except batching.BadSetting as exc:
        raise SpecError(str(exc), field=f"environment_variables.{exc.name}") from None
    if config is None:
        return
    why = None
    if spec.code_configuration is not None:
        why = f"this deployment runs a scoring script ({spec.code_configuration.scoring_script}), whose run() " \
              "takes one request at a time"
    elif byoc:
        why = f"{byoc}, which serves requests itself"
    elif model is not None and model.framework == "mlflow":
        why = f"model {model.name}:{model.version} is an MLflow model, which mlflow serves one request at a time"
    if why:
        raise SpecError(f"dynamic batching ({batching.SIZE_VAR}) gathers the requests of a no-code ONNX model into "
                        f"one onnxruntime call, but {why}; remove {batching.SIZE_VAR}",
                        field=f"environment_variables.{batching.SIZE_VAR}")
    concurrent = spec.request_settings.max_concurrent_requests_per_instance
    if concurrent < 2:
        raise SpecError(f"dynamic batching needs concurrent requests, and max_concurrent_requests_per_instance is "
                        f"{concurrent}: one request at a time reaches an instance, so none would share a call; "
                        "set it to 2 or more (to the batch size, say)",
                        field="request_settings.max_concurrent_requests_per_instance")


def custom_container(spec: OnlineDeploymentSpec, environment: EnvironmentRecord | None) -> str | None:
    """Why this deployment runs its environment's own image as it is (Azure's custom container, in
    Docker: the image's server, its routes and port; model and code only mounted), or None: an
    `inference_config` with an image or a build context, or an image with a scoring script that is
    not Python (plumber.R: the image knows how to run it, the appliance's worker does not)."""
    env = environment.spec if environment is not None else None
    if env is None or not (env.image or env.build):
        return None
    what = f"environment {environment.name}:{environment.version}" if environment else "its environment"
    if env.inference_config is not None:
        return f"{what} is a custom container (image or build with an inference_config)"
    script = spec.code_configuration.scoring_script if spec.code_configuration else None
    if script and not script.endswith(".py"):
        return f"its scoring script {script} is not Python, so {what}'s image serves it"
    return None


def needs_docker(spec: OnlineDeploymentSpec, environment: EnvironmentRecord | None) -> str | None:
    """Why only the docker runtime can run this deployment: a custom container, or a build context
    (a Dockerfile's packages exist only in its image)."""
    if why := custom_container(spec, environment):
        return why
    if environment is not None and environment.spec.build is not None:
        return f"environment {environment.name}:{environment.version} is built from a Dockerfile"
    return None


def model_signature(path: Path, source: str) -> tuple[str, dict[str, Any] | None]:
    """(framework, signature): MLflow when the path holds an MLmodel file (its signature), else ONNX when
    it holds exactly one .onnx file."""
    if path.is_dir() and (path / mlflow_env.MLMODEL).is_file():
        return "mlflow", mlflow_env.signature(path)
    try:
        onnx_file = find_onnx_file(path)
    except FileNotFoundError:
        return "custom", None
    try:
        model = OnnxModel(onnx_file, provider_choice="cpu")
    except Exception as exc:
        where = Path(source) / onnx_file.relative_to(path) if path != onnx_file else Path(source)
        raise SpecError(f"{where} is not a model onnxruntime can load: {exc}", field="path") from None
    return "onnx", model.signature()


Staged = dict[str, tuple[Artifact, tuple[str, dict[str, Any] | None]]]  # path: stored, (framework, signature)


def _paths(documents: list[Document]) -> Iterator[tuple[str, bool]]:
    """(path, is a model to read: not one declared `framework: custom`) of every file or folder the
    documents register."""
    for doc in documents:
        spec = doc.spec
        if isinstance(spec, ModelSpec) and spec.path:
            yield spec.path, spec.framework != "custom"
        elif isinstance(spec, DataSpec):
            yield spec.path, False
        elif isinstance(spec, OnlineDeploymentSpec | BatchDeploymentSpec):
            if isinstance(spec.model, ModelSpec) and spec.model.path:
                yield spec.model.path, spec.model.framework != "custom"
            elif isinstance(spec.model, str) and not spec.model.startswith("azureml:"):
                yield spec.model, True
            if spec.code_configuration is not None:
                yield spec.code_configuration.code, False


class Control:
    def __init__(self, registry: Registry, supervisor: Supervisor, table: RoutingTable, token_secret: bytes,
                 default_runtime: str | None = None, base_image: str = images.DEFAULT_BASE,
                 max_instances: int = 64) -> None:
        self.registry = registry
        self.max_instances = max_instances  # per deployment: `appliance up --max-instances`
        self.supervisor = supervisor
        self.table = table
        self.token_secret = token_secret
        self.default_runtime = default_runtime  # `appliance up --runtime`; None: chosen per deployment
        self.base_image = base_image
        self._builder: images.Builder | None = None
        self.listeners: list[Callable[[], Awaitable[None]]] = []  # told after every change (hot reload)
        # Held while a deployment's runtime is changed: the reconciler's one writer per deployment.
        self._locks: weakref.WeakValueDictionary[tuple[str, str], asyncio.Lock] = weakref.WeakValueDictionary()
        self.jobs = Jobs(registry)
        self.monitors = Monitors(registry)

    # -- staging: the slow part of a write, done before its transaction -------------------------

    @contextmanager
    def _staged(self, documents: list[Document]) -> Iterator[Staged]:
        """The documents' files stored and their models read, without the registry's lock (hashing,
        copying and loading a large model take seconds, and every registry call would wait for them);
        pinned until the transaction that refers to them is over. What a failed one stored goes at the
        next sweep (`remove_unused_artifacts`)."""
        staged: Staged = {}
        try:
            for path, is_model in _paths(documents):
                if path not in staged:
                    art = self.registry.artifacts.put(Path(path))
                    stored = self.registry.artifacts.path(art.digest) / art.name
                    staged[path] = (art, model_signature(stored, path) if is_model else ("custom", None))
            yield staged
        finally:
            for art, _ in staged.values():
                self.registry.artifacts.unpin(art.digest)

    def _artifact(self, path: str, staged: Staged) -> str:
        art, _ = staged[path]
        self.registry.add_artifact(art)
        return art.digest

    # -- apply --------------------------------------------------------------------------------

    async def apply(self, documents: list[Document], *, create_only: bool = False, all_traffic: bool = False,
                    wait: float = 0.0, progress: Progress | None = None, set_default: bool = False) -> Outcome:
        try:
            outcome = await background.run(self._apply_sync, documents, create_only, all_traffic, set_default)
        except BaseException:
            await self.remove_unused_artifacts()  # what it stored for nothing
            raise
        await self.converge(outcome.deployments, outcome.endpoints, wait, progress)
        return outcome

    def _apply_sync(self, documents: list[Document], create_only: bool, all_traffic: bool,
                    set_default: bool = False) -> Outcome:
        outcome = Outcome(warnings=[w for d in documents for w in d.warnings])
        outcome.warnings += effects.warnings(documents, providers.cuda_devices)  # what has no effect here
        docs = sorted(documents, key=lambda d: ORDER[d.kind])
        traffic_docs: list[Document] = []
        with self._staged(documents) as staged, self.registry.transaction():
            for doc in docs:
                try:
                    if doc.kind == "model":
                        rec = self._register_model(doc.spec, None, staged)
                        outcome.applied.append({"kind": "model", "name": rec.name, "version": rec.version})
                    elif doc.kind == "environment":
                        env = self._register_environment(doc.spec, None)
                        outcome.applied.append({"kind": "environment", "name": env.name, "version": env.version})
                    elif doc.kind in ("data", "batch_endpoint", "batch_deployment"):
                        outcome.applied.append(self._apply_batch(doc, create_only, set_default, staged, outcome))
                    elif doc.kind == "online_endpoint":
                        self._put_endpoint(doc.spec, create_only)
                        outcome.endpoints.add(doc.spec.name)
                        if doc.spec.traffic or doc.spec.mirror_traffic:
                            traffic_docs.append(doc)
                        outcome.applied.append({"kind": "online_endpoint", "name": doc.spec.name})
                    else:
                        dep = self._put_deployment(doc.spec, create_only, staged)
                        outcome.deployments.append(dep.key)
                        if env_spec := self._environment_of(dep):  # said once per apply, not per deployment
                            outcome.warnings += [f"{dep.spec.name}: environment {dep.spec.environment}: {note}"
                                                 for note in self._environment_notes(env_spec)
                                                 if not any(w.endswith(note) for w in outcome.warnings)]
                        outcome.endpoints.add(dep.spec.endpoint_name)
                        outcome.applied.append({"kind": "online_deployment", "name": dep.spec.name,
                                                "endpoint": dep.spec.endpoint_name,
                                                "model": dep.spec.model})
                except SpecError as exc:
                    exc.source = exc.source or doc.source
                    raise
            for doc in traffic_docs:
                try:
                    self._set_traffic(doc.spec.name, doc.spec.traffic or None, doc.spec.mirror_traffic or None)
                except SpecError as exc:
                    exc.source = exc.source or doc.source
                    raise
            for endpoint, name in outcome.deployments:
                self._default_traffic(endpoint, name, all_traffic, outcome)
            for endpoint in sorted({endpoint for endpoint, _ in outcome.deployments}):
                self._warn_if_unrouted(endpoint, outcome)
        return outcome

    # -- models and environments --------------------------------------------------------------

    def _register_model(self, spec: ModelSpec, default_name: str | None, staged: Staged) -> ModelRecord:
        name = spec.name or default_name
        if name is None:
            raise SpecError("a model needs a name", field="name")
        assert spec.path
        digest = self._artifact(spec.path, staged)
        framework, signature = staged[spec.path][1]
        if spec.framework == "custom":
            framework = "custom"
        elif spec.framework == "onnx" and framework != "onnx":
            raise SpecError(f"framework is onnx but {spec.path!r} holds no single .onnx file", field="framework")
        if spec.type == "mlflow_model" and framework != "mlflow":
            raise SpecError(f"model type mlflow_model needs an MLflow model folder (with an MLmodel file), and "
                            f"{spec.path!r} has no MLmodel file", field="type")
        wanted = None if spec.version is None else str(spec.version)  # the loader made it a str already
        existing = self.registry.find_model(name, wanted)
        if existing is not None:
            if existing.digest == digest:
                return existing  # applying the same files again changes nothing
            if spec.version is not None:
                raise Conflict(f"model {name!r} version {spec.version!r} already exists with other content; "
                               "give a new version, or leave version out to get the next one", field="version")
        version = wanted or self.registry.next_model_version(name)
        rec = self.registry.add_model(name=name, version=version, type=spec.type, framework=framework,
                                      digest=digest, signature=signature, tags=spec.tags,
                                      description=spec.description)
        self.registry.add_event("model.created", f"{name}:{version}", digest=digest, framework=framework)
        return rec

    def _register_environment(self, spec: EnvironmentSpec, default_name: str | None) -> EnvironmentRecord:
        name = spec.name or default_name
        if name is None:
            raise SpecError("an environment needs a name", field="name")
        content = msgspec.structs.replace(spec, name=None, version=None, description="", tags={})
        digest = hashlib.sha256(msgspec.json.encode(content, order="sorted")).hexdigest()
        wanted = None if spec.version is None else str(spec.version)  # the loader made it a str already
        existing = self.registry.find_environment(name, wanted)
        if existing is not None:
            if existing.digest == digest:
                return existing
            if spec.version is not None:
                raise Conflict(f"environment {name!r} version {spec.version!r} already exists with another "
                               "definition; give a new version, or leave version out", field="version")
        version = wanted or self.registry.next_environment_version(name)
        rec = self.registry.add_environment(msgspec.structs.replace(spec, name=name, version=version), digest)
        self.registry.add_event("environment.created", f"{name}:{version}", digest=digest)
        return rec

    def register_model(self, document: Document) -> ModelRecord:
        with self._staged([document]) as staged, self.registry.transaction():
            return self._register_model(document.spec, None, staged)

    # -- endpoints -----------------------------------------------------------------------------

    def _put_endpoint(self, spec: OnlineEndpointSpec, create_only: bool) -> EndpointRecord:
        existing = self.registry.find_endpoint(spec.name)
        if existing is None:
            stored = msgspec.structs.replace(spec, traffic={}, mirror_traffic={})
            rec = self.registry.put_endpoint(stored, new_key(), new_key())
            self.registry.add_event("endpoint.created", spec.name, auth_mode=spec.auth_mode)
            return rec
        if create_only:
            raise Conflict(f"online endpoint {spec.name!r} already exists; use `appliance apply` or "
                           "`appliance endpoint update` to change it", field="name")
        stored = msgspec.structs.replace(spec, traffic=existing.spec.traffic,
                                         mirror_traffic=existing.spec.mirror_traffic)
        if stored != existing.spec:
            self.registry.add_event("endpoint.updated", spec.name)
        return self.registry.put_endpoint(stored, existing.primary_key, existing.secondary_key)

    def _set_traffic(self, endpoint: str, traffic: dict[str, int] | None,
                     mirror: dict[str, int] | None) -> EndpointRecord:
        rec = self.registry.get_endpoint(endpoint)
        new_traffic = dict(traffic) if traffic is not None else dict(rec.spec.traffic)
        new_mirror = dict(mirror) if mirror is not None else dict(rec.spec.mirror_traffic)
        names = [d.spec.name for d in self.registry.list_deployments(endpoint)]
        traffic_rules.check(new_traffic, new_mirror, names)
        new_mirror = {k: v for k, v in new_mirror.items() if v > 0}  # green=0 turns mirroring off
        spec = msgspec.structs.replace(rec.spec, traffic=new_traffic, mirror_traffic=new_mirror)
        if spec != rec.spec:
            self.registry.add_event("traffic.changed", endpoint, traffic=new_traffic, mirror_traffic=new_mirror,
                                    before={"traffic": rec.spec.traffic, "mirror_traffic": rec.spec.mirror_traffic})
        return self.registry.put_endpoint(spec, rec.primary_key, rec.secondary_key)

    def _default_traffic(self, endpoint: str, name: str, all_traffic: bool, outcome: Outcome) -> None:
        """`--all-traffic`, and Azure local's rule: an endpoint's only deployment takes all traffic."""
        rec = self.registry.get_endpoint(endpoint)
        deployments = self.registry.list_deployments(endpoint)
        if all_traffic or (len(deployments) == 1 and sum(rec.spec.traffic.values()) == 0):
            self._set_traffic(endpoint, {d.spec.name: 100 if d.spec.name == name else 0 for d in deployments},
                              None)
            outcome.applied.append({"kind": "traffic", "name": endpoint, "traffic": {name: 100}})

    def _warn_if_unrouted(self, endpoint: str, outcome: Outcome) -> None:
        names = [d.spec.name for d in self.registry.list_deployments(endpoint)]
        if len(names) > 1 and sum(self.registry.get_endpoint(endpoint).spec.traffic.values()) == 0:
            outcome.warnings.append(
                f"endpoint {endpoint!r} has {len(names)} deployments and no live traffic, so its scoring URI "
                f"answers 404 (Azure's rule); route some with `appliance endpoint update {endpoint} "
                f"--traffic {names[0]}=100`")

    # -- deployments ---------------------------------------------------------------------------

    def _put_deployment(self, spec: OnlineDeploymentSpec, create_only: bool, staged: Staged) -> DeploymentRecord:
        endpoint = self.registry.get_endpoint(spec.endpoint_name)
        if why := self._too_many(spec.instance_count):
            raise SpecError(why, field="instance_count")
        existing = self.registry.find_deployment(endpoint.name, spec.name)
        if existing is not None and create_only:
            raise Conflict(f"deployment {spec.name!r} already exists on endpoint {endpoint.name!r}; use "
                           "`appliance apply` or `appliance deployment update` to change it", field="name")
        default_name = f"{spec.endpoint_name}-{spec.name}"
        model = self._resolve_model(spec.model, default_name, staged)
        environment = self._resolve_environment(spec.environment, default_name)
        byoc = custom_container(spec, environment)
        code_digest = None
        if spec.code_configuration is not None:
            code_digest = self._artifact(spec.code_configuration.code, staged)
        elif byoc:
            pass  # the image serves on its own: the model mounted for it, or one baked into it
        elif model is None and environment is not None:
            raise SpecError(f"a deployment without a model or a code_configuration needs a custom container: an "
                            f"environment with an image (or a build context) and an inference_config, and "
                            f"{environment.name}:{environment.version} has no inference_config", field="model")
        elif model is None or model.framework not in ("onnx", "mlflow"):
            what = f"model {model.name}:{model.version}" if model else "no model"
            raise SpecError(f"{what} is not an ONNX model, so this deployment needs a code_configuration "
                            "with a scoring_script", field="code_configuration")
        if spec.runtime == "inprocess" and model is not None and model.framework == "mlflow" \
                and spec.code_configuration is None:
            raise SpecError(f"runtime inprocess serves only no-code ONNX models inside the daemon, but model "
                            f"{model.name}:{model.version} is an MLflow model, served by mlflow in its own "
                            "environment; allowed here: process or docker", field="runtime")
        _check_batching(spec, model, byoc)
        if spec.runtime == "inprocess" and (why := _not_inprocess(spec, environment)):
            raise SpecError(f"runtime inprocess serves only no-code ONNX models inside the daemon, but {why}; "
                            "allowed here: process or docker", field="runtime")
        docker_only = needs_docker(spec, environment)
        if docker_only and spec.runtime in ("process", "inprocess"):
            raise SpecError(f"runtime {spec.runtime} can't run this deployment: {docker_only}, which runs in "
                            "Docker; allowed here: docker (or leave runtime out)", field="runtime")
        if spec.model_mount_path is not None and not (docker_only or spec.runtime == "docker"):
            raise SpecError("model_mount_path places the model inside a container: it applies to custom containers "
                            "(an environment with an image and an inference_config) and runtime docker",
                            field="model_mount_path")
        stored = msgspec.structs.replace(
            spec, model=model.ref if model else None, environment=environment.ref if environment else None)
        if existing is None or existing.spec != stored or existing.code_digest != code_digest:
            kind = "deployment.created" if existing is None else "deployment.updated"
            self.registry.add_event(kind, f"{spec.endpoint_name}/{spec.name}", model=stored.model,
                                    instance_count=spec.instance_count)
        if existing is not None and _profiled_differently(existing, stored, code_digest) and \
                self.registry.find_profile(endpoint.name, spec.name) is not None:
            # What `deployment profile` measured is no longer what runs: export must not size from it.
            self.registry.delete_profiles(endpoint.name, spec.name)
            self.registry.add_event("deployment.profile_cleared", f"{spec.endpoint_name}/{spec.name}",
                                    why="the deployment changed since it was profiled")
        return self.registry.put_deployment(stored, code_digest)

    def _too_many(self, instance_count: int) -> str | None:
        if instance_count <= self.max_instances:
            return None
        return (f"invalid value {instance_count}: this daemon runs at most {self.max_instances} instances of a "
                "deployment (appliance up --max-instances)")

    def _resolve_model(self, ref: str | ModelSpec | None, default_name: str, staged: Staged) -> ModelRecord | None:
        if ref is None:
            return None
        if isinstance(ref, ModelSpec):
            return self._register_model(ref, default_name, staged)
        if ref.startswith("azureml:"):
            name, version = split_ref(ref, "model")
            return self.registry.get_model(name, version)
        return self._register_model(ModelSpec(path=ref), default_name, staged)

    def _resolve_environment(self, ref: str | EnvironmentSpec | None,
                             default_name: str) -> EnvironmentRecord | None:
        if ref is None:
            return None
        if isinstance(ref, EnvironmentSpec):
            return self._register_environment(ref, default_name)
        if found := registry_ref(ref, "environment"):  # azureml://registries/azureml/environments/NAME/...
            registry, name, version = found
            if registry != curated.REGISTRY:
                raise SpecError(f"environment {ref!r}: only the {curated.REGISTRY!r} registry's curated environments "
                                f"are known here, not registry {registry!r}", field="environment")
            return self._curated_environment(name, version)
        name, version = split_ref(ref, "environment")
        if name.lower().startswith(curated.PREFIX.lower()) and self.registry.find_environment(name, version) is None:
            return self._curated_environment(name, version)  # azureml:AzureML-NAME:N, Azure's workspace spelling
        return self.registry.get_environment(name, version)

    def _environment_of(self, rec: DeploymentRecord) -> EnvironmentSpec | None:
        """The registered environment a stored deployment refers to, if any."""
        if not isinstance(rec.spec.environment, str):
            return None
        return self.registry.get_environment(*split_ref(rec.spec.environment, "environment")).spec

    @staticmethod
    def _environment_notes(env: EnvironmentSpec) -> list[str]:
        """What of an environment isn't done here as Azure does it: a curated one's provenance, conda's ways."""
        said = [env.description] if env.name and curated.lookup(env.name) and env.name.startswith(curated.PREFIX) \
            else []
        return said + venv.notes(env)

    def _curated_environment(self, name: str, version: str | None) -> EnvironmentRecord:
        """A curated environment, registered (as AzureML-NAME) from this appliance's table of them."""
        entry = curated.lookup(name)
        if entry is None:
            raise SpecError(curated.unknown(name), field="environment")
        if entry.refused:
            raise SpecError(f"curated environment {entry.name} can't be built here: {entry.refused}",
                            field="environment")
        return self._register_environment(EnvironmentSpec(**curated.environment(entry, version)), None)

    # -- batch endpoints, deployments and data assets -----------------------------------------

    def _apply_batch(self, doc: Document, create_only: bool, set_default: bool, staged: Staged,
                     outcome: Outcome) -> dict[str, Any]:
        spec = doc.spec
        if isinstance(spec, DataSpec):
            data = self._register_data(spec, staged)
            return {"kind": "data", "name": data.name, "version": data.version}
        if isinstance(spec, BatchEndpointSpec):
            self._put_batch_endpoint(spec, create_only)
            return {"kind": "batch_endpoint", "name": spec.name}
        dep = self._put_batch_deployment(spec, create_only, staged)
        endpoint = self.registry.get_batch_endpoint(spec.endpoint_name)
        if set_default or endpoint.spec.defaults.deployment_name is None:
            if endpoint.spec.defaults.deployment_name is None and not set_default:
                outcome.warnings.append(f"{spec.name} is batch endpoint {spec.endpoint_name}'s default deployment: "
                                        "it had none (change it with --set defaults.deployment_name=NAME)")
            self._set_batch_default(endpoint, spec.name)
        outcome.batch_deployments.append(dep.key)
        return {"kind": "batch_deployment", "name": spec.name, "endpoint": spec.endpoint_name,
                "model": dep.spec.model}

    def _register_data(self, spec: DataSpec, staged: Staged) -> DataRecord:
        """A data asset is a snapshot, as Azure's upload is: later edits to the folder don't change it."""
        digest = self._artifact(spec.path, staged)
        wanted = None if spec.version is None else str(spec.version)
        existing = self.registry.find_data(spec.name, wanted)
        if existing is not None:
            if existing.digest == digest and existing.type == spec.type:
                return existing
            if wanted is not None:
                raise Conflict(f"data asset {spec.name!r} version {wanted!r} already exists with other content; "
                               "give a new version, or leave version out to get the next one", field="version")
        version = wanted or self.registry.next_data_version(spec.name)
        rec = self.registry.add_data(name=spec.name, version=version, type=spec.type, digest=digest,
                                     description=spec.description, tags=spec.tags)
        self.registry.add_event("data.created", f"{spec.name}:{version}", digest=digest)
        return rec

    def _put_batch_endpoint(self, spec: BatchEndpointSpec, create_only: bool) -> BatchEndpointRecord:
        existing = self.registry.find_batch_endpoint(spec.name)
        if existing is None:
            self.registry.add_event("batch_endpoint.created", spec.name)
            return self.registry.put_batch_endpoint(spec, new_key(), new_key())
        if create_only:
            raise Conflict(f"batch endpoint {spec.name!r} already exists; use `appliance batch-endpoint update` or "
                           "`appliance apply` to change it", field="name")
        default = spec.defaults.deployment_name
        if default is not None and self.registry.find_batch_deployment(spec.name, default) is None:
            known = [d.spec.name for d in self.registry.list_batch_deployments(spec.name)]
            raise SpecError(f"invalid value {default!r}: batch endpoint {spec.name!r} has no such deployment "
                            f"(it has: {', '.join(known) or 'none'})", field="defaults.deployment_name")
        if spec != existing.spec:
            self.registry.add_event("batch_endpoint.updated", spec.name)
        return self.registry.put_batch_endpoint(spec, existing.primary_key, existing.secondary_key)

    def _set_batch_default(self, endpoint: BatchEndpointRecord, deployment: str) -> None:
        spec = msgspec.structs.replace(endpoint.spec, defaults=msgspec.structs.replace(
            endpoint.spec.defaults, deployment_name=deployment))
        self.registry.put_batch_endpoint(spec, endpoint.primary_key, endpoint.secondary_key)

    def _put_batch_deployment(self, spec: BatchDeploymentSpec, create_only: bool,
                              staged: Staged) -> BatchDeploymentRecord:
        endpoint = self.registry.get_batch_endpoint(spec.endpoint_name)
        existing = self.registry.find_batch_deployment(endpoint.name, spec.name)
        if existing is not None and create_only:
            raise Conflict(f"deployment {spec.name!r} already exists on batch endpoint {endpoint.name!r}; use "
                           "`appliance batch-deployment update` to change it", field="name")
        default_name = f"{spec.endpoint_name}-{spec.name}"
        model = self._resolve_model(spec.model, default_name, staged)
        environment = self._resolve_environment(spec.environment, default_name)
        code_digest = None
        if spec.code_configuration is not None:
            code_digest = self._artifact(spec.code_configuration.code, staged)
            if not spec.code_configuration.scoring_script.endswith(".py"):
                raise SpecError(f"scoring script {spec.code_configuration.scoring_script!r}: a batch scoring script "
                                "is a Python file with init() and run(mini_batch)",
                                field="code_configuration.scoring_script")
        elif model is None or model.framework not in ("onnx", "mlflow"):
            what = f"model {model.name}:{model.version}" if model else "no model"
            raise SpecError(f"{what} is not an ONNX or MLflow model, so this batch deployment needs a "
                            "code_configuration with a scoring_script (init() and run(mini_batch))",
                            field="code_configuration")
        if environment is not None and (environment.spec.inference_config or environment.spec.build):
            raise SpecError(f"environment {environment.name}:{environment.version} brings its own server or "
                            "Dockerfile; batch jobs here run in a Python environment (conda_file, or an image with "
                            "a conda_file)", field="environment")
        stored = msgspec.structs.replace(
            spec, model=model.ref if model else None, environment=environment.ref if environment else None)
        if existing is None or existing.spec != stored or existing.code_digest != code_digest:
            kind = "batch_deployment.created" if existing is None else "batch_deployment.updated"
            self.registry.add_event(kind, f"{spec.endpoint_name}/{spec.name}", model=stored.model)
        return self.registry.put_batch_deployment(stored, code_digest)

    # -- endpoint settings ---------------------------------------------------------------------

    async def update_traffic(self, endpoint: str, traffic: dict[str, int] | None,
                             mirror: dict[str, int] | None) -> EndpointRecord:
        """Takes effect on the next request: the route is swapped whole."""
        def write() -> EndpointRecord:
            with self.registry.transaction():
                return self._set_traffic(endpoint, traffic, mirror)

        rec = await asyncio.to_thread(write)
        await self.refresh_route(endpoint)
        return rec

    async def regenerate_key(self, endpoint: str, key_type: str, value: str | None) -> EndpointRecord:
        if key_type not in ("primary", "secondary"):
            raise SpecError(f"key type {key_type!r}: use primary or secondary", field="key_type")
        if value is not None and len(value) < 16:
            raise SpecError("a key given with --value needs at least 16 characters", field="value")

        def write() -> EndpointRecord:
            with self.registry.transaction():
                rec = self.registry.get_endpoint(endpoint)
                if rec.spec.auth_mode != "key":
                    raise SpecError(f"endpoint {endpoint!r} uses auth_mode {rec.spec.auth_mode}: it has no keys to "
                                    "regenerate; its tokens expire by themselves", field="auth_mode")
                key = value or new_key()
                primary, secondary = (key, rec.secondary_key) if key_type == "primary" else (rec.primary_key, key)
                self.registry.add_event("keys.regenerated", endpoint, key_type=key_type)  # never the key
                return self.registry.put_endpoint(rec.spec, primary, secondary)

        rec = await asyncio.to_thread(write)
        await self.refresh_route(endpoint)
        return rec

    def token(self, endpoint: str, ttl_seconds: int) -> dict[str, Any]:
        """Azure's token answer for auth_mode aml_token / aad_token endpoints."""
        rec = self.registry.get_endpoint(endpoint)
        if rec.spec.auth_mode == "key":
            raise SpecError(f"endpoint {endpoint!r} uses auth_mode key: use its keys "
                            "(appliance endpoint get-credentials)", field="auth_mode")
        if not 60 <= ttl_seconds <= 86_400:
            raise SpecError(f"ttl {ttl_seconds}: a token lives from 60 to 86400 seconds", field="ttl")
        token, expiry = tokens.issue(self.token_secret, endpoint, rec.id, ttl_seconds)
        return {"accessToken": token, "tokenType": "Bearer", "expiryTimeUtc": expiry,
                "refreshAfterTimeUtc": expiry - ttl_seconds // 2}

    async def update_deployment(self, endpoint: str, name: str, sets: dict[str, str], wait: float,
                                progress: Progress | None = None) -> Outcome:
        """`deployment update --set k=v`: the stored spec with these fields changed, applied again
        (a new instance count scales; anything else replaces the instances one group at a time)."""
        rec = await asyncio.to_thread(self.registry.get_deployment, endpoint, name)
        body = msgspec.to_builtins(rec.spec)
        for key in sets:
            if key in ("name", "endpoint_name"):
                raise SpecError(f"{key} can't be changed by an update", field=key)
            check_set_key("online_deployment", key)
        for key, value in sets.items():
            set_field(body, key, value)
        body["$schema"] = "managedOnlineDeployment.schema.json"  # what it is, whatever its fields look like
        source = f"<update {endpoint}/{name}>"
        document = await asyncio.to_thread(parse, body, source, Path.cwd())
        return await self.apply([document], wait=wait, progress=progress)

    async def restart_deployment(self, endpoint: str, name: str) -> None:
        """Fresh instances of the same deployment (a stuck model, a leaking script), ready before the old drain."""
        await asyncio.to_thread(self.registry.get_deployment, endpoint, name)
        async with self._lock((endpoint, name)):
            runtime = self.supervisor.get(endpoint, name)
            if runtime is None or not runtime.instances:
                state = runtime.state if runtime else "not started"
                raise Conflict(f"deployment {endpoint}/{name} has no instances to restart ({state}); "
                               "`deployment update` starts it again", field="deployment")
            await runtime.restart()
        await asyncio.to_thread(self.registry.add_event, "deployment.restarted", f"{endpoint}/{name}")
        await self.refresh_route(endpoint)

    async def delete_deployment(self, endpoint: str, name: str) -> None:
        def remove() -> None:
            with self.registry.transaction():
                rec = self.registry.get_endpoint(endpoint)
                self.registry.get_deployment(endpoint, name)
                live = rec.spec.traffic.get(name, 0)
                if live > 0:
                    raise Conflict(f"deployment {name!r} takes {live}% of live traffic on {endpoint!r}; move its "
                                   f"traffic first: appliance endpoint update {endpoint} --traffic ...",
                                   field="traffic")
                traffic = {k: v for k, v in rec.spec.traffic.items() if k != name}
                mirror = {k: v for k, v in rec.spec.mirror_traffic.items() if k != name}
                self.registry.put_endpoint(
                    msgspec.structs.replace(rec.spec, traffic=traffic, mirror_traffic=mirror),
                    rec.primary_key, rec.secondary_key)
                self.registry.delete_deployment(endpoint, name)
                self.registry.add_event("deployment.deleted", f"{endpoint}/{name}")

        await asyncio.to_thread(remove)
        async with self._lock((endpoint, name)):  # a change under way finishes first, then this removes it
            await self.refresh_route(endpoint)
            await self.supervisor.remove(endpoint, name)
        await self.remove_unused_artifacts()
        await self._changed()

    async def delete_endpoint(self, name: str) -> None:
        def remove() -> list[str]:
            with self.registry.transaction():
                self.registry.get_endpoint(name)
                deployments = [d.spec.name for d in self.registry.list_deployments(name)]
                self.registry.delete_endpoint(name)
                self.registry.add_event("endpoint.deleted", name, deployments=deployments)
                return deployments

        deployments = await asyncio.to_thread(remove)
        self.table.remove(name)

        async def stop(deployment: str) -> None:
            async with self._lock((name, deployment)):
                await self.supervisor.remove(name, deployment)

        await asyncio.gather(*(stop(d) for d in deployments))
        await self.remove_unused_artifacts()
        await self._changed()

    # -- runtime ------------------------------------------------------------------------------

    def plan(self, rec: DeploymentRecord) -> LaunchPlan:
        spec = rec.spec
        model_name = model_version = model_dir = None
        if isinstance(spec.model, str):
            name, version = split_ref(spec.model, "model")
            model = self.registry.get_model(name, version)
            model_name, model_version = model.name, model.version
            model_dir = str(self.registry.artifacts.path(model.digest))
            if model.type == "triton_model" and (served := triton_name(Path(model_dir))):
                model_name, model_version = served  # Triton's V2 routes name a model by its folder
        reqs: list[str] = []
        routes, port = ("/score", "/", "/"), 8080
        environment = None
        if isinstance(spec.environment, str):
            name, version = split_ref(spec.environment, "environment")
            environment = self.registry.get_environment(name, version)
            env = environment.spec
            reqs = venv.requirements(env)
            if env.inference_config:  # bring-your-own container: its routes, its port
                cfg = env.inference_config
                routes, port = (cfg.scoring_route.path, cfg.liveness_route.path, cfg.readiness_route.path), \
                    cfg.scoring_route.port
            elif custom_container(spec, environment):
                port = 5001  # an image with a non-Python script and no inference_config: Azure's server port
        extra_vars: dict[str, str] = {}
        # No-code MLflow, as on Azure: MLFLOW_MODEL_FOLDER names the model's folder in AZUREML_MODEL_DIR;
        # the model's own conda.yaml / requirements.txt are the environment unless one is named.
        if model_dir and model.framework == "mlflow" and not rec.code_digest \
                and (found := mlflow_env.mlmodel_folder(Path(model_dir))) is not None:
            extra_vars["MLFLOW_MODEL_FOLDER"] = found.name if found != Path(model_dir) else ""
            if environment is None:
                reqs = mlflow_env.requirements(found)[0]
        code_dir = scoring_script = None
        if rec.code_digest and spec.code_configuration:
            code_dir = str(self.registry.artifacts.path(rec.code_digest) / self.registry.artifact_name(rec.code_digest))
            scoring_script = spec.code_configuration.scoring_script
        # Unless told otherwise, what can be served by the daemon itself is (no second hop); anything
        # running a user's code or packages gets a process of its own.
        # A custom container, or a Dockerfile's packages, exist only in Docker, whatever `up --runtime` says.
        runtime = spec.runtime or ("docker" if needs_docker(spec, environment) else None) or self.default_runtime \
            or ("process" if _not_inprocess(spec, environment) else "inprocess")
        if extra_vars and runtime == "inprocess":
            runtime = "process"  # mlflow serves it, in the model's venv
        return LaunchPlan(
            endpoint=spec.endpoint_name, deployment=spec.name, instance_count=spec.instance_count,
            model_name=model_name, model_version=model_version, model_dir=model_dir, code_dir=code_dir,
            scoring_script=scoring_script, requirements=tuple(reqs),
            environment_variables=tuple(sorted({**spec.environment_variables, **extra_vars}.items())),
            request_settings=spec.request_settings, liveness_probe=spec.liveness_probe,
            readiness_probe=spec.readiness_probe, runtime=runtime, routes=routes,
            port=port, gpu=effects.wants_gpu(spec), model_mount=spec.model_mount_path,
            data_collection=self._data_collection(spec.endpoint_name, spec.name, spec.data_collector))

    def _data_collection(self, endpoint: str, deployment: str, data_collector: dict[str, Any] | None) -> str | None:
        """The worker's APPLIANCE_DATA_COLLECTION: where its collections go, and their rates (None: off)."""
        rates = collect.collections(data_collector)
        if not rates:
            return None
        folder = self.registry.home / "data-collector" / f"endpoint={endpoint}" / f"deployment={deployment}"
        return json.dumps({"dir": str(folder), "collections": rates}, sort_keys=True)

    async def refresh_route(self, endpoint: str) -> None:
        """Rebuild one endpoint's routing from the registry (read in a thread) and the supervisor."""
        def read() -> tuple[EndpointRecord | None, list[str]]:
            return (self.registry.find_endpoint(endpoint),
                    [d.spec.name for d in self.registry.list_deployments(endpoint)])

        rec, names = await asyncio.to_thread(read)
        if rec is None:
            self.table.remove(endpoint)
            return
        deployments = {name: runtime for name in names if (runtime := self.supervisor.get(endpoint, name))}
        self.table.put(EndpointRoute(
            name=endpoint, auth_mode=rec.spec.auth_mode,
            keys=(rec.primary_key.encode(), rec.secondary_key.encode()), token_secret=self.token_secret,
            endpoint_id=rec.id,
            traffic=dict(rec.spec.traffic), mirror_traffic=dict(rec.spec.mirror_traffic),
            deployments=deployments))

    def _lock(self, key: tuple[str, str]) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock

    async def converge(self, deployments: list[tuple[str, str]], endpoints: set[str], wait: float,
                       progress: Progress | None = None) -> None:
        """The reconciler: bring instances in line with the registry, then routing. Every deployment is
        read, planned and built off the event loop, concurrently; then changed under its own lock, and only
        if its record is still the one it was built for, so per deployment the latest spec wins (a slower,
        older apply changes nothing) and a deleted one stays deleted. New deployments start at once (and are
        waited for up to `wait` seconds, as are those that had no instance, a failed one fixed, say); changed
        ones are replaced before this returns."""
        changed = await asyncio.gather(*(self._converge_one(key, progress) for key in deployments))
        for endpoint in endpoints:
            await self.refresh_route(endpoint)
        if wait > 0:  # as `az ml online-deployment create` does: until each is ready, or failed
            await asyncio.gather(*(self._settle(r, wait, progress) for r in changed if r is not None))
        await self.remove_unused_artifacts()  # replaced code, once its old instances have drained
        await self._changed()

    async def _settle(self, runtime: DeploymentRuntime, wait: float, progress: Progress | None) -> None:
        name = runtime.plan.deployment
        if progress and runtime.state in ("Creating", "Updating"):
            progress(f"{name}: waiting for {runtime.plan.instance_count} instance(s) to be ready")
        await runtime.wait_settled(wait)
        if progress:
            progress(f"{name}: {runtime.state}" + (f" ({why})" if (why := runtime.failure()) else ""))

    async def _converge_one(self, key: tuple[str, str], progress: Progress | None) -> DeploymentRuntime | None:
        """One deployment brought to its stored spec; its runtime, to wait for, if instances were started."""
        rec = await asyncio.to_thread(self.registry.find_deployment, *key)
        if rec is None:
            return None
        plan = await asyncio.to_thread(self.plan, rec)
        built: LaunchPlan | str  # the plan with its environment built, or why it can't run
        if why := self._too_many(rec.spec.instance_count):  # stored by an older daemon, or with a higher limit
            built = (f"instance_count: {why}; lower it with `appliance deployment update {key[0]} {key[1]} "
                     "--set instance_count=N`")
        else:
            built = await self._prepare(plan, rec, progress)
        async with self._lock(key):
            latest = await asyncio.to_thread(self.registry.find_deployment, *key)
            if latest is None or (latest.spec, latest.code_digest) != (rec.spec, rec.code_digest):
                log.info("%s/%s changed while it was prepared: the newer change applies", *key)
                return None
            if isinstance(built, str):  # Failed, with why; instances it had keep serving
                self.supervisor.fail(plan, built)
                await self.refresh_route(key[0])
                return None
            fresh = self.supervisor.get(*key) is None
            if fresh:  # it starts now; routing refers to it once it exists
                runtime = await self.supervisor.apply(built)
                await self.refresh_route(key[0])
                return runtime
            # Replaced (new instances ready first) or scaled; or started, a deployment that had no instance.
            return await self.supervisor.apply(built)

    async def remove_unused_artifacts(self) -> None:
        """Stored snapshots that neither the registry nor a running instance refers to any more."""
        store = self.registry.artifacts
        in_use = {digest for plan in self.supervisor.plans() for path in (plan.model_dir, plan.code_dir)
                  if path and (digest := store.digest_at(path))}
        removed = await asyncio.to_thread(self.registry.remove_unused_artifacts, in_use)
        if removed:
            log.info("removed %d stored snapshot(s) nothing refers to any more", len(removed))

    async def _changed(self) -> None:
        for listener in self.listeners:
            await listener()

    async def _prepare(self, plan: LaunchPlan, rec: DeploymentRecord,
                       progress: Progress | None = None) -> LaunchPlan | str:
        """The plan with its environment built (a venv, or an image for docker), in a thread; or why
        that failed."""
        if plan.runtime == "inprocess" or (plan.runtime == "process" and not plan.requirements
                                           and not (venv.FROZEN and plan.scoring_script)):
            return plan  # (the one-file build runs a scoring script in a venv of the machine's Python)
        build_log = self.supervisor.logs_dir / plan.endpoint / plan.deployment / "build.log"
        build_log.parent.mkdir(parents=True, exist_ok=True)

        def build() -> LaunchPlan:
            with build_log.open("a", buffering=1) as out:
                def say(text: str) -> None:  # to the deployment log, and to whoever is applying
                    out.write(logs.line("build", text))
                    if progress:
                        progress(f"{plan.deployment}: {text}")

                mlflow_folder = dict(plan.environment_variables).get("MLFLOW_MODEL_FOLDER")
                if mlflow_folder is not None and plan.model_dir and not rec.spec.environment:
                    for note in mlflow_env.requirements(Path(plan.model_dir) / mlflow_folder)[1]:
                        say(note)
                if plan.runtime == "process":
                    env = self._environment_of(rec)  # its python= pin and what of it isn't done here
                    python = venv.ensure(self.registry.home / "envs", list(plan.requirements), say,
                                         onnx=not plan.scoring_script and mlflow_folder is None,
                                         mlflow=mlflow_folder is not None,  # no-code: the worker runs the model
                                         interpreter=venv.interpreter(env)[0] if env else None,
                                         notes=venv.notes(env) if env else None)
                    return dataclasses.replace(plan, python=str(python))
                return dataclasses.replace(plan, image=self._image(plan, rec, say))

        try:
            return await background.run(build)
        except (BuildError, images.DockerUnavailable) as exc:
            return f"environment build failed: {exc}"

    def _image(self, plan: LaunchPlan, rec: DeploymentRecord, say: Callable[[str], Any]) -> str:
        """The image a docker deployment runs: its custom image as is, or its environment built."""
        engine = self.supervisor.engine
        if plan.gpu and "nvidia" not in (engine.info().get("Runtimes") or {}):
            raise BuildError(f"deployment {plan.deployment!r} asks for a GPU (instance_type "
                                    f"{rec.spec.instance_type}) but this Docker engine has no GPU runtime (nvidia); "
                                    "use runtime: process here, or an engine with the NVIDIA container toolkit")
        env = None
        if isinstance(rec.spec.environment, str):
            env = self.registry.get_environment(*split_ref(rec.spec.environment, "environment"))
        own = None  # the environment's own image: named, or built from its build context
        if env is not None and env.spec.build is not None:
            own = self.image_builder.context(env.name, env.spec.build.path, env.spec.build.dockerfile_path, say).tag
        elif env is not None:
            own = env.spec.image
        if env is not None and custom_container(rec.spec, env):
            assert own
            if not engine.images.list(name=own):
                raise BuildError(f"custom image {own!r} is not on this Docker engine (there is no registry to pull "
                                 "from: docker build or docker load it, or give the environment a build context)")
            return own
        name, version, digest = (env.name, env.version, env.digest) if env else ("default", "1", "none")
        return self.image_builder.environment(name, version, digest, list(plan.requirements), plan.gpu, say,
                                              own).tag

    def build_environment(self, name: str, version: str | None, say: Callable[[str], Any]) -> dict[str, Any]:
        """`appliance environment build`: the environment's image (a cache hit when unchanged)."""
        env = self.registry.get_environment(name, version)
        if env.spec.inference_config and env.spec.build is not None:  # a custom container built as it is
            image = self.image_builder.context(env.name, env.spec.build.path, env.spec.build.dockerfile_path, say)
            return {"image": image.tag, "id": image.id, "cached": image.cached}
        if env.spec.inference_config:
            raise SpecError(f"environment {env.name}:{env.version} is a custom image ({env.spec.image}) with its own "
                            "inference_config: there is nothing to build", field="inference_config")
        image = self.image_builder.environment(env.name, env.version, env.digest, venv.requirements(env.spec),
                                               False, say, env.spec.image)
        return {"image": image.tag, "id": image.id, "cached": image.cached}

    def package(self, endpoint: str, name: str, push: str | None, say: Callable[[str], Any]) -> dict[str, Any]:
        """Azure's Model.package: the deployment's environment image with its model and code baked in."""
        rec = self.registry.get_deployment(endpoint, name)
        plan = dataclasses.replace(self.plan(rec), runtime="docker")
        base = self._image(plan, rec, say)
        artifacts: list[tuple[Path, str]] = []
        model = code = None
        if plan.model_dir and plan.model_name and plan.model_version:
            artifacts.append((Path(plan.model_dir), "model"))
            model = ("model", plan.model_name, plan.model_version)
        if plan.code_dir and plan.scoring_script:
            artifacts.append((Path(plan.code_dir), "code"))
            code = ("code", plan.scoring_script)
        labels = {"org.opencontainers.image.title": f"appliance {endpoint}/{name}",
                  "org.opencontainers.image.version": plan.model_version or "1",
                  "org.opencontainers.image.base.name": base,
                  "appliance.endpoint": endpoint, "appliance.deployment": name,
                  "appliance.model": f"{plan.model_name}:{plan.model_version}" if model else ""}
        text = dockerfile.package(base, labels, model, code, dict(plan.environment_variables))
        model_tag = f"{plan.model_name}-v{plan.model_version}" if model else "code"
        tag = f"appliance/{endpoint}-{name}:{model_tag}".lower()
        image = self.image_builder.package(base, tag, artifacts, text, say)
        reference = tag  # what `docker run` takes; the image id is returned beside it, a repo digest only once pushed
        if push:
            reference = self.image_builder.push(tag, push, say)
        self.registry.add_event("deployment.packaged", f"{endpoint}/{name}", image=reference)
        return {"image": tag, "id": image.id, "reference": reference}

    @property
    def image_builder(self) -> images.Builder:
        if self._builder is None:
            self._builder = images.Builder(self.supervisor.engine, self.registry.home / "cache", self.base_image)
        return self._builder

    async def restore(self) -> None:
        """At start-up: every endpoint and deployment in the registry, back to serving."""
        records = await asyncio.to_thread(self.registry.list_deployments)
        endpoints = {e.name for e in await asyncio.to_thread(self.registry.list_endpoints)}
        await self.converge([r.key for r in records], endpoints, wait=0)


def _profiled_differently(existing: DeploymentRecord, stored: OnlineDeploymentSpec, code_digest: str | None) -> bool:
    """Whether a stored profile stops describing the deployment: any change but its instance count (the
    profile is per instance), tags and description."""
    same = msgspec.structs.replace(existing.spec, instance_count=stored.instance_count, tags=stored.tags,
                                   description=stored.description)
    return same != stored or existing.code_digest != code_digest
