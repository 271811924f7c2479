"""No-code MLflow models, served with `mlflow.pyfunc` as Azure's MLflow scoring does.

Runs only in the model's own venv (appliance.builder.mlflow_env), which has mlflow: mlflow, pandas
and numpy are imported here lazily, when a model is loaded, never by the rest of the worker.

Layout, as on Azure: AZUREML_MODEL_DIR is the registered model's folder, holding the model's own
folder by its name (`$AZUREML_MODEL_DIR/model/MLmodel`); MLFLOW_MODEL_FOLDER names that folder.

Requests: `{"input_data": ..., "params": {...}}` where input_data is split-orient
`{"columns": [...], "index": [...], "data": [[...]]}` (a DataFrame), a list (rows; a tensor when the
signature is tensor-based or absent), or a dict of named tensors (columns, when the signature has
columns). Responses: the predictions as JSON: a list for an array or a Series, a list of records for
a DataFrame, a dict of lists for named outputs.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from appliance.scoring.onnx_model import BadInput

MLMODEL = "MLmodel"
_NUMPY = {"double": "float64", "float": "float32", "long": "int64", "integer": "int32", "boolean": "bool"}


def find_model_folder(model_dir: Path, folder: str | None = None) -> Path | None:
    """The folder with the MLmodel file: MLFLOW_MODEL_FOLDER under AZUREML_MODEL_DIR, or the one
    such folder there, or AZUREML_MODEL_DIR itself."""
    if folder and (model_dir / folder / MLMODEL).is_file():
        return model_dir / folder
    if (model_dir / MLMODEL).is_file():
        return model_dir
    found = [p.parent for p in model_dir.glob(f"*/{MLMODEL}")]
    return found[0] if len(found) == 1 else None


class MlflowModel:
    provider = "mlflow"

    def __init__(self, path: Path) -> None:
        import mlflow.pyfunc  # only in the model's venv

        self.path = path
        self.pyfunc = mlflow.pyfunc.load_model(str(path))
        meta = self.pyfunc.metadata
        self.flavor = str(meta.flavors.get("python_function", {}).get("loader_module", "mlflow.pyfunc"))
        self.input_schema = meta.get_input_schema()
        self.columns: list[tuple[str, str]] = []  # (name, type) of a column-based signature
        if self.input_schema is not None and not self.input_schema.is_tensor_spec():
            self.columns = [(c.name, str(getattr(c.type, "name", c.type))) for c in self.input_schema.inputs
                            if c.name is not None]
        self.tensor_based = self.input_schema is not None and self.input_schema.is_tensor_spec()

    @classmethod
    def from_environment(cls) -> MlflowModel:
        model_dir = Path(os.environ["AZUREML_MODEL_DIR"])
        folder = find_model_folder(model_dir, os.environ.get("MLFLOW_MODEL_FOLDER"))
        if folder is None:
            raise FileNotFoundError(f"no {MLMODEL} file in {model_dir} (MLFLOW_MODEL_FOLDER="
                                    f"{os.environ.get('MLFLOW_MODEL_FOLDER')!r})")
        return cls(folder)

    def signature(self) -> dict[str, Any] | None:
        sig = self.pyfunc.metadata.signature
        return sig.to_dict() if sig is not None else None

    # -- requests ------------------------------------------------------------------------------

    def parse(self, payload: Any) -> tuple[Any, dict[str, Any] | None]:
        import numpy as np
        import pandas as pd

        if not isinstance(payload, dict) or "input_data" not in payload:
            raise BadInput('the request must be a JSON object with "input_data" (split-orient {"columns", '
                           '"index", "data"}, a list, or a dict of named tensors) and optionally "params"')
        data, params = payload["input_data"], payload.get("params")
        if params is not None and not isinstance(params, dict):
            raise BadInput('"params" must be a JSON object')
        try:
            if isinstance(data, dict) and "columns" in data and "data" in data:
                frame = pd.DataFrame(data["data"], columns=data["columns"], index=data.get("index"))
                return self._typed(frame), params
            if isinstance(data, list):
                if self.columns and data and all(isinstance(r, dict) for r in data):
                    return self._typed(pd.DataFrame(data)), params
                if self.columns and data and all(isinstance(r, list) and len(r) == len(self.columns) for r in data):
                    return self._typed(pd.DataFrame(data, columns=[n for n, _ in self.columns])), params
                return np.asarray(data), params
            if isinstance(data, dict):
                if self.columns:
                    return self._typed(pd.DataFrame({k: v if isinstance(v, list) else [v] for k, v in data.items()})), \
                        params
                return {k: np.asarray(v) for k, v in data.items()}, params
        except (ValueError, TypeError) as exc:
            raise BadInput(f"input_data can't be read as the model's input: {exc}") from None
        raise BadInput(f"input_data is a {type(data).__name__}: send split-orient {{\"columns\", \"index\", "
                       "\"data\"}, a list, or a dict of named tensors")

    def _typed(self, frame: Any) -> Any:
        """Columns cast to the signature's types where JSON lost them (1 for a double column)."""
        for name, kind in self.columns:
            if name in frame.columns and kind in _NUMPY:
                with contextlib.suppress(ValueError, TypeError):  # else as sent: mlflow's check names it
                    frame[name] = frame[name].astype(_NUMPY[kind])
        return frame

    def predict(self, payload: Any, observe: Callable[[Any, Any], None] | None = None) -> Any:
        """The predictions as JSON values; `observe(input, predictions)` sees them first (the data
        collector)."""
        from mlflow.exceptions import MlflowException

        data, params = self.parse(payload)
        try:
            result = self.pyfunc.predict(data, params=params) if params else self.pyfunc.predict(data)
        except MlflowException as exc:
            if exc.error_code in ("INVALID_PARAMETER_VALUE", "BAD_REQUEST"):
                raise BadInput(exc.message) from None
            raise
        if observe is not None:
            observe(data, result)
        return jsonable(result)

    # -- swagger ---------------------------------------------------------------------------------

    def swagger(self, title: str) -> dict[str, Any]:
        """Swagger 2.0 from the signature: split-orient input_data for columns, tensors otherwise."""
        example: dict[str, Any] | list[list[float]]
        if self.columns:
            example = {"columns": [n for n, _ in self.columns], "index": [0],
                       "data": [[_example(k) for _, k in self.columns]]}
            data_schema: dict[str, Any] = {
                "type": "object", "required": ["columns", "data"],
                "properties": {"columns": {"type": "array", "items": {"type": "string"}},
                               "index": {"type": "array", "items": {"type": "integer"}},
                               "data": {"type": "array", "items": {"type": "array", "items": {}}}},
                "description": ", ".join(f"{n}: {k}" for n, k in self.columns)}
        else:
            example = [[0.0]]
            data_schema = {"type": "array", "items": {}}
        inputs = {"type": "object", "required": ["input_data"],
                  "properties": {"input_data": data_schema, "params": {"type": "object"}},
                  "example": {"input_data": example}}
        return {
            "swagger": "2.0",
            "info": {"title": title, "description": f"MLflow model ({self.flavor}), served by mlflow.pyfunc",
                     "version": "1.0"},
            "schemes": ["https"], "consumes": ["application/json"], "produces": ["application/json"],
            "paths": {"/score": {"post": {
                "operationId": "RunMLService", "description": "Run the MLflow model",
                "parameters": [{"name": "serviceInputPayload", "in": "body", "required": True,
                                "schema": {"$ref": "#/definitions/ServiceInput"}}],
                "responses": {"200": {"description": "Success", "schema": {"$ref": "#/definitions/ServiceOutput"}},
                              "default": {"description": "Failure", "schema": {"$ref": "#/definitions/ErrorResponse"}}},
            }}},
            "definitions": {
                "ServiceInput": inputs,
                "ServiceOutput": {"type": "array", "items": {}},
                "ErrorResponse": {"type": "object", "properties": {"message": {"type": "string"}}},
            },
        }


def _example(kind: str) -> Any:
    return {"double": 0.0, "float": 0.0, "long": 0, "integer": 0, "boolean": False, "string": ""}.get(kind, 0.0)


def jsonable(value: Any) -> Any:
    """Predictions as JSON values: arrays and Series as lists, a DataFrame as records."""
    import numpy as np

    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    kind = type(value).__name__
    if kind == "DataFrame":
        return [{str(k): jsonable(v) for k, v in row.items()} for row in value.to_dict(orient="records")]
    if kind == "Series":
        return jsonable(value.to_numpy())
    return value
