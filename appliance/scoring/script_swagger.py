"""`GET /swagger.json?version=2|3|3.1` for a scoring script, built as azureml-inference-server-http 1.5.1
builds it: the user's own swagger file in the app root wins; otherwise its templates (copied into
templates/) with ServiceInput/ServiceOutput from the inference-schema decorators on `run`."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TEMPLATES = Path(__file__).parent / "templates"
ALL_VERSIONS = ["2.0", "3.0", "3.1"]  # inference_schema._constants.ALL_SUPPORTED_VERSIONS
UNDECORATED = {"type": "object", "example": {}}


@dataclass(frozen=True)
class _Version:
    version: str
    aliases: frozenset[str]  # what ?version= may say
    template: str
    user_files: tuple[str, ...]  # the user's own documents, first found wins

    def finish(self, spec: dict[str, Any], inputs: Any, outputs: Any) -> None:
        if self.version == "2":
            spec["definitions"]["ServiceInput"] = inputs
            spec["definitions"]["ServiceOutput"] = outputs
            return
        spec["components"]["schemas"]["ServiceInput"] = inputs
        spec["components"]["schemas"]["ServiceOutput"] = outputs
        if self.version == "3.1":
            spec["openapi"] = "3.1.0"


VERSIONS = [
    _Version("2", frozenset({"2", "2.0"}), "swagger2_template.json", ("swagger.json", "swagger2.json")),
    _Version("3", frozenset({"3", "3.0"}), "swagger3_template.json", ("swagger3.json",)),
    _Version("3.1", frozenset({"3.1"}), "swagger3_template.json", ("swagger3.1.json",)),
]
VALID = frozenset().union(*(v.aliases for v in VERSIONS))


def schema_util() -> Any:
    """inference_schema's registry of decorated functions, if the script loaded inference_schema at all
    (a script that did not can't have decorated `run`)."""
    return sys.modules.get("inference_schema.schema_util")


class ScriptSwagger:
    def __init__(self, app_root: Path, run: Callable[..., Any]) -> None:
        self.documents: dict[str, dict[str, Any]] = {}  # version alias → document
        self.supported: list[str] = []
        for version in VERSIONS:
            document = _read_user(app_root, version) or _generate(version, run)
            if document is not None:
                self.documents.update(dict.fromkeys(version.aliases, document))
                self.supported.append(version.version)
        self.supported.sort()

    def get(self, version: str) -> tuple[int, Any]:
        """(status, JSON body) as azmlinfsrv answers: the document, or 404 with a message."""
        supported = ", ".join(self.supported)
        if version not in VALID:
            return 404, {"message": f"Swagger version [{version}] is not valid. Supported versions: [{supported}]."}
        document = self.documents.get(version)
        if not document:
            return 404, {"message": f"Swagger version [{version}] is not supported for the scoring script. "
                                    f"Supported swagger versions: [{supported}]."}
        return 200, document


def _read_user(app_root: Path, version: _Version) -> dict[str, Any] | None:
    for name in version.user_files:
        try:
            with (app_root / name).open(encoding="utf-8") as file:
                document = json.load(file)
        except FileNotFoundError:
            continue
        if document:
            return document
    return None


def _generate(version: _Version, run: Callable[..., Any]) -> dict[str, Any] | None:
    util = schema_util()
    supported = util.get_supported_versions(run) if util else ALL_VERSIONS
    if all(alias not in supported for alias in version.aliases):
        return None  # e.g. swagger 2 for a schema with mixed-type arrays
    if util and util.is_schema_decorated(run):
        inputs, outputs = util.get_input_schema(run), util.get_output_schema(run)
    else:
        inputs = outputs = UNDECORATED
    prefix = os.environ.get("SERVICE_PATH_PREFIX", "")
    text = ((TEMPLATES / version.template).read_text(encoding="utf-8")
            .replace("$SERVICE_NAME$", os.environ.get("SERVICE_NAME", "ML service"))
            .replace("$SERVICE_VERSION$", os.environ.get("SERVICE_VERSION", "1.0"))
            .replace("$PATH_PREFIX$", f"/{prefix.strip('/')}" if prefix else ""))
    spec = json.loads(text)
    version.finish(spec, inputs, outputs)
    return spec
