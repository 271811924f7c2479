"""An open-loop HTTP/1.1 load generator: requests leave on a fixed schedule, whatever the server
does, and each latency is measured from the request's *scheduled* send time, so a server that
stalls is charged for every request that queued behind the stall (no coordinated omission).

    python tests/benchmarks/openloop.py --url http://127.0.0.1:8000/score --rate 1000 --duration 8 \
        --body '{"data": [[5.1,3.5,1.4,0.2]]}' --header 'Authorization: Bearer KEY' [--spin]

Keep-alive connections are reused (most recently freed first); a new one is opened only when a
request is due and none is idle (up to --max-connections), so a server that closes connections after
each response (gunicorn's sync worker) pays its connects, as a real client would. Bounded: no request
is scheduled after --duration, and whatever is unanswered --drain seconds later counts as a timeout.

The event loop's timers have millisecond resolution; with --spin the scheduler polls instead of
sleeping (one core at 100%: use it only when this process has a core of its own, e.g. under taskset),
and its own lateness is reported as `send_lag` so the client's share of a latency is visible.
Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import sys
import time
from array import array
from collections import Counter, deque
from typing import Any
from urllib.parse import urlsplit

import httptools

perf = time.perf_counter


def percentile(sorted_values: Any, p: float) -> float | None:
    """Nearest-rank percentile of an ascending sequence (None when empty)."""
    n = len(sorted_values)
    if not n:
        return None
    rank = max(1, min(n, int(-(-p * n // 100))))  # ceil(p/100 * n)
    return sorted_values[rank - 1]


class _Conn(asyncio.Protocol):
    __slots__ = ("busy_since", "closed", "gen", "parser", "scheduled", "transport")

    def __init__(self, gen: OpenLoop) -> None:
        self.gen = gen
        self.transport: Any = None
        self.parser = httptools.HttpResponseParser(self)
        self.scheduled = 0.0
        self.busy_since = 0.0
        self.closed = False

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:  # uvloop's transports are not asyncio.Transport
        self.transport = transport
        self.gen.connected(self)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.gen.failed(self, "parse")

    def connection_lost(self, exc: Exception | None) -> None:
        self.gen.lost(self)

    # -- httptools callbacks ------------------------------------------------------------------

    def on_message_complete(self) -> None:
        self.gen.answered(self, self.parser.get_status_code(), self.parser.should_keep_alive())

    # -----------------------------------------------------------------------------------------

    def send(self, scheduled: float, request: bytes) -> None:
        assert self.transport is not None
        self.scheduled = scheduled
        self.busy_since = perf()
        self.parser = httptools.HttpResponseParser(self)
        self.transport.write(request)


class OpenLoop:
    def __init__(self, host: str, port: int, request: bytes, rate: float, duration: float,
                 max_connections: int = 256, drain: float = 5.0, spin: bool = False) -> None:
        self.host, self.port, self.request = host, port, request
        self.rate, self.duration, self.drain, self.spin = rate, duration, drain, spin
        self.max_connections = max_connections
        self.total = max(1, int(rate * duration))
        self.idle: list[_Conn] = []
        self.busy: set[_Conn] = set()
        self.open = 0  # connected or connecting
        self.connecting = 0
        self.pending: deque[float] = deque()  # due requests waiting for a connection
        self.latencies = array("d")
        self.lags = array("d")
        self.statuses: Counter[int] = Counter()
        self.errors: Counter[str] = Counter()
        self.connects = 0
        self.max_open = 0
        self.answered_count = 0
        self.idle_on_connect = 0
        self.done = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- connection pool ------------------------------------------------------------------------

    def dispatch(self) -> None:
        pending, idle = self.pending, self.idle
        while pending and idle:
            conn = idle.pop()
            scheduled = pending.popleft()
            self.busy.add(conn)
            conn.send(scheduled, self.request)
            self.lags.append(conn.busy_since - scheduled)
        while len(pending) > self.connecting and self.open < self.max_connections:
            self.open += 1
            self.connecting += 1
            self.connects += 1
            self.max_open = max(self.max_open, self.open)
            assert self._loop is not None
            self._loop.create_task(self._connect())

    async def _connect(self) -> None:
        assert self._loop is not None
        try:
            await self._loop.create_connection(lambda: _Conn(self), self.host, self.port)
        except OSError as exc:
            self.connecting -= 1
            self.open -= 1
            self.errors[f"connect: {type(exc).__name__}"] += 1
            if self.pending:  # the request that wanted this connection fails with it
                self.pending.popleft()
                self._count()
            self.dispatch()

    def connected(self, conn: _Conn) -> None:
        self.connecting -= 1
        if not self.pending:
            self.idle_on_connect += 1
        self.idle.append(conn)
        self.dispatch()

    def answered(self, conn: _Conn, status: int, keep_alive: bool) -> None:
        now = perf()
        self.busy.discard(conn)
        self.latencies.append(now - conn.scheduled)
        self.statuses[status] += 1
        if not 200 <= status < 300:
            self.errors[f"status {status}"] += 1
        conn.scheduled = 0.0
        if keep_alive:
            self.idle.append(conn)
        else:
            self._close(conn)
        self._count()
        self.dispatch()

    def failed(self, conn: _Conn, why: str) -> None:
        if conn.scheduled:
            self.errors[why] += 1
            conn.scheduled = 0.0
            self._count()
        self._close(conn)

    def lost(self, conn: _Conn) -> None:
        self._forget(conn)
        if conn.scheduled:  # closed by the server with a request outstanding
            self.errors["connection lost"] += 1
            conn.scheduled = 0.0
            self._count()
        self.dispatch()

    def _close(self, conn: _Conn) -> None:
        self._forget(conn)
        if conn.transport is not None:
            conn.transport.close()

    def _forget(self, conn: _Conn) -> None:
        if conn.closed:
            return
        conn.closed = True
        self.open -= 1
        self.busy.discard(conn)
        if conn in self.idle:
            self.idle.remove(conn)

    def _count(self) -> None:
        self.answered_count += 1
        if self.answered_count >= self.total:
            self.done.set()

    # -- the schedule ---------------------------------------------------------------------------

    async def run(self) -> dict[str, Any]:
        self._loop = asyncio.get_running_loop()
        interval = 1.0 / self.rate
        start = perf() + 0.05
        i = 0
        gc.collect()
        gc.disable()
        try:
            while i < self.total:
                now = perf()
                due = start + i * interval
                if due <= now:
                    while i < self.total and start + i * interval <= now:
                        self.pending.append(start + i * interval)
                        i += 1
                    self.dispatch()
                    await asyncio.sleep(0)
                elif self.spin or due - now < 0.0015:
                    await asyncio.sleep(0)  # poll I/O and come back: µs resolution at 100% of a core
                else:
                    await asyncio.sleep(due - now - 0.001)
            sent_until = perf()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.done.wait(), self.drain)
            finished = perf()
        finally:
            gc.enable()
        unanswered = self.total - self.answered_count
        if unanswered:
            self.errors["timeout"] += unanswered
        for conn in list(self.idle) + list(self.busy):
            if conn.transport is not None:
                conn.transport.close()
        lat = sorted(self.latencies)
        lags = sorted(self.lags)
        ms = 1000.0

        def pct(values: Any, p: float) -> float | None:
            v = percentile(values, p)
            return None if v is None else round(v * ms, 4)

        ok = sum(n for s, n in self.statuses.items() if 200 <= s < 300)
        elapsed = max(sent_until - start, 1e-9)
        return {
            "tool": "open-loop", "target_rate": self.rate, "scheduled": self.total,
            "duration_s": round(elapsed, 3), "drain_s": round(finished - sent_until, 3),
            "completed": len(lat), "ok": ok, "requests_per_s": round(ok / elapsed, 1),
            "latency_ms": {"p50": pct(lat, 50), "p90": pct(lat, 90), "p99": pct(lat, 99), "p99.9": pct(lat, 99.9),
                           "max": round(lat[-1] * ms, 4) if lat else None,
                           "mean": round(sum(lat) / len(lat) * ms, 4) if lat else None},
            "send_lag_ms": {"p50": pct(lags, 50), "p99": pct(lags, 99), "max": pct(lags, 100)},
            "errors": sum(self.errors.values()), "error_kinds": dict(self.errors),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "connects": self.connects, "idle_on_connect": self.idle_on_connect,
            "max_connections_open": self.max_open, "spin": self.spin,
        }


def build_request(url: str, body: bytes, headers: list[str]) -> tuple[str, int, bytes]:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or 80
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    lines = [f"POST {target} HTTP/1.1", f"Host: {host}:{port}", f"Content-Length: {len(body)}"]
    lines += headers
    return host, port, ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--rate", type=float, required=True, help="requests per second")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds of scheduled sends")
    parser.add_argument("--body", default='{"data": [[5.1,3.5,1.4,0.2]]}')
    parser.add_argument("--header", action="append", default=[], help="'Name: value'; repeatable")
    parser.add_argument("--max-connections", type=int, default=256)
    parser.add_argument("--drain", type=float, default=5.0, help="seconds to wait for the last answers")
    parser.add_argument("--spin", action="store_true", help="poll instead of sleeping between sends")
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.duration <= 0:
        parser.error("--rate and --duration must be positive")
    host, port, request = build_request(args.url, args.body.encode(), args.header)
    try:
        import uvloop
    except ImportError:  # plain asyncio works too, a little slower
        uvloop = None
    gen = OpenLoop(host, port, request, args.rate, args.duration, args.max_connections, args.drain, args.spin)
    result = uvloop.run(gen.run()) if uvloop else asyncio.run(gen.run())
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
