"""The data plane, a raw ASGI app: authentication → deployment choice → forwarding.

Serves `/endpoints/{endpoint}/score`, `/swagger.json` and `/v2/...`, and the same paths on
`{endpoint}.localhost`. Headers and status codes are Azure's (reference: azureml.md).
"""

from __future__ import annotations

import hmac
import logging
import random
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from appliance.router.table import EndpointRoute, RoutingTable
from appliance.runtime import DeploymentRuntime, Instance

log = logging.getLogger("appliance.router")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

PIN = b"azureml-model-deployment"
# Not passed to a worker: hop-by-hop headers, and the caller's secret.
_DROP = {b"host", b"authorization", b"connection", b"keep-alive", b"content-length", b"transfer-encoding",
         b"upgrade", b"te", b"trailer", b"proxy-authorization"}
_DROP_BACK = {b"content-length", b"connection", b"keep-alive", b"transfer-encoding", b"date", b"server"}


class HTTPError(Exception):
    def __init__(self, status: int, message: str, headers: Headers | None = None) -> None:
        self.status, self.message, self.headers = status, message, headers or []


class DataPlane:
    def __init__(self, table: RoutingTable, max_body_bytes: int = 100 * 1024 * 1024) -> None:
        self.table = table
        self.max_body_bytes = max_body_bytes
        self._random = random.random

    async def __call__(self, scope: Scope, receive: Receive, send: Send, endpoint: str, rest: str) -> None:
        headers = scope["headers"]
        request_id = _request_id(headers)
        reply_headers: Headers = [(b"x-request-id", request_id), (b"x-ms-request-id", request_id)]
        v2 = rest.startswith("v2")
        try:
            route = self.table.endpoints.get(endpoint)
            if route is None:
                raise HTTPError(404, f"endpoint {endpoint!r} does not exist")
            _authenticate(route, headers)
            body = await self._body(receive, headers)
            if v2 and rest in ("v2/health/live", "v2/health/live/"):
                return await _send(send, 200, b'{"live":true}', reply_headers)
            name, deployment = self._choose(route, headers)
            reply_headers.append((PIN, name.encode()))
            instance = _pick(name, deployment)
            forwarded = [(k, v) for k, v in headers if k not in _DROP]
            forwarded.append((b"x-request-id", request_id))
            instance.outstanding += 1
            try:
                response = await instance.client.request(scope["method"], "/" + rest + _query(scope), body,
                                                         forwarded)
            finally:
                instance.outstanding -= 1
            reply_headers += [(k, v) for k, v in response.headers if k not in _DROP_BACK]
            await _send(send, response.status, response.body, reply_headers, content_type=None)
        except HTTPError as exc:
            payload = {"error": exc.message} if v2 else {"message": exc.message}
            await _send(send, exc.status, msgspec.json.encode(payload), reply_headers + exc.headers)
        except OSError as exc:
            log.warning("request %s to %s failed: %s", request_id.decode(), endpoint, exc)
            message = f"the deployment's instance did not answer ({exc}); request id {request_id.decode()}"
            payload = {"error": message} if v2 else {"message": message}
            await _send(send, 502, msgspec.json.encode(payload), reply_headers)

    async def _body(self, receive: Receive, headers: Headers) -> bytes:
        for k, v in headers:
            if k == b"content-length" and v.isdigit() and int(v) > self.max_body_bytes:
                raise HTTPError(413, f"the request body is {int(v)} bytes; the limit is {self.max_body_bytes}")
        chunks: list[bytes] = []
        size, more = 0, True
        while more:
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise HTTPError(413, f"the request body is over the limit of {self.max_body_bytes} bytes")
            chunks.append(chunk)
            more = message.get("more_body", False)
        return b"".join(chunks)

    def _choose(self, route: EndpointRoute, headers: Headers) -> tuple[str, DeploymentRuntime]:
        pinned = _header(headers, PIN)
        if pinned is not None:
            name = pinned.decode(errors="replace")
            deployment = route.deployments.get(name)
            if deployment is None:
                known = ", ".join(sorted(route.deployments)) or "none"
                raise HTTPError(404, f"deployment {name!r} (from the {PIN.decode()} header) does not exist on "
                                     f"endpoint {route.name!r}; its deployments are: {known}")
            return name, deployment
        name = route.split.choose(self._random())
        if name is None:
            raise HTTPError(404, "No valid deployments to route to. Please check that the endpoint has at least "
                                 "one deployment with positive weight values or use a deployment specific "
                                 "header to route.")
        return name, route.deployments[name]


def _pick(name: str, deployment: DeploymentRuntime) -> Instance:
    """The ready instance with the fewest requests in flight."""
    ready = deployment.ready
    if not ready:
        raise HTTPError(503, f"deployment {name!r} has no ready instance (state: {deployment.state}"
                             + (f", {deployment.error}" if deployment.error else "") + ")")
    if len(ready) == 1:
        return ready[0]
    return min(ready, key=lambda i: i.outstanding)


def _authenticate(route: EndpointRoute, headers: Headers) -> None:
    value = _header(headers, b"authorization") or b""
    scheme, _, secret = value.partition(b" ")
    if scheme.lower() != b"bearer" or not secret:
        raise HTTPError(401, "missing credentials: send the header 'Authorization: Bearer <key>' "
                             "(see `appliance endpoint get-credentials`)", [(b"www-authenticate", b"Bearer")])
    # Compare with every key, in constant time, so timing tells nothing about which one is close.
    matched = False
    for key in route.keys:
        matched |= hmac.compare_digest(secret, key)
    if not matched:
        raise HTTPError(401, "invalid credentials for this endpoint", [(b"www-authenticate", b"Bearer")])


def _header(headers: Headers, name: bytes) -> bytes | None:
    for k, v in headers:
        if k == name:
            return v
    return None


def _request_id(headers: Headers) -> bytes:
    for name in (b"x-request-id", b"x-ms-client-request-id"):
        value = _header(headers, name)
        if value:
            return value[:100]
    return str(uuid.uuid4()).encode()


def _query(scope: Scope) -> str:
    qs = scope.get("query_string", b"")
    return "?" + qs.decode("latin-1") if qs else ""


async def _send(send: Send, status: int, body: bytes, headers: Headers,
                content_type: bytes | None = b"application/json") -> None:
    out = [(b"content-length", str(len(body)).encode()), *headers]
    if content_type:
        out.append((b"content-type", content_type))
    await send({"type": "http.response.start", "status": status, "headers": out})
    await send({"type": "http.response.body", "body": body})
