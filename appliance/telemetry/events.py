"""One request-log row: what the data plane records for every live and every mirrored request."""

from __future__ import annotations

from typing import NamedTuple


class RequestEvent(NamedTuple):
    at: float  # Unix time the request arrived (s)
    request_id: str
    endpoint: str
    deployment: str
    instance: str  # "" when no instance was reached (401, 404, 429 ...)
    mirrored: bool
    status: int
    latency_ms: float  # arrival to response sent (live) or response received (mirror)
    bytes_in: int
    bytes_out: int
    key_id: str  # "primary", "secondary", "token" or "" — never the secret itself
    body_digest: str  # short hash of the response body: live and mirror answers are compared by it
