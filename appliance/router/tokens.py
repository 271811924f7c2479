"""aml_token auth: short-lived bearer tokens, HMAC-signed by a secret of the daemon's home.

A token names its endpoint, the endpoint's id and its expiry, so one endpoint's token never opens
another, nor one re-created under the same name after a delete (it has a new id), and nothing has to
be stored to check it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

PREFIX = b"apl2"  # apl1 tokens had no endpoint id: refused as invalid


def _sign(secret: bytes, body: bytes) -> bytes:
    return base64.urlsafe_b64encode(hmac.new(secret, body, hashlib.sha256).digest()).rstrip(b"=")


def issue(secret: bytes, endpoint: str, endpoint_id: str, ttl_seconds: int,
          now: float | None = None) -> tuple[str, int]:
    """(token, expiry as Unix seconds)."""
    if not endpoint_id.isalnum():  # hex: it goes into the token as it is
        raise ValueError(f"endpoint id {endpoint_id!r} is not alphanumeric")
    expiry = int((now if now is not None else time.time()) + ttl_seconds)
    body = b".".join([PREFIX, base64.urlsafe_b64encode(endpoint.encode()).rstrip(b"="), endpoint_id.encode(),
                      str(expiry).encode()])
    return (body + b"." + _sign(secret, body)).decode(), expiry


def verify(secret: bytes, endpoint: str, endpoint_id: str, token: bytes, now: float | None = None) -> str | None:
    """None when the token is valid for `endpoint` (whose id is `endpoint_id`) now; otherwise why not
    (for the 401 message)."""
    body, _, signature = token.rpartition(b".")
    parts = body.split(b".")
    if len(parts) != 4 or parts[0] != PREFIX or not hmac.compare_digest(signature, _sign(secret, body)):
        return "invalid token"
    name = base64.urlsafe_b64decode(parts[1] + b"=" * (-len(parts[1]) % 4)).decode(errors="replace")
    if name != endpoint:
        return "the token was issued for another endpoint"
    if not hmac.compare_digest(parts[2], endpoint_id.encode()):
        return ("the token was issued for an endpoint of this name that has been deleted since; get a new one "
                "with `appliance endpoint get-token`")
    if not parts[3].isdigit() or int(parts[3]) <= (now if now is not None else time.time()):
        return "the token has expired; get a new one with `appliance endpoint get-token`"
    return None
