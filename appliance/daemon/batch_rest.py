"""`POST /endpoints/{endpoint}/jobs`: Azure's REST invoke of a batch endpoint, as a script calls it
(`curl -H "Authorization: Bearer $KEY" -d '{"properties": {"InputData": {...}}}'`).

Authorised by the endpoint's key (either one), a token issued for it, or the admin token; the body is
Azure's: one input under `properties.InputData` (`JobInputType` UriFolder|UriFile, `Uri` a local path or
a data asset), an optional `properties.OutputData` folder; the deployment is the endpoint's default or
the `azureml-model-deployment` header's.
"""

from __future__ import annotations

import asyncio
import hmac
from typing import Any

import msgspec

from appliance.daemon import views
from appliance.daemon.control import Control
from appliance.daemon.jobs import Invocation
from appliance.router import tokens
from appliance.specs import NotFound, SpecError

MAX_BODY = 64 * 1024
INPUT_TYPES = {"urifolder": "uri_folder", "urifile": "uri_file"}


class BatchRest:
    def __init__(self, control: Control, admin_token: str) -> None:
        self.control = control
        self.admin_token = admin_token.encode()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any, endpoint: str) -> None:
        status, answer = await self._answer(scope, receive, endpoint)
        body = msgspec.json.encode(answer)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def _answer(self, scope: dict[str, Any], receive: Any, endpoint: str) -> tuple[int, Any]:
        headers = dict(scope["headers"])
        rec = await asyncio.to_thread(self.control.registry.find_batch_endpoint, endpoint)
        if rec is None:
            return 404, {"message": f"batch endpoint {endpoint!r} does not exist", "field": "endpoint"}
        scheme, _, secret = headers.get(b"authorization", b"").partition(b" ")
        allowed = scheme.lower() == b"bearer" and secret and (
            any(hmac.compare_digest(secret, k.encode()) for k in (rec.primary_key, rec.secondary_key))
            or hmac.compare_digest(secret, self.admin_token)
            or tokens.verify(self.control.token_secret, endpoint, rec.id, secret) is None)
        if not allowed:
            return 401, {"message": f"batch endpoint {endpoint!r} needs 'Authorization: Bearer <key or token>' "
                                    "(appliance batch-endpoint get-credentials)", "field": None}
        raw = await _body(receive)
        if raw is None:
            return 413, {"message": f"a job request larger than {MAX_BODY} bytes", "field": None}
        try:
            how = _invocation(raw, headers.get(b"azureml-model-deployment", b"").decode("latin-1") or None)
            job = await self.control.jobs.invoke(endpoint, how)
        except NotFound as exc:
            return 404, {"message": exc.message, "field": exc.field}
        except SpecError as exc:
            return 400, {"message": exc.message, "field": exc.field}
        view = views.job(job, {}, [])
        return 200, {"id": f"/jobs/{job.name}", "name": job.name, "type": "Microsoft.MachineLearningServices/jobs",
                     "properties": msgspec.to_builtins(view)}


async def _body(receive: Any) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


def _invocation(raw: bytes, deployment: str | None) -> Invocation:
    """Azure's job body → the invoke's options; what is malformed is named."""
    try:
        body = msgspec.json.decode(raw) if raw else {}
    except msgspec.DecodeError as exc:
        raise SpecError(f"the body is not JSON: {exc}", field="body") from None
    props = body.get("properties") if isinstance(body, dict) else None
    inputs = props.get("InputData") if isinstance(props, dict) else None
    if not isinstance(inputs, dict) or len(inputs) != 1:
        raise SpecError('give one input: {"properties": {"InputData": {"NAME": {"JobInputType": "UriFolder", '
                        '"Uri": "/path/or/azureml:data@latest"}}}}', field="properties.InputData")
    (name, given), = inputs.items()
    where = f"properties.InputData.{name}"
    if not isinstance(given, dict) or not isinstance(given.get("Uri"), str):
        raise SpecError("an input needs a Uri (a local path or azureml:NAME@latest)", field=f"{where}.Uri")
    kind = str(given.get("JobInputType", "UriFolder"))
    if kind.lower() not in INPUT_TYPES:
        raise SpecError(f"invalid value {kind!r}; allowed: UriFolder, UriFile", field=f"{where}.JobInputType")
    output_path = None
    outputs = props.get("OutputData") if isinstance(props, dict) else None
    if isinstance(outputs, dict) and outputs:
        first = next(iter(outputs.values()))
        output_path = first.get("Uri") if isinstance(first, dict) else None
    return Invocation(input=given["Uri"].removeprefix("file://"), input_type=INPUT_TYPES[kind.lower()],
                      deployment_name=deployment, output_path=output_path)
