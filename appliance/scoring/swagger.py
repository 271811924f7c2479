"""Swagger 2.0 for a no-code ONNX model, in the shape azmlinfsrv serves (ServiceInput/ServiceOutput)."""

from __future__ import annotations

from typing import Any

from appliance.scoring.onnx_model import OnnxModel, TensorSig

_JSON_TYPES = {"FP32": "number", "FP64": "number", "FP16": "number", "BOOL": "boolean", "BYTES": "string"}


def _example(sig: TensorSig) -> Any:
    leaf: Any = {"number": 0.0, "boolean": False, "string": ""}.get(_JSON_TYPES.get(sig.datatype, ""), 0)
    for dim in reversed(sig.shape):
        leaf = [leaf] * (dim if isinstance(dim, int) and dim > 0 else 1)
    return leaf


def _schema(sig: TensorSig) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": _JSON_TYPES.get(sig.datatype, "integer")}
    if sig.datatype in {"FP32", "FP64", "FP16"}:
        schema["format"] = {"FP32": "float", "FP64": "double", "FP16": "float"}[sig.datatype]
    for _ in sig.shape:
        schema = {"type": "array", "items": schema}
    schema["description"] = sig.describe()
    return schema


def document(model: OnnxModel, title: str) -> dict[str, Any]:
    inputs: dict[str, Any] = {
        "inputs": {"type": "object", "properties": {i.name: _schema(i) for i in model.inputs}},
    }
    example: dict[str, Any] = {"inputs": {i.name: _example(i) for i in model.inputs}}
    if len(model.inputs) == 1:
        inputs["data"] = _schema(model.inputs[0])
        example = {"data": _example(model.inputs[0])}
    if len(model.outputs) == 1:
        output = _schema(model.outputs[0])
    else:
        output = {"type": "object", "properties": {o.name: _schema(o) for o in model.outputs}}
    return {
        "swagger": "2.0",
        "info": {"title": title, "description": "API specification for the Azure Machine Learning service ML",
                 "version": "1.0"},
        "schemes": ["https"],
        "consumes": ["application/json"],
        "produces": ["application/json"],
        "securityDefinitions": {"Bearer": {"type": "apiKey", "name": "Authorization", "in": "header",
                                           "description": "For example: Bearer abc123"}},
        "paths": {
            "/": {"get": {"operationId": "ServiceHealthCheck", "description": "Simple health check endpoint "
                          "to ensure the service is up at any given point.",
                          "responses": {"200": {"description": "If service is up and running, this response "
                                                "will be returned with the content 'Healthy'",
                                                "schema": {"type": "string"}, "examples": {
                                                    "application/json": "Healthy"}}}}},
            "/score": {"post": {
                "operationId": "RunMLService",
                "description": "Run web service's model and get the prediction output",
                "security": [{"Bearer": []}],
                "parameters": [{"name": "serviceInputPayload", "in": "body", "description": "The input "
                                "payload for executing the real-time machine learning service.",
                                "schema": {"$ref": "#/definitions/ServiceInput"}}],
                "responses": {"200": {"description": "The service processed the input correctly and "
                                      "provided a result prediction, if applicable.",
                                      "schema": {"$ref": "#/definitions/ServiceOutput"}},
                              "default": {"description": "The service failed to execute due to an error.",
                                          "schema": {"$ref": "#/definitions/ErrorResponse"}}}}},
        },
        "definitions": {
            "ServiceInput": {"type": "object", "properties": inputs, "example": example},
            "ServiceOutput": output,
            "ErrorResponse": {"type": "object", "properties": {"message": {"type": "string"}}},
        },
    }
