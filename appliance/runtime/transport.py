"""HTTP/1.1 to an instance (a worker's Unix socket, or a container's port on 127.0.0.1), with
keep-alive connections reused across requests.

This is the router's hot path to an instance: an asyncio protocol feeding httptools' response parser,
no per-request client objects. httpx costs several hundred µs per request here; asyncio's streams
cost ~25 µs more than this protocol (measured in the daemon under load).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

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


class _Connection(asyncio.Protocol):
    """One keep-alive connection: httptools' response parser fed straight from the transport, and the
    answer handed to the waiting request when it is complete (no stream objects between them)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self._waiter: asyncio.Future[tuple[Response, bool]] | None = None
        self._parser: httptools.HttpResponseParser | None = None
        self._head = False
        self._headed = False
        self._headers: Headers = []
        self._chunks: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            if self._headed and self._parser is not None:  # an HTTP/1.0-style answer ends with the connection
                waiter.set_result((self._response(), False))
            else:
                waiter.set_exception(ConnectionResetError("the worker closed the connection"))

    def data_received(self, data: bytes) -> None:
        if self._parser is None:  # nothing asked: a worker's stray bytes make the connection unusable
            self.close()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:  # a 502 for the caller (an OSError), not retried
            self._finish(OSError(f"the instance's answer is not valid HTTP: {exc}"))

    def roundtrip(self, request: bytes, head: bool = False) -> asyncio.Future[tuple[Response, bool]]:
        """(the answer, whether the connection may be reused)."""
        assert self.transport is not None
        self._waiter = waiter = asyncio.get_running_loop().create_future()
        self._parser, self._head, self._headed, self._headers, self._chunks = \
            httptools.HttpResponseParser(self), head, False, [], []
        self.transport.write(request)
        return waiter

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _response(self) -> Response:
        assert self._parser is not None
        body = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
        return Response(self._parser.get_status_code(), self._headers, body)

    def _finish(self, result: tuple[Response, bool] | BaseException) -> None:
        waiter, self._waiter, self._parser = self._waiter, None, None
        if waiter is None or waiter.done():
            return
        if isinstance(result, BaseException):
            self.close()
            waiter.set_exception(result)
        else:
            waiter.set_result(result)

    # httptools' callbacks, from inside feed_data

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self._headed = True
        if self._head and self._parser is not None and self._parser.get_status_code() >= 200:  # no body to wait for
            self._finish((self._response(), False))

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)

    def on_message_complete(self) -> None:
        parser = self._parser
        if parser is None:
            return
        if 100 <= parser.get_status_code() < 200:  # an interim answer (100 Continue): the real one follows
            self._headed, self._headers, self._chunks = False, [], []
            return
        self._finish((self._response(), parser.should_keep_alive()))


class HTTPClient:
    """A pool of keep-alive connections to one Unix socket (`path`) or TCP address (`host`, `port`)."""

    def __init__(self, path: str | None = None, host: str = "127.0.0.1", port: int | None = None,
                 max_idle: int = 64) -> None:
        self.path, self.host, self.port = path, host, port
        self.max_idle = max_idle
        self._idle: list[_Connection] = []

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        if self.path is not None:
            _, conn = await loop.create_unix_connection(_Connection, self.path)
        else:
            assert self.port is not None
            _, conn = await loop.create_connection(_Connection, self.host, self.port)
        return conn

    async def request(self, method: str, target: str, body: bytes = b"", headers: RequestHeaders = (),
                      timeout: float | None = None) -> Response:
        """The instance's answer; TimeoutError after `timeout` seconds (the connection is then dropped)."""
        lines = [f"{method} {target} HTTP/1.1\r\ncontent-length: {len(body)}\r\n".encode()]
        lines += [k + b": " + v + b"\r\n" for k, v in headers]
        if not any(k == b"host" for k, _ in headers):
            lines.append(b"host: worker\r\n")
        request = b"".join(lines) + b"\r\n" + body
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        # A pooled connection may have been closed by the worker meanwhile: retry once on a fresh one.
        for attempt in (0, 1):
            idle = self._idle
            while idle and idle[-1].lost:
                idle.pop()
            reused = bool(idle) and attempt == 0
            conn = idle.pop() if reused else await self._connect()
            pending = conn.roundtrip(request, head=method == "HEAD")
            # One timer for the whole answer, cheaper than asyncio.timeout's context on this path.
            timer = None if deadline is None else loop.call_at(deadline, _expire, pending)
            try:
                response, keep = await pending
            except ConnectionError:
                conn.close()
                if reused:
                    continue
                raise
            except BaseException:  # timed out or cancelled mid-request: the connection is in an unknown state
                conn.close()
                raise
            finally:
                if timer is not None:
                    timer.cancel()
            if keep and len(idle) < self.max_idle:
                idle.append(conn)
            else:
                conn.close()
            return response
        raise AssertionError("unreachable")

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()


def _expire(pending: asyncio.Future[tuple[Response, bool]]) -> None:
    if not pending.done():
        pending.set_exception(TimeoutError())
