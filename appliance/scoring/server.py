"""The worker's HTTP/1.1 server: httptools' parser on an asyncio protocol (uvloop), each request handed
to the app as soon as it is complete and, when the app answers at once (every route but a batched
/score), its answer written back in the same call: no task, no ASGI messages, no per-request objects
beyond the scope. Under uvicorn the same worker took ~23 µs more CPU a request (measured: a score.py
at 16 clients through the router, 178 → 155 µs a request), and imported it at every start. Its
hottest caller is the router, one request at a time per connection.

Keep-alive, pipelining (answers in order), `Expect: 100-continue` (when the body is still to come),
HEAD (no body), chunked request bodies, limits on header and body size, and a graceful stop on
SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import os
import signal
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, cast
from urllib.parse import unquote_to_bytes

import httptools

log = logging.getLogger("appliance.scoring")

Headers = list[tuple[bytes, bytes]]
Answer = tuple[int, Headers, bytes]  # status, headers (content-length is added here), body
App = Callable[[dict[str, Any], bytes], "Answer | Awaitable[Answer]"]

MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 2 * 1024**3
STOP_GRACE = 5.0  # s for requests in flight at a stop

_REASONS = {100: b"Continue", 200: b"OK", 400: b"Bad Request", 401: b"Unauthorized", 404: b"Not Found",
            405: b"Method Not Allowed", 408: b"Request Timeout", 413: b"Content Too Large", 414: b"URI Too Long",
            415: b"Unsupported Media Type", 422: b"Unprocessable Content", 424: b"Failed Dependency",
            429: b"Too Many Requests", 431: b"Request Header Fields Too Large", 500: b"Internal Server Error",
            502: b"Bad Gateway", 503: b"Service Unavailable", 504: b"Gateway Timeout"}
_status_lines: dict[int, bytes] = {}


def _status_line(status: int) -> bytes:
    line = _status_lines.get(status)
    if line is None:
        line = _status_lines[status] = b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b"Status"))
    return line


class _Clock:
    """The Date header, formatted once a second."""

    second = 0
    value = b""

    @classmethod
    def date(cls) -> bytes:
        now = int(time.time())
        if now != cls.second:
            cls.second, cls.value = now, b"date: " + email.utils.formatdate(now, usegmt=True).encode() + b"\r\n"
        return cls.value


class _Refused(Exception):
    def __init__(self, status: int, message: bytes) -> None:
        self.status, self.message = status, message


class Connection(asyncio.Protocol):
    """One client connection. httptools calls the on_* methods from inside `feed_data`."""

    def __init__(self, app: App, server: tuple[str, int] | None, track: set[Connection]) -> None:
        self.app = app
        self.server = server
        self.track = track
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.client: tuple[str, int] | None = None
        self.url = b""
        self.headers: Headers = []
        self.header_bytes = 0
        self.body: list[bytes] = []
        self.body_bytes = 0
        self.expects_continue = False
        self.queue: deque[tuple[dict[str, Any], bytes, bool]] = deque()  # complete, not yet answered
        self.busy: asyncio.Task[None] | None = None  # answering an app's awaitable

    # -- asyncio -------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not asyncio.Transport subclasses
        peer = self.transport.get_extra_info("peername")
        self.client = peer[:2] if isinstance(peer, tuple) else None
        self.track.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.track.discard(self)
        self.transport = None
        if self.busy is not None:
            self.busy.cancel()

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
            if self.expects_continue and self.transport is not None:  # a head whose body has yet to come
                self.expects_continue = False
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        except httptools.HttpParserUpgrade:
            self._refuse(400, b"protocol upgrades are not served here")
        except httptools.HttpParserError as exc:  # a callback's _Refused arrives wrapped in one
            refused = exc.__context__
            if isinstance(refused, _Refused):
                self._refuse(refused.status, refused.message)
            else:
                self._refuse(400, f"malformed HTTP request: {exc}".encode())

    @property
    def idle(self) -> bool:
        return self.busy is None and not self.queue and not self.url and not self.headers

    # -- httptools ----------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.url, self.headers, self.header_bytes, self.body, self.body_bytes = b"", [], 0, [], 0

    def on_url(self, url: bytes) -> None:
        self.url += url
        self.header_bytes += len(url)
        if self.header_bytes > MAX_HEADER_BYTES:
            raise _Refused(414, b"the request line is too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_bytes += len(name) + len(value)
        if self.header_bytes > MAX_HEADER_BYTES:
            raise _Refused(431, b"the request headers are too large")
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        for name, value in self.headers:
            if name == b"content-length" and value.isdigit() and int(value) > MAX_BODY_BYTES:
                raise _Refused(413, b"the request body is too large")
            if name == b"expect" and value.lower() == b"100-continue":
                self.expects_continue = True  # answered once this read is parsed, unless the body was in it

    def on_body(self, body: bytes) -> None:
        self.body_bytes += len(body)
        if self.body_bytes > MAX_BODY_BYTES:
            raise _Refused(413, b"the request body is too large")
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.expects_continue = False
        path, _, query = self.url.partition(b"?")
        parser = self.parser
        scope = {"method": parser.get_method().decode("ascii"), "path": _path(path), "query_string": query,
                 "http_version": parser.get_http_version(), "headers": self.headers,
                 "client": self.client, "server": self.server}
        body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
        keep = parser.should_keep_alive()
        self.url, self.headers, self.body = b"", [], []
        if self.busy is not None or self.queue:
            self.queue.append((scope, body, keep))
        else:
            self._answer(scope, body, keep)

    # -- answers ------------------------------------------------------------------------------

    def _answer(self, scope: dict[str, Any], body: bytes, keep: bool) -> None:
        try:
            answer = self.app(scope, body)
        except Exception:  # the app's own errors are answered by the app: this is a fault of the worker's
            log.exception("%s %s failed", scope["method"], scope["path"][:64])
            answer = _internal()
        if isinstance(answer, tuple):
            self._write(scope["method"], answer, keep)
        else:
            self.busy = asyncio.ensure_future(self._later(scope["method"], answer, keep))

    async def _later(self, method: str, pending: Awaitable[Answer], keep: bool) -> None:
        try:
            answer = await pending
        except Exception:
            log.exception("%s failed", method)
            answer = _internal()
        self.busy = None
        self._write(method, answer, keep)
        while self.queue and self.busy is None and self.transport is not None:
            self._answer(*self.queue.popleft())

    def _write(self, method: str, answer: Answer, keep: bool) -> None:
        transport = self.transport
        if transport is None:
            return
        status, headers, payload = answer
        head = [_status_line(status), _Clock.date(), b"content-length: %d\r\n" % len(payload)]
        head += [k + b": " + v + b"\r\n" for k, v in headers]
        if not keep:
            head.append(b"connection: close\r\n")
        head.append(b"\r\n")
        if method != "HEAD":
            head.append(payload)
        transport.write(b"".join(head))
        if not keep:
            transport.close()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _refuse(self, status: int, message: bytes) -> None:
        if self.busy is not None or self.queue:  # answers still owed come first: only closing is left
            self.close()
        elif self.transport is not None:
            self._write("GET", (status, [(b"content-type", b"text/plain; charset=utf-8")], message), False)


def _path(raw: bytes) -> str:
    return (unquote_to_bytes(raw) if b"%" in raw else raw).decode("latin-1")


def _internal() -> Answer:
    return 500, [(b"content-type", b"application/json")], b'{"message": "the worker failed"}'


class Listener:
    """A listening server and its connections."""

    def __init__(self, server: asyncio.Server, connections: set[Connection]) -> None:
        self.server = server
        self.connections = connections

    async def stop(self, grace: float = STOP_GRACE) -> None:
        """No new connections; requests in flight get up to `grace` seconds; then every connection closes."""
        self.server.close()
        deadline = asyncio.get_running_loop().time() + grace
        while any(not c.idle for c in self.connections) and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        for connection in list(self.connections):
            connection.close()


async def listen(app: App, socket_path: str | None = None, host: str = "127.0.0.1", port: int = 0) -> Listener:
    loop = asyncio.get_running_loop()
    connections: set[Connection] = set()
    if socket_path is not None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(socket_path)
        server = await loop.create_unix_server(lambda: Connection(app, None, connections), socket_path)
    else:
        server = await loop.create_server(lambda: Connection(app, (host, port), connections), host, port,
                                          family=socket.AF_INET6 if ":" in host else socket.AF_INET)
    return Listener(server, connections)


def serve(app: App, socket_path: str | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
    """Serve until SIGTERM or SIGINT, then let requests in flight finish (up to STOP_GRACE)."""
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.run(_serve(app, socket_path, host, port))


async def _serve(app: App, socket_path: str | None, host: str, port: int) -> None:
    listener = await listen(app, socket_path, host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await listener.stop()
