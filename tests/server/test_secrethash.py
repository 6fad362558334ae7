"""Stored client secrets: the current salted HMAC, and scrypt hashes stored before it."""

from __future__ import annotations

import base64
import hashlib
import os

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from backupremote.server.state.secrethash import (
    SCHEME,
    generateSecret,
    hashSecret,
    verifySecret,
)


def legacyScryptHash(secret: str) -> str:
    """The form servers stored before the HMAC (N=2^14, r=8, p=1, 16-byte salt)."""
    salt = os.urandom(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, n=2**14, r=8, p=1, dklen=32)
    return (f"scrypt${2**14}$8$1${base64.b64encode(salt).decode()}$"
            f"{base64.b64encode(digest).decode()}")


class SecretHashTests(SynchronousTestCase):
    def test_roundTrip(self) -> None:
        secret = generateSecret()
        stored = hashSecret(secret)
        self.assertTrue(stored.startswith(SCHEME + "$"))
        self.assertNotIn(secret, stored)
        self.assertTrue(verifySecret(stored, secret))
        self.assertFalse(verifySecret(stored, generateSecret()))
        self.assertFalse(verifySecret(stored, secret[:-1]))

    def test_saltedEachTime(self) -> None:
        secret = generateSecret()
        self.assertNotEqual(hashSecret(secret), hashSecret(secret))

    def test_unknownClientNeverMatches(self) -> None:
        """No stored hash (unknown client): false, whatever the secret."""
        self.assertFalse(verifySecret(None, generateSecret()))
        self.assertFalse(verifySecret(None, ""))

    def test_scryptHashesStillVerify(self) -> None:
        secret = generateSecret()
        stored = legacyScryptHash(secret)
        self.assertTrue(verifySecret(stored, secret))
        self.assertFalse(verifySecret(stored, generateSecret()))

    @given(st.text(max_size=200))
    def test_malformedStoredIsFalse(self, stored: str) -> None:
        """Anything stored that is not a hash of ours refuses, never raises."""
        self.assertFalse(verifySecret(stored, "secret"))
        self.assertFalse(verifySecret(f"{SCHEME}${stored}", "secret"))
        self.assertFalse(verifySecret(f"scrypt${stored}", "secret"))
