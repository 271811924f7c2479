"""The data plane, a raw ASGI app: authentication → deployment choice → admission → forwarding,
then mirroring and the request log, off the live response's path.

Serves `/endpoints/{endpoint}/score`, `/swagger.json` and `/v2/...`, and the same paths on
`{endpoint}.localhost`. Headers and status codes are Azure's (reference: azureml.md).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import random
import re
import time
import weakref
import zlib
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any, Protocol
from urllib.parse import quote

import msgspec

from appliance.router import tokens
from appliance.router.admission import Gate
from appliance.router.table import EndpointRoute, RoutingTable
from appliance.runtime import DeploymentRuntime, Instance, Response
from appliance.telemetry.events import RequestEvent
from appliance.telemetry.prometheus import BOUNDS, Traffic, bucket

log = logging.getLogger("appliance.router")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

PIN = b"azureml-model-deployment"
INPUT_ERROR = b"x-appliance-input-error"  # the no-code loader refused the input itself: a 400, not a 424
# Not passed to a worker: hop-by-hop headers, and the caller's secret.
_DROP = {b"authorization", b"connection", b"keep-alive", b"content-length", b"transfer-encoding",
         b"upgrade", b"te", b"trailer", b"proxy-authorization",
         b"expect"}  # the router answered it, and sends the body with the head
_DROP_BACK = {b"content-length", b"connection", b"keep-alive", b"transfer-encoding", b"date", b"server",
              INPUT_ERROR, b"x-request-id"}  # the router sets x-request-id itself
MAX_MIRRORS_IN_FLIGHT = 256
MAX_ID = 100  # longer request ids get 431, as from Azure's inference server
MAX_ECHO = 64  # a name or path from the caller is quoted back at most this long in a message
# The routes an instance serves, and their methods (azmlinfsrv's for /score: GET, POST, OPTIONS).
# Anything else is refused here, so an instance never sees a path it doesn't serve.
_GET, _POST = (frozenset({"GET"}), b"GET"), (frozenset({"POST"}), b"POST")
_ROUTES = {"score": (frozenset({"GET", "POST", "OPTIONS"}), b"GET, POST, OPTIONS"), "swagger.json": _GET,
           "": _GET, "v2": _GET, "v2/health/live": _GET, "v2/health/ready": _GET}
_UNSAFE = re.compile(r"[^\x21-\x7e]|[?#%]").search  # what can't go into a request line as it is
_UUID4_MASK = ~(0xF000 << 64 | 0xC000 << 48)  # the version nibble and the variant's two bits
_UUID4_BITS = 0x4000 << 64 | 0x8000 << 48
_getrandbits = random.getrandbits


class RequestRecorder(Protocol):
    def record(self, event: RequestEvent) -> None: ...


class HTTPError(Exception):
    def __init__(self, status: int, message: str, headers: Headers | None = None) -> None:
        self.status, self.message, self.headers = status, message, headers or []


class _Request:
    """What one request accumulates on its way through, for the reply and the log."""

    __slots__ = ("at", "body", "deployment", "endpoint", "instance", "key_id", "request_id", "started")

    def __init__(self, endpoint: str, request_id: bytes, at: float) -> None:
        self.at = at
        self.started = time.perf_counter()
        self.endpoint = endpoint
        self.request_id = request_id
        self.deployment = ""
        self.instance = ""
        self.key_id = ""
        self.body = b""


class DataPlane:
    def __init__(self, table: RoutingTable, recorder: RequestRecorder | None = None,
                 max_body_bytes: int = 1_572_864) -> None:
        self.table = table
        self.recorder = recorder
        self.max_body_bytes = max_body_bytes
        self.mirrors_in_flight = 0
        self.mirrors_dropped = 0
        # Strangers' requests cost no request-log row (anyone can send them, as fast as they like): counted.
        self.refused_unknown_endpoint = 0
        self.refused_unauthenticated = 0
        # Known callers' requests, counted whether or not the log is on: (endpoint, deployment) → counts,
        # read by GET /metrics (appliance.telemetry.prometheus), which drops those of deleted endpoints.
        self.traffic: dict[tuple[str, str], Traffic] = {}
        self._gates: weakref.WeakKeyDictionary[DeploymentRuntime, Gate] = weakref.WeakKeyDictionary()
        self._random = random.random

    async def __call__(self, scope: Scope, receive: Receive, send: Send, endpoint: str, rest: str) -> None:
        headers = scope["headers"]
        req = _Request(endpoint, _request_id(headers), time.time())
        reply: Headers = [(b"x-request-id", req.request_id)]
        v2 = rest.startswith("v2")
        content_type: bytes | None = b"application/json"
        mirror: tuple[DeploymentRuntime, str, Headers] | None = None
        known = False  # the caller named an endpoint and proved it may call it: only then a request-log row
        try:
            route = self.table.endpoints.get(endpoint)
            if route is None:
                self.refused_unknown_endpoint += 1
                raise HTTPError(404, f"endpoint {_clip(endpoint)!r} does not exist")
            try:
                req.key_id = _authenticate(route, headers)
            except HTTPError:
                self.refused_unauthenticated += 1
                raise
            known = True
            for id_header in (b"x-request-id", b"x-ms-client-request-id"):
                if len(_header(headers, id_header) or b"") > MAX_ID:
                    raise HTTPError(431, f"{id_header.decode()} must not exceed {MAX_ID} characters")
            method = scope["method"]
            target = ("/score" if rest == "score" and method == "POST" else _target(rest, method)) + _query(scope)
            req.body = await self._body(receive, headers)
            if v2 and rest.rstrip("/") == "v2/health/live":
                status, payload = 200, b'{"live":true}'
            else:
                name, deployment, pinned = _choose(route, headers, self._random)
                req.deployment = name
                if deployment is None:  # no runtime yet: still being created (its environment building)
                    raise HTTPError(503, f"deployment {name!r} of endpoint {route.name!r} is not ready: it is "
                                         "still being created; retry shortly (`appliance deployment show` says "
                                         "how far it is)")
                reply.append((PIN, name.encode()))
                forwarded = _forwarded(headers, req.request_id)
                if not pinned and route.mirror and self._random() * 100 < route.mirror[1] \
                        and (target_runtime := route.deployments.get(route.mirror[0])) is not None:
                    mirror = target_runtime, route.mirror[0], forwarded
                response = await self._forward(deployment, req, method, target, forwarded)
                status, payload, content_type = response.status, response.body, None
                reply += [(k, v) for k, v in response.headers if k not in _DROP_BACK]
                if status != 200 and rest == "score" and response.header(INPUT_ERROR) is None:
                    # Azure: the model answered non-200 → 424, with what it said in these headers.
                    reply += [(b"ms-azureml-model-error-statuscode", str(status).encode()),
                              (b"ms-azureml-model-error-reason", _phrase(status).encode())]
                    status = 424
                elif status >= 500:
                    log.warning("request %s to %s/%s: the instance answered %d", _id(req), endpoint, req.deployment,
                                status)
        except HTTPError as exc:
            status = exc.status
            payload = msgspec.json.encode({"error": exc.message} if v2 else {"message": exc.message})
            reply += exc.headers
        except OSError as exc:
            log.warning("request %s to %s/%s failed: %s", _id(req), endpoint, req.deployment, exc)
            message = f"the deployment's instance did not answer ({exc}); request id {_id(req)}"
            status, payload = 502, msgspec.json.encode({"error": message} if v2 else {"message": message})
        except Exception:  # a fault of ours, whatever came in: said, with the id the caller got
            log.exception("request %s to %s/%s failed", _id(req), _clip(endpoint), req.deployment)
            message = f"an unexpected error occurred in the router; request id {_id(req)}"
            status, payload = 500, msgspec.json.encode({"error": message} if v2 else {"message": message})
        if _header(reply, b"x-ms-request-id") is None:  # a script's worker sets its own, as azmlinfsrv does
            reply.append((b"x-ms-request-id", req.request_id))
        # The row is taken just before the answer goes out, not after: code run right after the socket
        # write runs on cold caches here (measured: the same row cost about 3 µs more a request after).
        row = None
        if known:
            elapsed = time.perf_counter() - req.started
            traffic = self.traffic.get((endpoint, req.deployment)) or self._traffic(endpoint, req.deployment)
            traffic.latency[bucket(BOUNDS, elapsed)] += 1
            traffic.seconds += elapsed
            codes = traffic.codes
            codes[status] = codes.get(status, 0) + 1
            if self.recorder is not None:
                row = self._row(req, status, payload, elapsed)
        if mirror is None:
            self._record(row)
        await _send(send, status, payload, reply, content_type)
        if mirror:  # the live answer is out: now, and only now, the copy (recorded with the live row)
            await self._mirror(*mirror, req, method, target, row, status, payload)

    def _traffic(self, endpoint: str, deployment: str) -> Traffic:
        traffic = self.traffic.get((endpoint, deployment))
        if traffic is None:
            traffic = self.traffic[endpoint, deployment] = Traffic()
        return traffic

    def gate(self, deployment: DeploymentRuntime) -> Gate | None:
        """The deployment's admission gate, once a request has been through it."""
        return self._gates.get(deployment)

    async def _forward(self, deployment: DeploymentRuntime, req: _Request, method: str, target: str,
                       forwarded: Headers) -> Response:
        """Admission, then the least-busy ready instance, within the deployment's request timeout."""
        settings = deployment.plan.request_settings
        gate = self._gates.get(deployment)
        if gate is None:
            gate = self._gates[deployment] = Gate()
        # Azure's rule: up to 2 × max_concurrent_requests_per_instance × instance_count in parallel, the
        # second half waiting at the instance. A worker then finds its next request waiting as it
        # finishes one, instead of sleeping until the router wakes to send it (measured, a score.py one
        # at a time at 16 clients on one core, the request log off: ~2,980 req/s against ~2,520 with 1 ×).
        limit = 2 * settings.max_concurrent_requests_per_instance * deployment.plan.instance_count
        if not gate.admit(limit) and not await self._queue(gate, limit, settings.max_queue_wait_ms / 1000, req):
            raise HTTPError(429, f"deployment {req.deployment!r} is at its limit of {limit} requests in flight (2 × "
                                 f"max_concurrent_requests_per_instance × instance_count) and none finished within "
                                 f"max_queue_wait_ms={settings.max_queue_wait_ms}")
        try:
            tried: set[str] = set()
            while True:
                instance = _pick(req.deployment, deployment, tried)
                req.instance = instance.name
                instance.outstanding += 1
                try:
                    return await instance.client.request(method, instance.target(target), req.body, forwarded,
                                                         settings.request_timeout_ms / 1000)
                except TimeoutError:
                    raise HTTPError(408, f"the deployment did not answer within request_timeout_ms="
                                         f"{settings.request_timeout_ms}") from None
                except (ConnectionRefusedError, FileNotFoundError):
                    # The instance died before the request reached it (its supervisor will notice):
                    # another ready instance can take it safely.
                    tried.add(instance.name)
                    if len(tried) >= len(deployment.ready):
                        raise
                finally:
                    instance.outstanding -= 1
        finally:
            gate.release()

    async def _queue(self, gate: Gate, limit: int, wait_seconds: float, req: _Request) -> bool:
        """Wait for a slot (at the limit), counted as queued meanwhile."""
        traffic = self._traffic(req.endpoint, req.deployment)
        traffic.queued += 1
        try:
            return await gate.wait(limit, wait_seconds)
        finally:
            traffic.queued -= 1

    async def _mirror(self, deployment: DeploymentRuntime, name: str, forwarded: Headers, live: _Request,
                      method: str, target: str, row: RequestEvent | None, live_status: int,
                      live_payload: bytes) -> None:
        """The copy runs in the live request's own task, after its response is complete: the server has
        already moved on to the caller's next request, and no task per copy is made. The live row is
        recorded with the copy's outcome, or alone when the copy is dropped."""
        if self.mirrors_in_flight >= MAX_MIRRORS_IN_FLIGHT:
            self.mirrors_dropped += 1
            if self.mirrors_dropped % 1000 == 1:  # said, not silent; but not once per request either
                log.warning("mirror target %r is behind: %d mirrored copies dropped so far (at most %d in flight)",
                            name, self.mirrors_dropped, MAX_MIRRORS_IN_FLIGHT)
            self._record(row)
            return
        req = _Request(live.endpoint, live.request_id, live.at)
        req.deployment, req.body = name, live.body  # its row takes the rest from the live row
        status, payload = 0, b""
        self.mirrors_in_flight += 1
        try:
            response = await self._forward(deployment, req, method, target, forwarded)
            status, payload = response.status, response.body
        except HTTPError as exc:
            status = exc.status
        except OSError:
            status = 502
        except Exception:
            log.exception("mirrored copy of request %s to %s/%s failed", _id(req), req.endpoint, name)
            status = 500
        finally:
            self.mirrors_in_flight -= 1
        traffic = self._traffic(req.endpoint, name)
        traffic.mirrored += 1
        if status == 200 and live_status == 200 and payload == live_payload:
            traffic.agreed += 1
        if row is not None:
            self._record((*row, zlib.crc32(live_payload), name, req.instance, status,
                          (time.perf_counter() - req.started) * 1000, len(payload), zlib.crc32(payload)))

    def _row(self, req: _Request, status: int, payload: bytes, elapsed: float) -> RequestEvent:
        return (req.at, req.request_id.decode(errors="replace"), req.endpoint, req.deployment, req.instance,
                False, status, elapsed * 1000, len(req.body), len(payload), req.key_id, None)

    def _record(self, event: RequestEvent | None) -> None:
        if event is not None and self.recorder is not None:
            self.recorder.record(event)

    async def _body(self, receive: Receive, headers: Headers) -> bytes:
        for k, v in headers:
            if k == b"content-length" and v.isdigit() and (len(v) > 18 or int(v) > self.max_body_bytes):
                raise HTTPError(413, f"the request body is {_clip(v.decode())} bytes; the limit is "
                                     f"{self.max_body_bytes} (appliance up --max-request-mb)")
        chunks: list[bytes] = []
        size, more = 0, True
        while more:
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise HTTPError(413, f"the request body is over the limit of {self.max_body_bytes} bytes "
                                     "(appliance up --max-request-mb)")
            chunks.append(chunk)
            more = message.get("more_body", False)
        return b"".join(chunks)

    async def drain(self, timeout: float) -> None:
        """Let mirrored requests in flight finish (at shutdown)."""
        deadline = time.monotonic() + timeout
        while self.mirrors_in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.01)


def _choose(route: EndpointRoute, headers: Headers,
            uniform: Callable[[], float]) -> tuple[str, DeploymentRuntime | None, bool]:
    """(name, deployment, pinned): the pinned deployment, or one drawn by live traffic."""
    pinned = _header(headers, PIN)
    if pinned is not None:
        name = pinned.decode(errors="replace")
        deployment = route.deployments.get(name)
        if deployment is None:
            known = ", ".join(sorted(route.deployments)) or "none"
            raise HTTPError(404, f"deployment {_clip(name)!r} (from the {PIN.decode()} header) does not exist on "
                                 f"endpoint {route.name!r}; its deployments are: {known}")
        return name, deployment, True
    chosen = route.split.choose(uniform())
    if chosen is None:
        raise HTTPError(404, "No valid deployments to route to. Please check that the endpoint has at least "
                             "one deployment with positive weight values or use a deployment specific "
                             "header to route.")
    return chosen, route.deployments.get(chosen), False  # None: in traffic, but not created yet


def _target(rest: str, method: str) -> str:
    """The instance's path for a data-plane path (after /endpoints/{endpoint}/), once the path is one an
    instance serves (404 otherwise) and the method one it allows there (405, with `Allow`). A V2 path
    beyond the routes below goes as it is (a custom image may serve more), quoted if it must be."""
    allowed = _ROUTES.get(rest)
    if allowed is None and rest.startswith("v2/"):
        parts = rest.rstrip("/").split("/")
        if parts[1:2] == ["models"] and len(parts) > 2:
            tail = parts[5:] if parts[3:4] == ["versions"] and len(parts) > 4 else parts[3:]
            allowed = _POST if tail == ["infer"] else _GET if tail in ([], ["ready"]) else None
        elif rest.rstrip("/") in _ROUTES:
            allowed = _ROUTES[rest.rstrip("/")]
        if allowed is None:
            return _path(rest)
    if allowed is None:
        raise HTTPError(404, f"no route /{_clip(rest)}: an endpoint serves /score, /swagger.json and /v2/... "
                             "(Open Inference Protocol)")
    if method not in allowed[0]:
        raise HTTPError(405, f"{_clip(method)} is not allowed on /{_clip(rest)}; allowed: {allowed[1].decode()}",
                        [(b"allow", allowed[1])])
    return _path(rest)


def _path(rest: str) -> str:
    return "/" + (quote(rest, safe="/") if _UNSAFE(rest) else rest)


def _clip(text: str) -> str:
    """A caller's name or path, quoted back in a message no longer than it need be."""
    return text if len(text) <= MAX_ECHO else text[:MAX_ECHO] + "..."


def _id(req: _Request) -> str:
    return req.request_id.decode(errors="replace")


def _pick(name: str, deployment: DeploymentRuntime, skip: set[str]) -> Instance:
    """The ready instance with the fewest requests in flight (other than those in `skip`)."""
    ready = [i for i in deployment.ready if i.name not in skip] if skip else deployment.ready
    if not ready:
        raise HTTPError(503, f"deployment {name!r} has no ready instance (state: {deployment.state}"
                             + (f", {deployment.error}" if deployment.error else "") + ")")
    if len(ready) == 1:
        return ready[0]
    return min(ready, key=lambda i: i.outstanding)


def _authenticate(route: EndpointRoute, headers: Headers) -> str:
    """Which credential the caller presented: "primary", "secondary" or "token"."""
    value = _header(headers, b"authorization") or b""
    scheme, _, secret = value.partition(b" ")
    challenge = [(b"www-authenticate", b"Bearer")]
    if scheme.lower() != b"bearer" or not secret:
        how = "key" if route.auth_mode == "key" else "token"
        raise HTTPError(401, f"missing credentials: send the header 'Authorization: Bearer <{how}>' (see "
                             f"`appliance endpoint {'get-credentials' if how == 'key' else 'get-token'}`)",
                        challenge)
    if route.auth_mode != "key":
        why = tokens.verify(route.token_secret, route.name, route.endpoint_id, secret)
        if why:
            raise HTTPError(401, why, challenge)
        return "token"
    # Both keys are compared, in constant time, so timing tells nothing about which one is close.
    primary = hmac.compare_digest(secret, route.keys[0])
    secondary = hmac.compare_digest(secret, route.keys[1])
    if not (primary or secondary):
        raise HTTPError(401, "invalid credentials for this endpoint", challenge)
    return "primary" if primary else "secondary"


def _header(headers: Headers, name: bytes) -> bytes | None:
    for k, v in headers:
        if k == name:
            return v
    return None


def _forwarded(headers: Headers, request_id: bytes) -> Headers:
    """What an instance is sent: the caller's headers but the hop-by-hop ones and the secret, and our id."""
    forwarded = [(k, v) for k, v in headers if k not in _DROP and k != b"x-request-id"]
    forwarded.append((b"x-request-id", request_id))
    return forwarded


def _request_id(headers: Headers) -> bytes:
    for name in (b"x-request-id", b"x-ms-client-request-id"):
        value = _header(headers, name)
        if value:
            return value[:MAX_ID]
    return _new_id()


def _new_id() -> bytes:
    """A random (version 4) UUID, as Azure's request ids are; made here in a fifth of `uuid.uuid4`'s
    time, from the process's PRNG: an id only has to be unique, not unguessable."""
    h = (_getrandbits(128) & _UUID4_MASK | _UUID4_BITS).to_bytes(16).hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}".encode()


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


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
