"""Tests for L{backupremote.license.token}."""

from __future__ import annotations

import base64
import json
import os
import stat
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from backupremote.protocol.features import ALL_FEATURES, REMOTE_EXECUTE
from backupremote.license.token import (
    MAX_TOKEN_LENGTH,
    License,
    generateIssuerKeyPair,
    loadIssuerKey,
    loadTrustedKey,
    parseToken,
    signLicense,
)
from backupremote.protocol.errors import (
    CONFIG_INVALID,
    LICENSE_MALFORMED,
    BackupRemoteError,
)

START = datetime(2030, 1, 1, tzinfo=timezone.utc)
ISSUER = Ed25519PrivateKey.generate()


def makeLicense(
    clientId: str = "client-1",
    features: tuple[str, ...] = ALL_FEATURES,
    notBefore: datetime = START,
    expiresAt: datetime = START + timedelta(days=30),
) -> License:
    return License(
        licenseId="lic-1",
        licensee="Example Ltd",
        clientId=clientId,
        features=features,
        notBefore=notBefore,
        expiresAt=expiresAt,
    )


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def tokenFromPayload(payload: bytes, key: Ed25519PrivateKey = ISSUER) -> str:
    """A correctly signed token around arbitrary payload bytes."""
    return f"brl1.{b64(payload)}.{b64(key.sign(payload))}"


def validBody() -> dict[str, object]:
    return {
        "licenseId": "lic-1",
        "licensee": "Example Ltd",
        "clientId": "client-1",
        "features": [REMOTE_EXECUTE],
        "notBefore": "2030-01-01T00:00:00Z",
        "expiresAt": "2030-02-01T00:00:00Z",
    }


def bodyToken(body: object) -> str:
    return tokenFromPayload(json.dumps(body).encode("utf-8"))


class TokenTests(SynchronousTestCase):
    """Signing and reading tokens."""

    def assertMalformed(self, token: object) -> BackupRemoteError:
        error = self.assertRaises(BackupRemoteError, parseToken, token)
        self.assertEqual(error.code, LICENSE_MALFORMED)
        return error

    def test_roundTrip(self) -> None:
        license = makeLicense()
        token = signLicense(license, ISSUER)
        parsed, payload, signature = parseToken(token)
        self.assertEqual(parsed, license)
        ISSUER.public_key().verify(signature, payload)

    def test_roundTripMicroseconds(self) -> None:
        license = makeLicense(expiresAt=START + timedelta(microseconds=5))
        self.assertEqual(parseToken(signLicense(license, ISSUER))[0], license)

    def test_payloadFormat(self) -> None:
        """The payload is compact JSON, sorted keys, dates in UTC ending in Z."""
        paris = timezone(timedelta(hours=1))
        license = makeLicense(
            features=(REMOTE_EXECUTE,),
            notBefore=datetime(2030, 1, 1, 1, 0, tzinfo=paris),
        )
        self.assertEqual(license.notBefore, START)
        payload = parseToken(signLicense(license, ISSUER))[1]
        self.assertEqual(
            payload,
            b'{"clientId":"client-1","expiresAt":"2030-01-31T00:00:00Z",'
            b'"features":["remote.execute"],"licenseId":"lic-1",'
            b'"licensee":"Example Ltd","notBefore":"2030-01-01T00:00:00Z"}',
        )

    def test_naiveDatesRefused(self) -> None:
        self.assertRaises(ValueError, makeLicense, notBefore=datetime(2030, 1, 1))

    def test_whitespaceTrimmed(self) -> None:
        token = signLicense(makeLicense(), ISSUER)
        self.assertEqual(parseToken(f"\n  {token}\r\n")[0], makeLicense())

    def test_wrongPrefix(self) -> None:
        token = signLicense(makeLicense(), ISSUER)
        self.assertMalformed("brl2" + token[4:])
        self.assertMalformed(token[5:])

    def test_wrongPartCount(self) -> None:
        token = signLicense(makeLicense(), ISSUER)
        self.assertMalformed(token + ".AAAA")
        self.assertMalformed(token.rsplit(".", 1)[0])

    def test_badBase64(self) -> None:
        prefix, payload, signature = signLicense(makeLicense(), ISSUER).split(".")
        self.assertMalformed(f"{prefix}.{payload}!.{signature}")
        self.assertMalformed(f"{prefix}.{payload}==.{signature}")
        self.assertMalformed(f"{prefix}.{payload}.{signature[:-1]}")
        self.assertMalformed(f"{prefix}.{payload}.{signature}+")

    def test_truncated(self) -> None:
        token = signLicense(makeLicense(), ISSUER)
        for length in (0, 4, 5, 20, len(token) // 2, len(token) - 1):
            self.assertMalformed(token[:length])

    def test_notText(self) -> None:
        self.assertMalformed(None)
        self.assertMalformed(signLicense(makeLicense(), ISSUER).encode("ascii"))

    def test_tooLong(self) -> None:
        self.assertMalformed("brl1." + "A" * MAX_TOKEN_LENGTH)
        license = makeLicense(features=("x" * MAX_TOKEN_LENGTH,))
        error = self.assertRaises(BackupRemoteError, signLicense, license, ISSUER)
        self.assertEqual(error.code, CONFIG_INVALID)

    def test_badJson(self) -> None:
        self.assertMalformed(tokenFromPayload(b"{not json"))
        self.assertMalformed(tokenFromPayload(b"\xff\xfe"))
        self.assertMalformed(tokenFromPayload(b"[" * 5000))
        self.assertMalformed(bodyToken([validBody()]))

    def test_duplicateKey(self) -> None:
        payload = json.dumps(validBody()).encode("ascii")
        self.assertMalformed(tokenFromPayload(payload[:-1] + b',"clientId":"x"}'))

    def test_missingOrExtraKey(self) -> None:
        for key in validBody():
            body = validBody()
            del body[key]
            self.assertMalformed(bodyToken(body))
        self.assertMalformed(bodyToken({**validBody(), "admin": True}))

    def test_mistypedKey(self) -> None:
        for key, value in [
            ("licenseId", 1),
            ("licensee", None),
            ("clientId", ["client-1"]),
            ("features", "remote.execute"),
            ("features", [1]),
            ("notBefore", 1893456000),
        ]:
            self.assertMalformed(bodyToken({**validBody(), key: value}))

    def test_badDates(self) -> None:
        for value in [
            "2030-01-01T00:00:00",
            "2030-01-01T00:00:00+00:00",
            "2030-01-01T01:00:00+01:00",
            "2030-01-01Z",
            "2030-13-01T00:00:00Z",
            "2030-01-01T00:00:00.5Z",
        ]:
            self.assertMalformed(bodyToken({**validBody(), "expiresAt": value}))

    def test_errorNeverEchoesToken(self) -> None:
        token = bodyToken({**validBody(), "licensee": "s3cr3t"})
        error = self.assertMalformed(token.replace("eyJ", "eyK", 1))
        self.assertNotIn("s3cr3t", str(error))

    @given(st.text() | st.text().map(lambda text: "brl1." + text))
    def test_arbitraryText(self, text: str) -> None:
        self.assertMalformed(text)


class KeyFileTests(SynchronousTestCase):
    """Writing and loading issuer key files."""

    def setUp(self) -> None:
        self.directory = FilePath(self.mktemp())

    def test_keygenModes(self) -> None:
        oldMask = os.umask(0)
        self.addCleanup(os.umask, oldMask)
        keyPath, pubPath = generateIssuerKeyPair(self.directory.path)
        self.assertEqual(keyPath, self.directory.child("issuer.key"))
        self.assertEqual(pubPath, self.directory.child("issuer.pub"))
        self.assertEqual(stat.S_IMODE(os.stat(keyPath.path).st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(os.stat(pubPath.path).st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(os.stat(self.directory.path).st_mode), 0o700)
        self.assertTrue(keyPath.getContent().startswith(b"-----BEGIN PRIVATE KEY-----"))
        self.assertTrue(pubPath.getContent().startswith(b"-----BEGIN PUBLIC KEY-----"))

    def test_keygenStrictUmask(self) -> None:
        oldMask = os.umask(0o777)
        self.addCleanup(os.umask, oldMask)
        self.directory.makedirs()
        keyPath, pubPath = generateIssuerKeyPair(self.directory)
        self.assertEqual(stat.S_IMODE(os.stat(keyPath.path).st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(os.stat(pubPath.path).st_mode), 0o600)

    def test_keysMatch(self) -> None:
        keyPath, pubPath = generateIssuerKeyPair(self.directory)
        token = signLicense(makeLicense(), loadIssuerKey(keyPath))
        _, payload, signature = parseToken(token)
        loadTrustedKey(pubPath.path).verify(signature, payload)

    def test_refuseOverwrite(self) -> None:
        keyPath, pubPath = generateIssuerKeyPair(self.directory)
        before = (keyPath.getContent(), pubPath.getContent())
        error = self.assertRaises(
            BackupRemoteError, generateIssuerKeyPair, self.directory
        )
        self.assertEqual(error.code, CONFIG_INVALID)
        self.assertIn("issuer.key", error.message)
        self.assertEqual((keyPath.getContent(), pubPath.getContent()), before)

    def test_directoryIsAFile(self) -> None:
        self.directory.setContent(b"")
        error = self.assertRaises(
            BackupRemoteError, generateIssuerKeyPair, self.directory
        )
        self.assertEqual(error.code, CONFIG_INVALID)

    def test_refuseOverwritePublicKey(self) -> None:
        self.directory.makedirs()
        self.directory.child("issuer.pub").setContent(b"keep me")
        error = self.assertRaises(
            BackupRemoteError, generateIssuerKeyPair, self.directory
        )
        self.assertEqual(error.code, CONFIG_INVALID)
        self.assertFalse(self.directory.child("issuer.key").exists())
        self.assertEqual(self.directory.child("issuer.pub").getContent(), b"keep me")

    def assertLoadFails(
        self, loader: Callable[[str], object], path: FilePath[str]
    ) -> None:
        error = self.assertRaises(BackupRemoteError, loader, path.path)
        self.assertEqual(error.code, CONFIG_INVALID)
        self.assertIn(path.basename(), error.message)
        self.assertNotIn(path.parent().path, error.message)

    def test_loadMissing(self) -> None:
        missing = self.directory.child("absent.pem")
        self.assertLoadFails(loadIssuerKey, missing)
        self.assertLoadFails(loadTrustedKey, missing)

    def test_loadGarbage(self) -> None:
        self.directory.makedirs()
        garbage = self.directory.child("garbage.pem")
        garbage.setContent(b"-----BEGIN PRIVATE KEY-----\nnope\n")
        self.assertLoadFails(loadIssuerKey, garbage)
        self.assertLoadFails(loadTrustedKey, garbage)

    def test_loadWrongHalf(self) -> None:
        keyPath, pubPath = generateIssuerKeyPair(self.directory)
        self.assertLoadFails(loadIssuerKey, pubPath)
        self.assertLoadFails(loadTrustedKey, keyPath)

    def test_loadNotEd25519(self) -> None:
        self.directory.makedirs()
        key = ec.generate_private_key(ec.SECP256R1())
        private = self.directory.child("ec.key")
        private.setContent(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        public = self.directory.child("ec.pub")
        public.setContent(
            key.public_key().public_bytes(
                serialization.Encoding.PEM,
                serialization.PublicFormat.SubjectPublicKeyInfo,
            )
        )
        self.assertLoadFails(loadIssuerKey, private)
        self.assertLoadFails(loadTrustedKey, public)

    def test_loadEncrypted(self) -> None:
        self.directory.makedirs()
        encrypted = self.directory.child("enc.key")
        encrypted.setContent(
            Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(b"pass"),
            )
        )
        self.assertLoadFails(loadIssuerKey, encrypted)
