"""The worker's HTTP surface, the app of its server (server.py; no framework on the hot path).

Routes are azmlinfsrv's (`GET /`, `/score`, `/swagger.json`) plus the Open Inference Protocol
(`/v2/...`) and `/appliance/info`, which the supervisor reads to report the provider in use.
A scoring script's deployment answers every path but those two as azmlinfsrv does (script.py).
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Awaitable
from typing import Any

import msgspec

from appliance.scoring import auth, swagger
from appliance.scoring.batching import Batcher
from appliance.scoring.collect import NoCodeCollection
from appliance.scoring.mlflow_model import MlflowModel
from appliance.scoring.onnx_model import BadInput, OnnxModel
from appliance.scoring.script import ScriptScorer
from appliance.scoring.server import Answer

Reply = tuple[int, bytes, bytes, list[tuple[bytes, bytes]]]  # status, content type, body, extra headers

JSON = b"application/json"
TEXT = b"text/plain; charset=utf-8"
MAX_ECHO = 64  # a name or path from the request is quoted back at most this long in a message
_encode = msgspec.json.encode
_decode = msgspec.json.decode
log = logging.getLogger("appliance.scoring")


def _json(status: int, value: Any, *extra: tuple[bytes, bytes]) -> Reply:
    return status, JSON, _encode(value), list(extra)


class Worker:
    """Serves a no-code ONNX model, or a user's score.py (then azmlinfsrv's routes are the script's)."""

    def __init__(self, name: str, version: str, model: OnnxModel | None = None,
                 script: ScriptScorer | None = None, mlflow: MlflowModel | None = None,
                 keys: tuple[bytes, ...] | None = None,
                 collection: NoCodeCollection | None = None, batcher: Batcher | None = None) -> None:
        self.keys = keys  # set: requests need one of them (auth.py); None: the router in front checks
        self.collection = collection  # the data collector's model_inputs/model_outputs (no-code ONNX and MLflow)
        self.model = model
        self.script = script
        self.mlflow = mlflow  # a no-code MLflow model: /score only, in Azure's MLflow shapes
        self.batcher = batcher  # set: /score's model runs are shared by concurrent requests (batching.py)
        self.name = name
        self.version = version
        self._swagger = _encode(swagger.document(model, title=name)) if model else \
            _encode(mlflow.swagger(title=name)) if mlflow else None

    def __call__(self, scope: dict[str, Any], body: bytes) -> Answer | Awaitable[Answer]:
        """The server's app (server.py): an answer now, or, for a batched /score, one to await."""
        if self.keys is not None and not auth.is_open(scope["method"], scope["path"]) \
                and not auth.allowed(self.keys, _header(scope, b"authorization")):
            payload = _encode({"message": "a valid key is needed: Authorization: Bearer <key>"})
            return 401, [(b"content-type", JSON), (b"www-authenticate", b"Bearer")], payload
        if self.script is not None and not scope["path"].startswith(("/v2", "/appliance/")):
            return self.script.handle(scope, body)  # every other path is azmlinfsrv's, its 404s and 405s included
        if self.batcher is not None and scope["path"] == "/score" and scope["method"] == "POST":
            return self._answer_batched(body)
        try:
            status, ctype, payload, extra = self.handle(
                scope["method"], scope["path"], body, _header(scope, b"inference-header-content-length"),
                _header(scope, b"x-request-id") if self.collection is not None else None)
        except Exception as exc:
            status, ctype, payload, extra = self._failed(scope, exc)
        return status, [(b"content-type", ctype), *extra], payload

    async def _answer_batched(self, body: bytes) -> Answer:
        try:
            status, ctype, payload, extra = await self.score_batched(body)
        except Exception as exc:
            status, ctype, payload, extra = self._failed({"method": "POST", "path": "/score"}, exc)
        return status, [(b"content-type", ctype), *extra], payload

    @staticmethod
    def _failed(scope: dict[str, Any], exc: Exception) -> Reply:
        """A fault of the worker's: JSON too, and the reason in its log."""
        log.error("%s %s failed", scope["method"], _clip(scope["path"]), exc_info=exc)
        return _json(500, {"message": f"the worker failed: {type(exc).__name__}"})

    def handle(self, method: str, path: str, body: bytes, json_length: bytes | None = None,
               request_id: bytes | None = None) -> Reply:
        if path == "/score":
            if method == "POST":
                return self.score(body, request_id)
            if method == "OPTIONS":
                return 200, TEXT, b"", [(b"allow", b"GET, POST, OPTIONS")]
            if method == "GET":
                return 200, TEXT, b"GET is not supported", []
        if method == "GET":
            if path == "/":
                return 200, TEXT, b"Healthy", []
            if path == "/swagger.json" and self._swagger is not None:
                return 200, JSON, self._swagger, []
            if path == "/appliance/info":
                model = self.model
                if self.mlflow is not None:
                    return _json(200, {"provider": "mlflow", "pid": os.getpid(), "providers": [],
                                       "signature": self.mlflow.signature(), "flavor": self.mlflow.flavor,
                                       "path": str(self.mlflow.path), "script": None})
                return _json(200, {"provider": model.provider if model else None, "pid": os.getpid(),
                                   "providers": model.session.get_providers() if model else [],
                                   "signature": model.signature() if model else None,
                                   "script": str(self.script.path) if self.script else None})
        if path.startswith("/v2"):
            if self.model is None:
                if self.mlflow is not None:
                    return _json(404, {"error": "this deployment serves an MLflow model at /score; the Open "
                                                "Inference Protocol is served by no-code ONNX deployments"})
                return _json(404, {"error": "this deployment serves a scoring script; the Open Inference "
                                            "Protocol is served by no-code ONNX deployments"})
            return self.v2(method, path, body, json_length)
        return _json(404, {"message": f"no route {method} {_clip(path)}"})

    def score(self, body: bytes, request_id: bytes | None = None) -> Reply:
        model: Any = self.model if self.model is not None else self.mlflow
        assert model is not None
        started = time.perf_counter()
        try:
            payload = _decode(body)
        except (msgspec.DecodeError, RecursionError) as exc:
            return _not_json(exc)
        try:
            if self.collection is not None and self.model is not None:
                result = self.collection.predict(model, payload, request_id)
            elif self.collection is not None and self.mlflow is not None:
                result = self.mlflow.predict(payload, functools.partial(self.collection.record, request_id))
            else:
                result = model.predict(payload)
        except BadInput as exc:
            return _bad_input(exc)
        except Exception as exc:
            return _model_failed(exc)
        elapsed = f"{(time.perf_counter() - started) * 1000:.3f}".encode()
        return _json(200, result, (b"x-ms-run-fn-exec-ms", elapsed))

    async def score_batched(self, body: bytes) -> Reply:
        """`score` with the model's run shared by concurrent requests. Each request's input is checked
        and converted before it joins a batch, so a bad one is refused alone; `x-appliance-batch` says
        how many requests shared the call."""
        model, batcher = self.model, self.batcher
        assert model is not None and batcher is not None
        started = time.perf_counter()
        try:
            payload = _decode(body)
        except (msgspec.DecodeError, RecursionError) as exc:
            return _not_json(exc)
        try:
            results, shared = await batcher.run(model.feeds(model.named_values(payload)))
            result = model.answer(results)
        except BadInput as exc:
            return _bad_input(exc)
        except Exception as exc:
            return _model_failed(exc)
        elapsed = f"{(time.perf_counter() - started) * 1000:.3f}".encode()
        return _json(200, result, (b"x-ms-run-fn-exec-ms", elapsed), (b"x-appliance-batch", str(shared).encode()))

    # -- Open Inference Protocol (KServe V2) -----------------------------------------------

    def v2(self, method: str, path: str, body: bytes, json_length: bytes | None = None) -> Reply:
        assert self.model is not None
        parts = path.strip("/").split("/")[1:]  # after "v2"
        if parts in (["health", "live"], ["health", "ready"]):
            return _json(200, {"live": True} if parts[1] == "live" else {"ready": True})
        if parts == []:
            return _json(200, {"name": "appliance", "version": self.version, "extensions": []})
        if len(parts) < 2 or parts[0] != "models":
            return _json(404, {"error": f"no route {method} {_clip(path)}"})
        model, rest = parts[1], parts[2:]
        if model != self.name:
            return _json(404, {"error": f"model {_clip(model)!r} is not served here; this deployment serves "
                                        f"{self.name!r}"})
        if rest[:1] == ["versions"]:
            if len(rest) < 2 or rest[1] != self.version:
                return _json(404, {"error": f"model {model!r} has no version {_clip(str(rest[1:2]))}; served "
                                            f"version is {self.version!r}"})
            rest = rest[2:]
        if rest == [] and method == "GET":
            return _json(200, {"name": self.name, "versions": [self.version], "platform": "onnxruntime_onnx",
                               "inputs": [_tensor_meta(i) for i in self.model.inputs],
                               "outputs": [_tensor_meta(o) for o in self.model.outputs]})
        if rest == ["ready"] and method == "GET":
            return _json(200, {"name": self.name, "ready": True})
        if rest == ["infer"] and method == "POST":
            try:
                # Triton's binary extension: a JSON header of this length, then raw tensor bytes.
                split = int(json_length) if json_length and json_length.isdigit() and len(json_length) < 16 \
                    else len(body)
                request = _decode(body[:split])
                if not isinstance(request, dict):
                    raise BadInput("the request must be a JSON object with \"inputs\"")
                outputs = self.model.infer_v2(request, body[split:])
            except (msgspec.DecodeError, RecursionError) as exc:
                return _json(400, {"error": f"the request body is not valid JSON: {_why(exc)}"})
            except BadInput as exc:
                return _json(400, {"error": str(exc)})
            except Exception as exc:
                return _json(500, {"error": f"the model failed: {type(exc).__name__}: {exc}"})
            reply: dict[str, Any] = {"model_name": self.name, "model_version": self.version, "outputs": outputs}
            if "id" in request:
                reply["id"] = request["id"]
            return _json(200, reply)
        return _json(404, {"error": f"no route {method} {_clip(path)}"})


def _not_json(exc: Exception) -> Reply:
    return _json(400, {"message": f"the request body is not valid JSON: {_why(exc)}"},
                 (b"x-appliance-input-error", b"1"))


def _bad_input(exc: BadInput) -> Reply:
    """Refused before the model ran: the router passes this 400 on as is."""
    return _json(400, {"message": str(exc)}, (b"x-appliance-input-error", b"1"))


def _model_failed(exc: Exception) -> Reply:
    """The model itself failed: azmlinfsrv answers 500."""
    return _json(500, {"message": f"the model failed: {type(exc).__name__}: {exc}"},
                 (b"x-ms-run-function-failed", b"True"))


def _why(exc: Exception) -> str:
    return "it is nested too deeply" if isinstance(exc, RecursionError) else str(exc)


def _clip(text: str) -> str:
    return text if len(text) <= MAX_ECHO else text[:MAX_ECHO] + "..."


def _header(scope: dict[str, Any], name: bytes) -> bytes | None:
    for k, v in scope["headers"]:
        if k == name:
            return v
    return None


def _tensor_meta(sig: Any) -> dict[str, Any]:
    return {"name": sig.name, "datatype": sig.datatype,
            "shape": [d if isinstance(d, int) else -1 for d in sig.shape]}
