"""HTTP/1.1 to an instance (a worker's Unix socket, or a container's port on 127.0.0.1), with
keep-alive connections reused across requests.

This is the router's hot path to an instance: asyncio streams plus httptools' response parser,
no per-request client objects. httpx costs several hundred µs per request here; this costs tens.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

import httptools

Headers = list[tuple[bytes, bytes]]
RequestHeaders = Sequence[tuple[bytes, bytes]]  # what a request takes: read only, so `()` will do


@dataclass(slots=True)
class Response:
    status: int
    headers: Headers
    body: bytes

    def header(self, name: bytes) -> bytes | None:
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None


@dataclass
class _Parsed:
    headers: Headers = field(default_factory=list)
    chunks: list[bytes] = field(default_factory=list)
    headed: bool = False
    done: bool = False
    keep_alive: bool = False
    parser: httptools.HttpResponseParser | None = None

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self.headed = True

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        self.done = True
        # Only valid inside this callback: once feed_data returns, httptools answers False.
        self.keep_alive = self.parser is not None and self.parser.should_keep_alive()


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def roundtrip(self, request: bytes, head: bool = False) -> tuple[Response, bool]:
        self.writer.write(request)
        parsed = _Parsed()
        parser = parsed.parser = httptools.HttpResponseParser(parsed)
        while not parsed.done and not (head and parsed.headed):  # a HEAD answer has no body to wait for
            data = await self.reader.read(65536)
            if not data:
                if parsed.headed:  # an HTTP/1.0-style answer whose body ends with the connection
                    return Response(parser.get_status_code(), parsed.headers, b"".join(parsed.chunks)), False
                raise ConnectionResetError("the worker closed the connection")
            parser.feed_data(data)
        response = Response(parser.get_status_code(), parsed.headers, b"".join(parsed.chunks))
        return response, parsed.keep_alive

    def close(self) -> None:
        self.writer.close()


class HTTPClient:
    """A pool of keep-alive connections to one Unix socket (`path`) or TCP address (`host`, `port`)."""

    def __init__(self, path: str | None = None, host: str = "127.0.0.1", port: int | None = None,
                 max_idle: int = 64) -> None:
        self.path, self.host, self.port = path, host, port
        self.max_idle = max_idle
        self._idle: list[_Connection] = []

    async def _connect(self) -> _Connection:
        if self.path is not None:
            return _Connection(*await asyncio.open_unix_connection(self.path))
        return _Connection(*await asyncio.open_connection(self.host, self.port))

    async def request(self, method: str, target: str, body: bytes = b"", headers: RequestHeaders = (),
                      timeout: float | None = None) -> Response:
        """The instance's answer; TimeoutError after `timeout` seconds (the connection is then dropped)."""
        if timeout is None:
            return await self._request(method, target, body, headers)
        async with asyncio.timeout(timeout):
            return await self._request(method, target, body, headers)

    async def _request(self, method: str, target: str, body: bytes, headers: RequestHeaders) -> Response:
        lines = [f"{method} {target} HTTP/1.1\r\ncontent-length: {len(body)}\r\n".encode()]
        lines += [k + b": " + v + b"\r\n" for k, v in headers]
        if not any(k == b"host" for k, _ in headers):
            lines.append(b"host: worker\r\n")
        request = b"".join(lines) + b"\r\n" + body
        # A pooled connection may have been closed by the worker meanwhile: retry once on a fresh one.
        for attempt in (0, 1):
            reused = bool(self._idle) and attempt == 0
            conn = self._idle.pop() if reused else await self._connect()
            try:
                response, keep = await conn.roundtrip(request, head=method == "HEAD")
            except (ConnectionError, httptools.HttpParserError):
                conn.close()
                if reused:
                    continue
                raise
            except BaseException:  # cancelled (timeout) mid-request: the connection is in an unknown state
                conn.close()
                raise
            if keep and len(self._idle) < self.max_idle:
                self._idle.append(conn)
            else:
                conn.close()
            return response
        raise AssertionError("unreachable")

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()
