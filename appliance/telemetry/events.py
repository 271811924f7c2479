"""Request-log events: what the data plane records for every request, and the rows they become.

A row is a plain tuple in `FIELDS` order, not a NamedTuple: CPython stops tracking a tuple of
atoms after its first collection, while it traverses every waiting NamedTuple row on every one
(measured: about 3 µs a request at 10k req/s, with a second's rows waiting for the writer).

A request whose copy was mirrored is recorded once, after the copy: its live row, then the
`MIRROR_FIELDS` of the copy. The writer thread turns that event into the two rows (`rows`), so the
event loop builds and queues one tuple a request, not two, and the copy's row shares the live
row's time, id, endpoint, size in and key. A body digest is the CRC-32 of the body: it only tells a
pair of answers apart.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

FIELDS = (
    "at",  # Unix time the request arrived (s)
    "request_id",
    "endpoint",
    "deployment",
    "instance",  # "" when no instance was reached (401, 404, 429 ...)
    "mirrored",
    "status",
    "latency_ms",  # arrival to response ready to send (live) or copy sent to answer received (mirror)
    "bytes_in",
    "bytes_out",
    "key_id",  # "primary", "secondary", "token" or "" — never the secret itself
    "body_digest",  # CRC-32 of the response body, None unless the request was mirrored
)
MIRROR_FIELDS = ("live_crc", "deployment", "instance", "status", "latency_ms", "bytes_out", "crc")
RequestRow = tuple[float, str, str, str, str, bool, int, float, int, int, str, int | None]
RequestEvent = tuple[Any, ...]
"""A `RequestRow`; or, for a mirrored request, its live row followed by the copy's `MIRROR_FIELDS`."""

_WIDTH = len(FIELDS)


def rows(events: Iterable[RequestEvent]) -> list[RequestRow]:
    """Rows in the order recorded, each mirrored copy's right after its live row."""
    out: list[RequestRow] = []
    for e in events:
        if len(e) == _WIDTH:
            out.append(e)  # type: ignore[arg-type]
            continue
        at, request_id, endpoint, deployment, instance, _, status, latency, size_in, size_out, key, _ = e[:_WIDTH]
        live_crc, m_deployment, m_instance, m_status, m_latency, m_size_out, m_crc = e[_WIDTH:]
        out.append((at, request_id, endpoint, deployment, instance, False, status, latency, size_in, size_out,
                    key, live_crc))
        out.append((at, request_id, endpoint, m_deployment, m_instance, True, m_status, m_latency, size_in,
                    m_size_out, key, m_crc))
    return out
