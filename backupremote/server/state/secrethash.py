"""
Client secrets: generated once, stored only as a salted hash.

Every secret is 256 random bits made by L{generateSecret}, so a fast salted
hash protects it as well as a slow one (nobody can try 2^256 candidates):
the server keeps C{hmac-sha256$salt$hash} and compares in constant time.
A slow password hash would only cost memory and time at each C{auth}:
scrypt, used before, kept 16 MiB per worker thread and let an
unauthenticated peer make the server spend 50 ms per attempt. Hashes
stored by then (C{scrypt$n$r$p$salt$hash}) still verify.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets

SCHEME = "hmac-sha256"
_SALT_BYTES = 16
_SCRYPT_LENGTH = 32


def generateSecret() -> str:
    """A new client secret: 256 random bits, URL-safe text."""
    return secrets.token_urlsafe(32)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _keyed(secret: str, salt: bytes) -> bytes:
    return hmac.new(salt, secret.encode("utf-8"), hashlib.sha256).digest()


def hashSecret(secret: str) -> str:
    """The stored form of C{secret} (one made by L{generateSecret}): a fresh salt and its hash."""
    salt = os.urandom(_SALT_BYTES)
    return f"{SCHEME}${_b64(salt)}${_b64(_keyed(secret, salt))}"


#: Verified against when the client is unknown, so that an unknown client
#: costs the same time as a wrong secret and reveals nothing.
DECOY_HASH = hashSecret(generateSecret())


def _expectedAndActual(stored: str, secret: str) -> tuple[bytes, bytes] | None:
    scheme, _, rest = stored.partition("$")
    if scheme == SCHEME:
        salt, digest = rest.split("$")
        return base64.b64decode(digest), _keyed(secret, base64.b64decode(salt))
    if scheme == "scrypt":
        n, r, p, salt, digest = rest.split("$")
        actual = hashlib.scrypt(secret.encode("utf-8"), salt=base64.b64decode(salt),
                                n=int(n), r=int(r), p=int(p), maxmem=256 * 1024 * 1024,
                                dklen=_SCRYPT_LENGTH)
        return base64.b64decode(digest), actual
    return None


def verifySecret(stored: str | None, secret: str) -> bool:
    """Whether C{secret} matches C{stored}; C{None} means an unknown client."""
    known = stored is not None
    try:
        pair = _expectedAndActual(stored or DECOY_HASH, secret)
    except (ValueError, TypeError):
        return False
    if pair is None:
        return False
    expected, actual = pair
    return hmac.compare_digest(expected, actual) and known
