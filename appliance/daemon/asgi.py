"""The one ASGI app the daemon serves: data plane paths go straight to the router (no framework
in between), everything else to the Litestar control API behind the admin token."""

from __future__ import annotations

import hmac
from typing import Any

import msgspec

from appliance.router import DataPlane

Scope = dict[str, Any]


def _host(scope: Scope) -> str:
    for k, v in scope["headers"]:
        if k == b"host":
            host = v.decode("latin-1").lower()
            if host.startswith("["):
                return host.partition("]")[0] + "]"
            return host.rsplit(":", 1)[0] if ":" in host else host
    return ""


class Dispatcher:
    def __init__(self, control_app: Any, dataplane: DataPlane, admin_token: str, bind_host: str) -> None:
        self.control_app = control_app
        self.dataplane = dataplane
        self.admin_token = admin_token.encode()
        self.hosts = {bind_host.lower(), "localhost", "127.0.0.1", "[::1]"}

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.control_app(scope, receive, send)
        host = _host(scope)
        path: str = scope["path"]
        if host.endswith(".localhost"):  # http://{endpoint}.localhost:8080/score
            return await self.dataplane(scope, receive, send, host.removesuffix(".localhost"), path.lstrip("/"))
        if host not in self.hosts:  # DNS rebinding: a page on another origin can't reach this daemon
            return await _refuse(send, 403, f"host {host!r} is not served here; use localhost or 127.0.0.1")
        if path.startswith("/endpoints/"):
            endpoint, _, rest = path[len("/endpoints/"):].partition("/")
            return await self.dataplane(scope, receive, send, endpoint, rest)
        if path.startswith("/api/") and not path.startswith("/api/v1/schema") and not self._admin(scope):
            return await _refuse(send, 401, "the control API needs 'Authorization: Bearer <admin token>'; the "
                                            "token is in the admin.token file of the appliance home")
        return await self.control_app(scope, receive, send)

    def _admin(self, scope: Scope) -> bool:
        for k, v in scope["headers"]:
            if k == b"authorization":
                scheme, _, secret = v.partition(b" ")
                return scheme.lower() == b"bearer" and hmac.compare_digest(secret, self.admin_token)
        return False


async def _refuse(send: Any, status: int, message: str) -> None:
    body = msgspec.json.encode({"message": message, "field": None})
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
