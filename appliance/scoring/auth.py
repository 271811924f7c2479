"""The endpoint's keys, checked by the worker itself when it runs without the appliance's router in front
(an exported image on Kubernetes): APPLIANCE_ENDPOINT_KEYS (comma or space separated) and/or
APPLIANCE_ENDPOINT_KEYS_FILE (a file holding one key, or a folder, e.g. a mounted Secret, whose files
each hold one). Set either and every route but the health checks needs `Authorization: Bearer <key>`."""

from __future__ import annotations

import hmac
import os
import re
from collections.abc import Mapping
from pathlib import Path

OPEN = frozenset({"/", "/v2/health/live", "/v2/health/ready"})  # probes: no key


class NoKeys(Exception):
    """Key auth was asked for, but no key was found: the worker refuses to start (fails closed)."""


def load(environ: Mapping[str, str] = os.environ) -> tuple[bytes, ...] | None:
    """The keys, or None when key auth is off (neither variable set)."""
    inline = environ.get("APPLIANCE_ENDPOINT_KEYS")
    path = environ.get("APPLIANCE_ENDPOINT_KEYS_FILE")
    if inline is None and path is None:
        return None
    keys = [k for k in re.split(r"[\s,]+", inline or "") if k]
    if path:
        where = Path(path)
        try:
            # A mounted Secret's folder also holds `..data` links: hidden names are skipped.
            files = sorted(f for f in where.iterdir() if not f.name.startswith(".") and f.is_file()) \
                if where.is_dir() else [where]
            keys += [f.read_text(encoding="utf-8").strip() for f in files]
        except OSError as exc:
            raise NoKeys(f"APPLIANCE_ENDPOINT_KEYS_FILE={path}: {exc.strerror or exc}") from None
    found = tuple(k.encode() for k in keys if k)
    if not found:
        raise NoKeys("APPLIANCE_ENDPOINT_KEYS / APPLIANCE_ENDPOINT_KEYS_FILE is set but holds no key")
    return found


def is_open(method: str, path: str) -> bool:
    return method in ("GET", "HEAD") and (path in OPEN or (path.startswith("/v2/models/") and path.endswith("/ready")))


def allowed(keys: tuple[bytes, ...], authorization: bytes | None) -> bool:
    """`Bearer <key>` for one of the keys; every key compared in constant time."""
    if not authorization or authorization[:7].lower() != b"bearer ":
        return False
    given = authorization[7:].strip()
    ok = False
    for key in keys:
        ok |= hmac.compare_digest(given, key)
    return ok
