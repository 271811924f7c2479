"""Connection limits uvicorn's httptools protocol lacks: a cap on request-head bytes (431), a deadline
for a request's head and one for its body, and a cap on open connections that, when reached, closes
the connection idle longest (as nginx reuses keep-alive connections when it runs short), so idle or
half-sent connections can't starve real clients.
"""

from __future__ import annotations

import asyncio
import resource
import uuid
from dataclasses import dataclass
from typing import Any

import msgspec
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

RESERVED_FDS = 512  # for instances' sockets, log files, the database, builds


@dataclass(frozen=True)
class Limits:
    header_bytes: int = 16 * 1024  # request line and headers; past it 431, as nginx's large_client_header_buffers
    header_timeout: float = 10.0  # from the connection (or the request's first byte) to its last header
    body_timeout: float = 30.0  # from the last header to the last byte of the body
    keepalive_timeout: float = 5.0  # an idle connection between requests (uvicorn's own timer)
    max_connections: int = 4096


def raise_fd_limit() -> int:
    """The soft limit on open files raised to the hard one; what it is now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


def connection_cap(wanted: int, fd_limit: int) -> int:
    """`wanted`, unless the open-file limit can't hold it beside what the daemon itself needs."""
    return max(16, min(wanted, fd_limit - RESERVED_FDS))


def _raw_response(status: int, phrase: str, message: str) -> bytes:
    """An answer given before any app sees the request: JSON with a request id, like every other."""
    body = msgspec.json.encode({"message": message, "field": None})
    return (f"HTTP/1.1 {status} {phrase}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
            f"x-request-id: {uuid.uuid4()}\r\nconnection: close\r\n\r\n").encode() + body


class _HeadTooLarge(Exception):
    pass


class _Pool:
    """The open connections not serving a request, oldest first (a dict keeps insertion order)."""

    def __init__(self) -> None:
        self.idle: dict[GuardedProtocol, None] = {}
        self.open = 0
        self.evicted = 0
        self.refused = 0


def protocol_class(limits: Limits) -> type[HttpToolsProtocol]:
    """uvicorn's `http` protocol with these limits (one pool per server)."""
    return type("GuardedHttp", (GuardedProtocol,), {"limits": limits, "pool": _Pool()})


class GuardedProtocol(HttpToolsProtocol):
    limits: Limits
    pool: _Pool

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_bytes = 0  # received since the request began, while its head is not complete
        self._in_head = True  # reading a request's line and headers (or waiting for its first byte)
        self._deadline: asyncio.TimerHandle | None = None
        self._too_large = False

    # -- the connection cap ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        pool = self.pool
        pool.open += 1
        if pool.open > self.limits.max_connections:
            if pool.idle:
                oldest = next(iter(pool.idle))
                del pool.idle[oldest]  # now: its connection_lost comes on a later turn of the loop
                pool.evicted += 1
                oldest.transport.close()  # connection_lost takes it out of the pool
            else:  # every connection is serving a request: this one can't be taken
                pool.refused += 1
                transport.write(_raw_response(503, "Service Unavailable",
                                              f"the daemon is at its limit of {self.limits.max_connections} open "
                                              "connections (appliance up --max-connections)"))
                transport.close()
                return
        pool.idle[self] = None
        self._arm(self.limits.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self.pool.open -= 1
        self.pool.idle.pop(self, None)
        self._disarm()
        super().connection_lost(exc)

    # -- the head: its size and its deadline ------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            if self._deadline is None:  # a request's first byte after a keep-alive wait
                self._arm(self.limits.header_timeout)
            self._head_bytes += len(data)
        super().data_received(data)
        # A head still unfinished is checked on what arrived, not on parsed headers: the parser buffers an
        # unfinished header whole before it hands it over.
        if self._in_head and self._head_bytes > self.limits.header_bytes and not self.transport.is_closing():
            self._too_large = True
            self.send_400_response("")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True

    def on_headers_complete(self) -> None:
        # The head as parsed (a body that came in the same packet is no part of it): summed once here,
        # cheaper than a call per header.
        if self._head_bytes > self.limits.header_bytes and \
                len(self.url) + sum(len(k) + len(v) + 4 for k, v in self.headers) > self.limits.header_bytes:
            self._too_large = True
            raise _HeadTooLarge  # the parser stops; uvicorn answers with `send_400_response`
        self._in_head = False
        self._head_bytes = 0
        self.pool.idle.pop(self, None)
        self._arm(self.limits.body_timeout)
        super().on_headers_complete()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request it can't parse; 431 for one whose head is too large."""
        if self._too_large:
            self._refuse(431, "Request Header Fields Too Large",
                         f"the request line and headers exceed {self.limits.header_bytes} bytes")
        else:
            self._refuse(400, "Bad Request", f"not a valid HTTP request: {msg}")

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # arms uvicorn's keep-alive timeout
        if not self.transport.is_closing():
            self._in_head = True
            self._head_bytes = 0
            self.pool.idle[self] = None

    # -- deadlines -------------------------------------------------------------------------------

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        idle = self._in_head and self._head_bytes == 0  # nothing of a request sent
        answered = not self._in_head and self.cycle is not None and self.cycle.response_started
        if idle or answered:  # nothing to say, or said already
            self.transport.close()
        else:
            what = "headers" if self._in_head else "body"
            limit = self.limits.header_timeout if self._in_head else self.limits.body_timeout
            self._refuse(408, "Request Timeout", f"the request's {what} did not arrive within {limit:g} s")

    def _refuse(self, status: int, phrase: str, message: str) -> None:
        self._disarm()
        self.transport.write(_raw_response(status, phrase, message))
        self.transport.close()
