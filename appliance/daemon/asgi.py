"""The one ASGI app the daemon serves: data plane paths go straight to the router (no framework
in between), everything else to the Litestar control API behind the admin token.

Deny by default: a path is data plane only if it is spelled `/endpoints/...` (or the host is
`{endpoint}.localhost`); anything else needs the admin token, whatever its spelling (`//api`, `/./api`,
case, trailing dots: the framework may normalize what this check did not), except the few open paths
below. `GET /metrics` (Prometheus) is answered here, before the control API: behind the admin token
too, unless the daemon was started with `--metrics-open`, which opens exactly that path and method.
The control API takes JSON bodies only and no foreign `Origin`, so no web page can drive it:
a cross-site "simple" request (a form, `text/plain`) is refused before it is read.
"""

from __future__ import annotations

import hmac
from typing import Any

import msgspec

from appliance.router import DataPlane

Scope = dict[str, Any]


# Open without the token: reads that reveal no secret (health, the OpenAPI schema).
OPEN = frozenset({"/api/v1/health", "/api/v1/schema", "/api/v1/schema/openapi.json", "/api/v1/schema/openapi.yaml",
                  "/api/v1/schema/openapi.yml"})
JSON = (b"application/json", b"application/json;")


def _header(scope: Scope, name: bytes) -> bytes | None:
    for k, v in scope["headers"]:
        if k == name:
            return v
    return None


def _host(scope: Scope) -> str:
    for k, v in scope["headers"]:
        if k == b"host":
            host = v.decode("latin-1").lower()
            if host.startswith("["):
                return host.partition("]")[0] + "]"
            return host.rsplit(":", 1)[0] if ":" in host else host
    return ""


class Dispatcher:
    def __init__(self, control_app: Any, dataplane: DataPlane, admin_token: str, bind_host: str, port: int,
                 batch: Any = None, metrics: Any = None, metrics_open: bool = False) -> None:
        self.control_app = control_app
        self.dataplane = dataplane
        self.batch = batch  # POST /endpoints/{endpoint}/jobs: Azure's REST invoke of a batch endpoint
        self.metrics = metrics  # GET /metrics: an appliance.telemetry.prometheus.Metrics
        self.metrics_open = metrics_open  # no token needed for exactly GET/HEAD /metrics
        self.admin_token = admin_token.encode()
        self.hosts = {bind_host.lower(), "localhost", "127.0.0.1", "[::1]"}
        self.origins = {f"http://{h}:{port}".encode() for h in self.hosts}

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return await self.control_app(scope, receive, send)
        if scope["type"] != "http":  # websockets: nothing here speaks them
            return await send({"type": "websocket.close", "code": 1008})
        host = _host(scope)
        path: str = scope["path"]
        if host.endswith(".localhost"):  # http://{endpoint}.localhost:8080/score
            return await self.dataplane(scope, receive, send, host.removesuffix(".localhost"), path.lstrip("/"))
        if host not in self.hosts:  # DNS rebinding: a page on another origin can't reach this daemon
            return await _refuse(send, 403, f"host {host!r} is not served here; use localhost or 127.0.0.1")
        if path.startswith("/endpoints/"):
            endpoint, _, rest = path[len("/endpoints/"):].partition("/")
            if rest == "jobs" and scope["method"] == "POST" and self.batch is not None:
                return await self.batch(scope, receive, send, endpoint)
            return await self.dataplane(scope, receive, send, endpoint, rest)
        origin = _header(scope, b"origin")
        if origin is not None and origin not in self.origins:
            return await _refuse(send, 403, f"requests from origin {origin.decode('latin-1')!r} are refused: the "
                                            "control API serves the appliance's own clients, not web pages")
        read = scope["method"] in ("GET", "HEAD")
        if path == "/metrics" and self.metrics is not None:
            return await self._metrics(scope, send, read)
        open_path = path in OPEN and read
        if not open_path and not self._admin(scope):
            return await _refuse(send, 401, "the control API needs 'Authorization: Bearer <admin token>'; the "
                                            "token is in the admin.token file of the appliance home")
        if _has_body(scope):
            content_type = (_header(scope, b"content-type") or b"").lower().replace(b" ", b"")
            if content_type != JSON[0] and not content_type.startswith(JSON[1]):
                return await _refuse(send, 415, "the control API takes JSON bodies only "
                                                "('Content-Type: application/json')")
        return await self.control_app(scope, receive, send)

    async def _metrics(self, scope: Scope, send: Any, read: bool) -> None:
        if not (self.metrics_open and read) and not self._admin(scope):
            return await _refuse(send, 401, "/metrics needs 'Authorization: Bearer <admin token>' (the token is in "
                                            "the admin.token file of the appliance home), unless the daemon was "
                                            "started with `appliance up --metrics-open`")
        if not read:
            return await _refuse(send, 405, "/metrics is read with GET")
        accept = (_header(scope, b"accept") or b"").decode("latin-1")
        body, content_type = await self.metrics.exposition(accept)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode()),
                                (b"cache-control", b"no-store")]})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})

    def _admin(self, scope: Scope) -> bool:
        value = _header(scope, b"authorization")
        if value is None:
            return False
        scheme, _, secret = value.partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(secret, self.admin_token)


def _has_body(scope: Scope) -> bool:
    """A body announced (or a type for one): a request without either sends nothing to be read."""
    length = _header(scope, b"content-length")
    return (length is not None and length.strip() not in (b"", b"0")) or _header(scope, b"transfer-encoding") \
        is not None or _header(scope, b"content-type") is not None


async def _refuse(send: Any, status: int, message: str) -> None:
    body = msgspec.json.encode({"message": message, "field": None})
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
