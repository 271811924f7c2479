"""Secrets kept in the registry (endpoint keys) are sealed: AES-256-GCM under a key of the home
(`secrets.key`, 0600, beside the admin token), so a copy of the database alone reveals none.

A sealed value is text: a version prefix, then base64url of a fresh random 96-bit nonce and the
ciphertext with its tag. The value's place (endpoint and column) is authenticated with it, so a
sealed value moved to another row or column does not open.
"""

from __future__ import annotations

import base64
import binascii
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PREFIX = "aesgcm1:"
NONCE_BYTES = 12


class SealError(RuntimeError):
    """A stored value that does not open with this key."""


class Sealer:
    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError(f"the registry's secret key has {len(key)} bytes; AES-256 needs 32")
        self._aead = AESGCM(key)

    def seal(self, plaintext: str, context: str) -> str:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), context.encode())
        return PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode()

    def open(self, value: str, context: str) -> str:
        if not value.startswith(PREFIX):
            raise SealError(f"{context} is not sealed (no {PREFIX!r} prefix)")
        try:
            raw = base64.urlsafe_b64decode(value[len(PREFIX):])
            return self._aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], context.encode()).decode()
        except (InvalidTag, binascii.Error, ValueError):
            raise SealError(f"{context} does not open with this home's secrets.key: the database was written "
                            "with another one (restore that file beside it) or was changed") from None
