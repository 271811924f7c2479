"""Azure ML CLI v2 YAML documents: detect the kind, validate, resolve paths, report unknown fields."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

import msgspec

from appliance.specs import enums, names, yamlsafe
from appliance.specs.entities import (
    KINDS,
    LEGACY_SETTINGS,
    BatchDeploymentSpec,
    BatchEndpointSpec,
    DataSpec,
    EnvironmentSpec,
    ModelSpec,
    OnlineDeploymentSpec,
    OnlineEndpointSpec,
    Spec,
)
from appliance.specs.errors import SpecError

# `$schema` file names Azure publishes, mapped to our kinds.
SCHEMA_KINDS = {
    "model": "model",
    "environment": "environment",
    "managedonlineendpoint": "online_endpoint",
    "kubernetesonlineendpoint": "online_endpoint",
    "managedonlinedeployment": "online_deployment",
    "kubernetesonlinedeployment": "online_deployment",
    "batchendpoint": "batch_endpoint",
    "batchdeployment": "batch_deployment",
    "modelbatchdeployment": "batch_deployment",
    "pipelinecomponentbatchdeployment": "batch_deployment",
    "data": "data",
}
# Fields only a batch deployment has (an online one has endpoint_name, resources and environment_variables too).
_BATCH_ONLY = {"settings", "compute", *LEGACY_SETTINGS} - {"environment_variables"}
_SCHEMA_NAME = re.compile(r"([A-Za-z]+)\.schema\.json$")
_PATH = re.compile(r" - at `\$(.*)`$")


@dataclass
class Document:
    kind: str
    spec: Any
    source: str
    warnings: list[str] = field(default_factory=list)


_MONITOR = "a model monitor schedule (create_monitor) is not applied: create it with `appliance monitor create -f FILE`"


def detect_kind(body: dict[str, Any], source: str) -> str:
    schema = body.get("$schema")
    if isinstance(schema, str) and (m := _SCHEMA_NAME.search(schema)):
        kind = SCHEMA_KINDS.get(m.group(1).lower())
        if kind:
            return kind
        if m.group(1).lower() == "schedule" and "create_monitor" in body:
            raise SpecError(_MONITOR, field="$schema", source=source)
        raise SpecError(f"unsupported $schema {schema!r}: this appliance takes "
                        f"{', '.join(sorted(set(SCHEMA_KINDS.values())))}", field="$schema", source=source)
    if "endpoint_name" in body:
        batch = {k for k, v in body.items() if v is not None} & _BATCH_ONLY or body.get("type") in ("model", "pipeline")
        return "batch_deployment" if batch else "online_deployment"
    if {"auth_mode", "traffic", "mirror_traffic"} & body.keys():
        return "online_endpoint"
    if {"image", "conda_file", "build", "inference_config"} & body.keys():
        return "environment"
    if "path" in body:
        return "model"
    if "create_monitor" in body:
        raise SpecError(_MONITOR, field="create_monitor", source=source)
    raise SpecError("cannot tell what this document is: give it a $schema, or the fields of a model "
                    "(path), an environment (image/conda_file), an online endpoint (auth_mode) or an "
                    "online deployment (endpoint_name); a batch endpoint or a data asset needs its $schema "
                    "(batchEndpoint.schema.json, data.schema.json)", source=source)


def unknown_fields(cls: type, body: Any, prefix: str = "") -> list[str]:
    """Dotted names of keys in `body` that `cls` (a Spec, or a union with one) does not know."""
    info = msgspec.inspect.type_info(cls)
    structs = [t for t in getattr(info, "types", (info,)) if isinstance(t, msgspec.inspect.StructType)]
    if not structs or not isinstance(body, dict):
        return []
    st = structs[0]
    known = {f.encode_name: f for f in st.fields}
    found: list[str] = []
    for key, value in body.items():
        if key == "$schema":
            continue
        f = known.get(key)
        if f is None:
            found.append(prefix + key)
        else:
            found += unknown_fields(_python_type(f.type), value, f"{prefix}{key}.")
    return found


def field_names(cls: type, parents: list[str]) -> list[str] | None:
    """The fields `cls` knows under the dotted `parents`; None past a free-form mapping (tags, variables)."""
    info: Any = msgspec.inspect.type_info(cls)
    for part in [*parents, None]:
        structs = [t for t in getattr(info, "types", (info,)) if isinstance(t, msgspec.inspect.StructType)]
        if not structs:
            return None
        fields = {f.encode_name: f.type for f in structs[0].fields}
        if part is None:
            return list(fields)
        if part not in fields:
            return []
        info = fields[part]
    return None


def did_you_mean(cls: type, dotted: str) -> str:
    """`; did you mean 'instance_count'?` for a misspelt dotted field, or nothing."""
    import difflib

    *parents, last = dotted.split(".")
    known = field_names(cls, parents) or []
    close = difflib.get_close_matches(last, known, n=1, cutoff=0.6)
    return f"; did you mean {'.'.join([*parents, close[0]])!r}?" if close else ""


def check_set_key(kind: str, dotted: str) -> None:
    """A `--set` key must name a field the kind has: a typo is an error (with a suggestion), not a warning."""
    cls = KINDS[kind]
    parts = dotted.split(".")
    if not all(parts):
        raise SpecError(f"{dotted!r} is not a dotted field name like request_settings.request_timeout_ms",
                        field=dotted)
    for depth in range(len(parts)):
        known = field_names(cls, parts[:depth])
        if known is None:
            return  # inside a free-form mapping: any key goes
        if parts[depth] not in known:
            where = ".".join(parts[: depth + 1])
            raise SpecError(f"unknown field{did_you_mean(cls, where)}; nothing was changed", field=where)


def _python_type(t: msgspec.inspect.Type) -> type | Any:
    if isinstance(t, msgspec.inspect.StructType):
        return t.cls
    if isinstance(t, msgspec.inspect.UnionType):
        for member in t.types:
            if isinstance(member, msgspec.inspect.StructType):
                return member.cls
    return object


def _value_at(body: Any, path: str) -> Any:
    for part in re.findall(r"\.([^.\[]+)|\[(\d+)\]", path):
        key, index = part
        try:
            body = body[key] if key else body[int(index)]
        except (KeyError, IndexError, TypeError):
            return None
    return body


def convert(cls: type[Spec], body: dict[str, Any], source: str, prefix: str = "") -> Any:
    """msgspec conversion whose errors name the field and the value that arrived."""
    body = enums.normalise(cls, body)  # `auth_mode: Key`, `AMLToken`: Azure's enums ignore case
    try:
        return msgspec.convert(body, cls, strict=False)
    except msgspec.ValidationError as exc:
        text = str(exc)
        m = _PATH.search(text)
        path = m.group(1) if m else ""
        what = _PATH.sub("", text)
        fieldname = prefix + path.lstrip(".") if path else None
        value = _value_at(body, path) if path else None
        allowed = _literal_values(cls, path)
        if allowed:
            what = f"{what.split(' - ')[0]}; allowed: {', '.join(map(repr, allowed))}"
        shown = value is not None and not isinstance(value, dict | list)
        raise SpecError(f"invalid value {value!r}: {what}" if shown else what,
                        field=fieldname, source=source) from None


def _literal_values(cls: type, path: str) -> tuple[Any, ...]:
    """The values a Literal field at `path` (`.request_settings.x`) accepts, if it is one."""
    info: Any = msgspec.inspect.type_info(cls)
    for part in path.strip(".").split("."):
        structs = [t for t in getattr(info, "types", (info,)) if isinstance(t, msgspec.inspect.StructType)]
        fields = {f.encode_name: f.type for s in structs for f in s.fields}
        if part not in fields:
            return ()
        info = fields[part]
    for t in getattr(info, "types", (info,)):
        if isinstance(t, msgspec.inspect.LiteralType):
            return tuple(t.values)
    return ()


def parse(body: Any, source: str, base: Path | None = None) -> Document:
    """One YAML document → a validated spec with absolute paths."""
    if not isinstance(body, dict):
        raise SpecError(f"expected a mapping of fields, got {type(body).__name__}", source=source)
    kind = detect_kind(body, source)
    if kind == "batch_deployment":
        body = _nest_legacy_settings(body)
    cls = KINDS[kind]
    warnings = [f"{source}: unknown field {name!r} ignored{did_you_mean(cls, name)}"
                for name in unknown_fields(cls, body)]
    spec = convert(cls, {k: v for k, v in body.items() if k != "$schema"}, source)
    base = base or Path(source).resolve().parent
    try:
        spec = _check(spec, base)
    except SpecError as exc:
        exc.source = exc.source or source
        raise
    return Document(kind=kind, spec=spec, source=source, warnings=warnings)


def _nest_legacy_settings(body: dict[str, Any]) -> dict[str, Any]:
    """Azure's older batch deployment YAML puts `mini_batch_size` and the rest at the root (and
    `instance_count` beside them): moved under `settings` (and `resources`), where the schema has them now."""
    body = dict(body)
    settings = dict(body.get("settings") or {})
    for key in LEGACY_SETTINGS:
        if key in body:
            settings.setdefault(key, body.pop(key))
    if settings:
        body["settings"] = settings
    if "instance_count" in body:
        body["resources"] = {"instance_count": body.pop("instance_count"), **(body.get("resources") or {})}
    return body


def read_yaml(path: str | Path) -> list[dict[str, Any]]:
    """The documents of a YAML file (`---` separates several), unvalidated."""
    path = Path(path)
    bodies = [b for b in yamlsafe.read_all(path) if b is not None]
    if not bodies:
        raise SpecError("the file holds no document", source=str(path))
    return bodies


def load_file(path: str | Path) -> list[Document]:
    """Every document of a YAML file, validated, paths resolved against the file's folder."""
    path = Path(path)
    return [parse(b, str(path), path.resolve().parent) for b in read_yaml(path)]


@overload
def _abs(base: Path, value: str) -> str: ...
@overload
def _abs(base: Path, value: None) -> None: ...
@overload
def _abs(base: Path, value: str | None) -> str | None: ...
def _abs(base: Path, value: str | None) -> str | None:
    if value is None or value.startswith("azureml:"):
        return value
    return str((base / value).resolve())


def _check(spec: Any, base: Path) -> Any:
    """Name rules and path resolution, per kind."""
    if isinstance(spec, ModelSpec):
        return _check_model(spec, base, "")
    if isinstance(spec, EnvironmentSpec):
        return _check_environment(spec, base, "")
    if isinstance(spec, OnlineEndpointSpec):
        names.check_endpoint_name(spec.name)
        for fname in ("traffic", "mirror_traffic"):
            for dep, percent in getattr(spec, fname).items():
                names.check_endpoint_name(dep, field=f"{fname}.{dep}")
                if not 0 <= percent <= 100:
                    raise SpecError(f"invalid value {percent}: a percentage from 0 to 100", field=f"{fname}.{dep}")
        return spec
    if isinstance(spec, BatchEndpointSpec):
        names.check_endpoint_name(spec.name)
        if spec.defaults.deployment_name is not None:
            names.check_endpoint_name(spec.defaults.deployment_name, field="defaults.deployment_name")
        return spec
    if isinstance(spec, DataSpec):
        return _check_data(spec, base)
    if isinstance(spec, BatchDeploymentSpec):
        return _check_batch_deployment(spec, base)
    assert isinstance(spec, OnlineDeploymentSpec)
    _check_assets(spec, base)
    _check_data_collector(spec.data_collector)
    if spec.model_mount_path is not None and not spec.model_mount_path.startswith("/"):
        raise SpecError(f"invalid value {spec.model_mount_path!r}: model_mount_path is an absolute path inside "
                        "the container, like /models", field="model_mount_path")
    return spec


_COLLECTOR_FIELDS = ("collections", "sampling_rate", "rolling_rate", "request_logging")
_COLLECTION_FIELDS = ("enabled", "sampling_rate", "data", "client_id")
_ROLLING = ("minute", "hour", "day")


def _check_data_collector(collector: dict[str, Any] | None) -> None:
    """Azure's `data_collector` shape, checked here (the spec keeps it as a mapping: the collections
    are named by the user, `model_inputs`, `model_outputs` or any a score.py collects)."""
    if collector is None:
        return
    where = "data_collector"
    _known(collector, _COLLECTOR_FIELDS, where)
    _check_rate(collector.get("sampling_rate"), f"{where}.sampling_rate")
    rolling = collector.get("rolling_rate")
    if rolling is not None and str(rolling).lower() not in _ROLLING:
        raise SpecError(f"invalid value {rolling!r}: one of {', '.join(_ROLLING)}", field=f"{where}.rolling_rate")
    collections = collector.get("collections", {})
    if not isinstance(collections, dict):
        raise SpecError(f"invalid value {collections!r}: a mapping of collection names (model_inputs, "
                        "model_outputs, ...) to their settings", field=f"{where}.collections")
    for name, settings in collections.items():
        field = f"{where}.collections.{name}"
        if not isinstance(settings, dict):
            raise SpecError(f"invalid value {settings!r}: a mapping like {{enabled: true, sampling_rate: 0.5}}",
                            field=field)
        _known(settings, _COLLECTION_FIELDS, field)
        enabled = settings.get("enabled", False)
        if not isinstance(enabled, bool) and str(enabled).strip().lower() not in ("true", "false"):
            raise SpecError(f"invalid value {enabled!r}: true or false", field=f"{field}.enabled")
        _check_rate(settings.get("sampling_rate"), f"{field}.sampling_rate")


def _known(body: dict[str, Any], allowed: tuple[str, ...], where: str) -> None:
    for key in body:
        if key not in allowed:
            raise SpecError(f"unknown field; allowed in {where}: {', '.join(allowed)}", field=f"{where}.{key}")


def _check_rate(rate: Any, field: str) -> None:
    if rate is not None and (isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1):
        raise SpecError(f"invalid value {rate!r}: a sampling rate from 0 to 1 (the share of requests collected)",
                        field=field)


def _check_batch_deployment(spec: BatchDeploymentSpec, base: Path) -> BatchDeploymentSpec:
    if spec.type == "pipeline":
        raise SpecError("a pipeline component batch deployment (type: pipeline) needs Azure ML's pipeline jobs and "
                        "components, which this appliance does not run; allowed here: type: model (a model with a "
                        "scoring script, or a no-code ONNX or MLflow model)", field="type")
    _check_assets(spec, base)
    settings = spec.settings
    name = settings.output_file_name
    if not name or "/" in name or name in (".", ".."):
        raise SpecError(f"invalid value {name!r}: output_file_name is a file name, like predictions.csv",
                        field="settings.output_file_name")
    return spec


def _check_data(spec: DataSpec, base: Path) -> DataSpec:
    names.check_asset_name(spec.name, "name")
    if spec.version is not None:
        spec.version = names.check_asset_version(str(spec.version), "version")
    if "://" in spec.path or spec.path.startswith("azureml:"):
        raise SpecError(f"path {spec.path!r}: a data asset here is a local file or folder (there is no cloud "
                        "storage to read from)", field="path")
    spec.path = _abs(base, spec.path)
    path = Path(spec.path)
    if spec.type == "uri_folder" and not path.is_dir():
        raise SpecError(f"path {spec.path!r} is not a folder, and type is uri_folder"
                        + ("; for one file use type: uri_file" if path.is_file() else ""), field="path")
    if spec.type == "uri_file" and not path.is_file():
        raise SpecError(f"path {spec.path!r} is not a file, and type is uri_file"
                        + ("; for a folder use type: uri_folder" if path.is_dir() else ""), field="path")
    return spec


def _check_assets(spec: OnlineDeploymentSpec | BatchDeploymentSpec, base: Path) -> None:
    """A deployment's names, model, environment and code, as online and batch deployments share them."""
    names.check_endpoint_name(spec.name)
    names.check_endpoint_name(spec.endpoint_name, field="endpoint_name")
    if isinstance(spec.model, ModelSpec):
        spec.model = _check_model(spec.model, base, "model.")
    elif isinstance(spec.model, str):
        spec.model = _check_ref(spec.model, base, "model")
    if isinstance(spec.environment, EnvironmentSpec):
        spec.environment = _check_environment(spec.environment, base, "environment.")
    elif isinstance(spec.environment, str) and registry_ref(spec.environment, "environment") is None:
        if not spec.environment.startswith("azureml:"):
            raise SpecError(f"environment reference {spec.environment!r} must look like azureml:<name>:<version>, "
                            "azureml:<name>@latest or azureml://registries/<registry>/environments/<name>/"
                            "versions/<version> (or /labels/latest)", field="environment")
        split_ref(spec.environment, "environment")
    if spec.code_configuration:
        code = Path(_abs(base, spec.code_configuration.code) or "")
        value = spec.code_configuration.scoring_script
        script = code / value
        # Resolved (`..`, symlinks) it must stay inside code: that folder is what gets stored and mounted.
        if not script.resolve().is_relative_to(code) or Path(value).is_absolute():
            raise SpecError(f"scoring script {value!r} resolves to {str(script.resolve())!r}, outside the code "
                            f"folder {str(code)!r}: give a path inside the code folder, relative to it",
                            field="code_configuration.scoring_script")
        if not script.is_file():
            raise SpecError(f"scoring script {str(script)!r} does not exist",
                            field="code_configuration.scoring_script")
        spec.code_configuration.code = str(code)
    if spec.model is None and spec.code_configuration is None and spec.environment is None:
        # (an image that serves on its own, a custom container, needs neither: checked once it is resolved)
        raise SpecError("a deployment needs a model, a code_configuration, or both", field="model")


def _check_model(spec: ModelSpec, base: Path, prefix: str) -> ModelSpec:
    if spec.name is not None:
        names.check_asset_name(spec.name, prefix + "name")
    if spec.version is not None:
        spec.version = names.check_asset_version(str(spec.version), prefix + "version")
    if spec.path is None:
        raise SpecError("a model needs a path (a file or a folder)", field=prefix + "path")
    spec.path = _abs(base, spec.path)
    if not Path(spec.path).exists():
        raise SpecError(f"path {spec.path!r} does not exist", field=prefix + "path")
    return spec


def _check_environment(spec: EnvironmentSpec, base: Path, prefix: str) -> EnvironmentSpec:
    if spec.name is not None:
        names.check_asset_name(spec.name, prefix + "name")
    if spec.version is not None:
        spec.version = names.check_asset_version(str(spec.version), prefix + "version")
    if isinstance(spec.conda_file, str):
        path = Path(_abs(base, spec.conda_file) or "")
        if not path.is_file():
            raise SpecError(f"conda file {str(path)!r} does not exist", field=prefix + "conda_file")
        try:
            spec.conda_file = yamlsafe.load(yamlsafe.read_text(path), str(path)) or {}
        except SpecError as exc:
            raise SpecError(f"conda file {str(path)!r}: {exc.message}", field=prefix + "conda_file") from None
    if spec.build is not None:
        spec.build.path = _abs(base, spec.build.path) or spec.build.path
    if spec.image is None and spec.build is None:
        raise SpecError("an environment needs an image or a build context", field=prefix + "image")
    return spec


def _check_ref(value: str, base: Path, field_name: str) -> str:
    """`azureml:name:version`, `azureml:name@latest`, or a bare path (relative to the YAML)."""
    if value.startswith("azureml:"):
        split_ref(value, field_name)
        return value
    path = _abs(base, value)
    if not Path(path or "").exists():
        raise SpecError(f"path {path!r} does not exist", field=field_name)
    return path or value


_REGISTRY_REF = re.compile(r"azureml://registries/([^/]+)/environments/([^/]+)/(?:versions/([^/]+)|labels/latest)/?")


def registry_ref(value: str, field_name: str) -> tuple[str, str, str | None] | None:
    """`azureml://registries/R/environments/NAME/versions/N` → (R, NAME, N); `.../labels/latest` → (R, NAME,
    None); None if `value` is not a registry reference. A malformed one is refused, naming the shapes allowed."""
    if not value.startswith("azureml://"):
        return None
    found = _REGISTRY_REF.fullmatch(value)
    if found is None:
        raise SpecError(f"registry reference {value!r} must look like azureml://registries/<registry>/environments/"
                        "<name>/versions/<version> or .../labels/latest", field=field_name)
    registry, name, version = found.groups()
    names.check_asset_name(registry, field_name)
    names.check_asset_name(name, field_name)
    if version is not None:
        names.check_asset_version(version, field_name)
    return registry, name, version


def split_ref(value: str, field_name: str) -> tuple[str, str | None]:
    """`azureml:name:version` → (name, version); `azureml:name@latest` → (name, None)."""
    body = value.removeprefix("azureml:")
    if body.endswith("@latest"):
        name, version = body.removesuffix("@latest"), None
    elif body.count(":") == 1:
        name, version = body.split(":")
    else:
        raise SpecError(f"reference {value!r} must look like azureml:<name>:<version> or "
                        "azureml:<name>@latest", field=field_name)
    names.check_asset_name(name, field_name)
    if version is not None:
        names.check_asset_version(version, field_name)
    return name, version




def set_field(body: dict[str, Any], dotted: str, value: str) -> None:
    """`--set request_settings.max_queue_wait_ms=100`: a YAML-typed value at a dotted path."""
    try:  # parsed first: a refused value leaves `body` as it was
        parsed = yamlsafe.typed(value)
    except SpecError as exc:
        shown = value if len(value) <= 200 else value[:200] + "..."
        raise SpecError(f"invalid value {shown!r}: {exc.message}", field=dotted) from None
    *parents, last = dotted.split(".")
    for part in parents:
        if body.get(part) is None:  # unset (a stored spec writes it as null): a mapping to fill
            body[part] = {}
        child = body[part]
        if not isinstance(child, dict):
            raise SpecError(f"{part!r} is not a mapping, so {dotted!r} can't be set", field=dotted)
        body = child
    body[last] = parsed
