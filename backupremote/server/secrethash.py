"""
Client secrets: generated once, stored only as a salted scrypt hash.

The server never keeps a secret itself; it keeps C{scrypt$n$r$p$salt$hash}
and compares in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets

_N, _R, _P = 2**14, 8, 1
_LENGTH = 32


def generateSecret() -> str:
    """A new client secret: 256 random bits, URL-safe text."""
    return secrets.token_urlsafe(32)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _scrypt(secret: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        secret.encode("utf-8"), salt=salt, n=n, r=r, p=p,
        maxmem=256 * 1024 * 1024, dklen=_LENGTH,
    )


def hashSecret(secret: str) -> str:
    """The stored form of C{secret}: a fresh salt and its scrypt hash."""
    salt = os.urandom(16)
    digest = _scrypt(secret, salt, _N, _R, _P)
    return f"scrypt${_N}${_R}${_P}${_b64(salt)}${_b64(digest)}"


#: Verified against when the client is unknown, so that an unknown client
#: costs the same time as a wrong secret and reveals nothing.
DECOY_HASH = hashSecret(generateSecret())


def verifySecret(stored: str | None, secret: str) -> bool:
    """Whether C{secret} matches C{stored}; C{None} means an unknown client."""
    known = stored is not None
    try:
        scheme, n, r, p, salt, digest = (stored or DECOY_HASH).split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = _scrypt(secret, base64.b64decode(salt), int(n), int(r), int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(expected, actual) and known
