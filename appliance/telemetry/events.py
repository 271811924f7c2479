"""One request-log row: what the data plane records for every live and every mirrored request.

A row is a plain tuple in `FIELDS` order, not a NamedTuple: CPython stops tracking a tuple of
atoms after its first collection, while it traverses every waiting NamedTuple row on every one
(measured: about 3 µs a request at 10k req/s, with a second's rows waiting for the writer).
"""

from __future__ import annotations

FIELDS = (
    "at",  # Unix time the request arrived (s)
    "request_id",
    "endpoint",
    "deployment",
    "instance",  # "" when no instance was reached (401, 404, 429 ...)
    "mirrored",
    "status",
    "latency_ms",  # arrival to response ready to send (live) or response received (mirror)
    "bytes_in",
    "bytes_out",
    "key_id",  # "primary", "secondary", "token" or "" — never the secret itself
    "body_digest",  # short hash of the response body: live and mirror answers are compared by it
)
RequestEvent = tuple[float, str, str, str, str, bool, int, float, int, int, str, str]
