"""Tests for L{backupremote.license.verifier}."""

from __future__ import annotations

import base64
from datetime import timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase

from backupremote.protocol.features import REMOTE_EXECUTE, REMOTE_DOWNLOAD
from backupremote.license.token import parseToken, signLicense
from backupremote.license.verifier import LicenseVerifier
from backupremote.protocol.errors import (
    LICENSE_BAD_SIGNATURE,
    LICENSE_CLIENT_MISMATCH,
    LICENSE_EXPIRED,
    LICENSE_FEATURE_MISSING,
    LICENSE_MALFORMED,
    LICENSE_NO_TRUSTED_KEY,
    LICENSE_NOT_YET_VALID,
    BackupRemoteError,
)
from tests.license.test_token import ISSUER, START, makeLicense

TOKEN = signLicense(makeLicense(features=(REMOTE_EXECUTE,)), ISSUER)
# Denials after the signature is checked, whose log event names the licence.
SIGNED_DENIALS = {
    LICENSE_CLIENT_MISMATCH,
    LICENSE_NOT_YET_VALID,
    LICENSE_EXPIRED,
    LICENSE_FEATURE_MISSING,
}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class VerifierTests(SynchronousTestCase):
    """Every check of L{LicenseVerifier}, in order, and how denials show."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START.timestamp() + 3600)
        self.events: list[dict[str, Any]] = []
        self.denied: list[str] = []
        self.verifier = self.makeVerifier((ISSUER.public_key(),))

    def makeVerifier(self, keys: tuple[Any, ...]) -> LicenseVerifier:
        return LicenseVerifier(
            trustedKeys=keys,
            clock=self.clock,
            onDenied=self.denied.append,
            log=Logger(observer=self.events.append),
        )

    def assertDenied(
        self,
        code: str,
        token: str = TOKEN,
        clientId: str = "client-1",
        feature: str | None = None,
        verifier: LicenseVerifier | None = None,
    ) -> BackupRemoteError:
        """C{verify} denies with C{code}, logs it once and counts it once."""
        verifier = verifier or self.verifier
        error = self.assertRaises(
            BackupRemoteError, verifier.verify, token, clientId, feature
        )
        self.assertEqual(error.code, code)
        self.assertDenialObserved(code, clientId)
        return error

    def assertDenialObserved(self, code: str, clientId: str) -> None:
        self.assertEqual(self.denied, [code])
        [event] = self.events
        self.assertEqual(event["licenseCode"], code)
        self.assertEqual(event["clientId"], clientId)
        self.assertEqual("licenseId" in event, code in SIGNED_DENIALS)
        for part in TOKEN.split(".")[1:]:
            self.assertNotIn(part, repr(event))
        self.denied.clear()
        self.events.clear()

    def test_accepted(self) -> None:
        license = self.verifier.verify(TOKEN, "client-1", REMOTE_EXECUTE)
        self.assertEqual(license, parseToken(TOKEN)[0])
        self.assertEqual(self.verifier.verify(TOKEN, "client-1", None), license)
        self.assertEqual((self.events, self.denied), ([], []))

    def test_anyTrustedKey(self) -> None:
        other = Ed25519PrivateKey.generate().public_key()
        verifier = self.makeVerifier((other, ISSUER.public_key()))
        self.assertEqual(verifier.verify(TOKEN, "client-1").licenseId, "lic-1")

    def test_noTrustedKey(self) -> None:
        """No trusted key denies before anything else, even a malformed token."""
        verifier = self.makeVerifier(())
        self.assertDenied(LICENSE_NO_TRUSTED_KEY, verifier=verifier)
        self.assertDenied(LICENSE_NO_TRUSTED_KEY, "junk", verifier=verifier)

    def test_malformed(self) -> None:
        self.assertDenied(LICENSE_MALFORMED, TOKEN[:-10])
        self.assertDenied(LICENSE_MALFORMED, "")

    def test_untrustedSigner(self) -> None:
        token = signLicense(makeLicense(), Ed25519PrivateKey.generate())
        self.assertDenied(LICENSE_BAD_SIGNATURE, token)

    def test_payloadAltered(self) -> None:
        prefix, _, signature = TOKEN.split(".")
        payload = parseToken(TOKEN)[1]
        altered = payload.replace(b"Example", b"Exampla")
        self.assertEqual(len(altered), len(payload))
        self.assertDenied(LICENSE_BAD_SIGNATURE, f"{prefix}.{b64(altered)}.{signature}")

    def test_signatureAltered(self) -> None:
        prefix, payload, _ = TOKEN.split(".")
        signature = bytearray(parseToken(TOKEN)[2])
        signature[10] ^= 1
        self.assertDenied(
            LICENSE_BAD_SIGNATURE, f"{prefix}.{payload}.{b64(bytes(signature))}"
        )

    def test_clientMismatch(self) -> None:
        error = self.assertDenied(LICENSE_CLIENT_MISMATCH, clientId="client-2")
        self.assertIn("client-2", error.message)

    def test_notYetValid(self) -> None:
        token = signLicense(makeLicense(notBefore=START + timedelta(days=1)), ISSUER)
        error = self.assertDenied(LICENSE_NOT_YET_VALID, token)
        self.assertIn("2030-01-02T00:00:00Z", error.message)

    def test_validFromNotBefore(self) -> None:
        token = signLicense(makeLicense(notBefore=START + timedelta(hours=2)), ISSUER)
        self.clock.advance(3600)
        self.assertEqual(self.verifier.verify(token, "client-1").licenseId, "lic-1")

    def test_expired(self) -> None:
        token = signLicense(makeLicense(expiresAt=START + timedelta(hours=1)), ISSUER)
        error = self.assertDenied(LICENSE_EXPIRED, token)
        self.assertIn("2030-01-01T01:00:00Z", error.message)

    def test_expiresMidSession(self) -> None:
        """A verified licence that expires between two checks is denied."""
        expiresAt = START + timedelta(hours=2)
        license = self.verifier.verify(
            signLicense(makeLicense(expiresAt=expiresAt), ISSUER), "client-1"
        )
        self.assertEqual(self.verifier.check(license, "client-1", None), license)
        self.clock.advance(3599)
        self.assertEqual(self.verifier.check(license, "client-1"), license)
        self.clock.advance(1)
        error = self.assertRaises(
            BackupRemoteError, self.verifier.check, license, "client-1"
        )
        self.assertEqual(error.code, LICENSE_EXPIRED)
        self.assertDenialObserved(LICENSE_EXPIRED, "client-1")

    def test_featureMissing(self) -> None:
        error = self.assertDenied(LICENSE_FEATURE_MISSING, feature=REMOTE_DOWNLOAD)
        self.assertIn(REMOTE_DOWNLOAD, error.message)
        self.assertEqual(error.details, {"feature": REMOTE_DOWNLOAD})

    def test_checkRechecksClientAndFeature(self) -> None:
        license = parseToken(TOKEN)[0]
        for code, clientId, feature in [
            (LICENSE_CLIENT_MISMATCH, "client-2", None),
            (LICENSE_FEATURE_MISSING, "client-1", REMOTE_DOWNLOAD),
        ]:
            error = self.assertRaises(
                BackupRemoteError, self.verifier.check, license, clientId, feature
            )
            self.assertEqual(error.code, code)
            self.assertDenialObserved(code, clientId)

    def test_logNamesLicenseOnceKnown(self) -> None:
        self.assertDenied(LICENSE_MALFORMED, "brl1.x.y")
        self.assertRaises(
            BackupRemoteError, self.verifier.verify, TOKEN, "client-2", None
        )
        [event] = self.events
        self.assertEqual(event["licenseId"], "lic-1")
        self.assertEqual(event["log_level"].name, "warn")

    def test_withoutCallback(self) -> None:
        log = Logger(observer=self.events.append)
        verifier = LicenseVerifier((), self.clock, log=log)
        error = self.assertRaises(BackupRemoteError, verifier.verify, TOKEN, "c", None)
        self.assertEqual(error.code, LICENSE_NO_TRUSTED_KEY)
        self.assertEqual(len(self.events), 1)


def mutate(draw: st.DrawFn, data: bytes) -> bytes:
    """C{data} with a few bytes replaced, inserted or deleted."""
    result = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["replace", "insert", "delete"]))
        index = draw(st.integers(0, len(result)))
        byte = draw(st.integers(0, 255))
        if op == "insert":
            result.insert(index, byte)
        elif index < len(result):
            if op == "replace":
                result[index] = byte
            else:
                del result[index]
    return bytes(result)


@st.composite
def mutatedTokens(draw: st.DrawFn) -> str:
    """C{TOKEN} mutated as text, or with its payload or signature bytes mutated."""
    if draw(st.booleans()):
        return mutate(draw, TOKEN.encode("ascii")).decode("latin-1")
    _, payload, signature = parseToken(TOKEN)
    if draw(st.booleans()):
        payload = mutate(draw, payload)
    else:
        signature = mutate(draw, signature)
    return f"brl1.{b64(payload)}.{b64(signature)}"


class FuzzTests(SynchronousTestCase):
    """Mutated tokens are refused with the right code and nothing else."""

    @given(mutatedTokens())
    def test_mutatedToken(self, token: str) -> None:
        clock = Clock()
        clock.advance(START.timestamp() + 3600)
        verifier = LicenseVerifier(
            (ISSUER.public_key(),), clock, log=Logger(observer=lambda event: None)
        )
        try:
            license = verifier.verify(token, "client-1", None)
        except BackupRemoteError as error:
            if error.code == LICENSE_MALFORMED:
                parseError = self.assertRaises(BackupRemoteError, parseToken, token)
                self.assertEqual(parseError.code, LICENSE_MALFORMED)
            else:
                self.assertEqual(error.code, LICENSE_BAD_SIGNATURE)
                parseToken(token)
        else:
            self.assertEqual(token.strip(), TOKEN)
            self.assertEqual(license, parseToken(TOKEN)[0])
