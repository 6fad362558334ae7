"""
Tests for L{backupremote.tls.certificates}: what the generated certificates
carry, fingerprints and private files.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
import stat

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from backupremote.protocol.errors import CONFIG_INVALID, BackupRemoteError
from backupremote.tls import (
    fingerprintOfDer,
    fingerprintOfPem,
    generateCertificateAuthority,
    generateServerCertificate,
    issueClientCertificate,
    issueServerCertificate,
    normalizeFingerprint,
    writePrivateFile,
)

# SHA-256 of the empty string.
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def load(certPem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(certPem)


def extension(cert: x509.Certificate, kind: type) -> object:
    return cert.extensions.get_extension_for_class(kind).value


def commonName(cert: x509.Certificate) -> str:
    return cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


class ServerCertificateTests(TestCase):
    """L{generateServerCertificate} makes a self-signed TLS server identity."""

    def setUp(self) -> None:
        self.keyPem, self.certPem = generateServerCertificate(
            ["backup.example.com", "10.1.2.3", "localhost", "backup.example.com"],
            days=30,
        )
        self.cert = load(self.certPem)

    def test_keyIsP256AndMatches(self) -> None:
        key = serialization.load_pem_private_key(self.keyPem, password=None)
        self.assertIsInstance(key, ec.EllipticCurvePrivateKey)
        self.assertIsInstance(key.curve, ec.SECP256R1)
        self.assertEqual(key.public_key(), self.cert.public_key())

    def test_selfSigned(self) -> None:
        self.assertEqual(self.cert.issuer, self.cert.subject)
        self.cert.verify_directly_issued_by(self.cert)

    def test_commonNameIsFirstHostname(self) -> None:
        self.assertEqual(commonName(self.cert), "backup.example.com")

    def test_subjectAlternativeNames(self) -> None:
        """
        DNS names and IP addresses, plus the loopback names, each once and in
        order.
        """
        names = extension(self.cert, x509.SubjectAlternativeName)
        self.assertEqual(
            list(names),
            [
                x509.DNSName("backup.example.com"),
                x509.IPAddress(ipaddress.ip_address("10.1.2.3")),
                x509.DNSName("localhost"),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                x509.IPAddress(ipaddress.ip_address("::1")),
            ],
        )

    def test_noHostnames(self) -> None:
        """Without names, the certificate is for loopback only."""
        cert = load(generateServerCertificate([])[1])
        self.assertEqual(commonName(cert), "localhost")
        names = extension(cert, x509.SubjectAlternativeName)
        self.assertEqual(names.get_values_for_type(x509.DNSName), ["localhost"])
        self.assertEqual(
            [str(ip) for ip in names.get_values_for_type(x509.IPAddress)],
            ["127.0.0.1", "::1"],
        )

    def test_notACertificateAuthority(self) -> None:
        constraints = extension(self.cert, x509.BasicConstraints)
        self.assertFalse(constraints.ca)

    def test_serverAuth(self) -> None:
        self.assertEqual(
            list(extension(self.cert, x509.ExtendedKeyUsage)),
            [ExtendedKeyUsageOID.SERVER_AUTH],
        )

    def test_validity(self) -> None:
        """Valid from an hour ago, for the given number of days."""
        now = datetime.datetime.now(datetime.timezone.utc)
        start = self.cert.not_valid_before_utc
        minute = datetime.timedelta(minutes=1)
        self.assertTrue(now - 61 * minute <= start <= now - 59 * minute, start)
        self.assertEqual(
            self.cert.not_valid_after_utc - start,
            datetime.timedelta(days=30, hours=1),
        )

    def test_defaultValidity(self) -> None:
        cert = load(generateServerCertificate(["h"])[1])
        lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
        self.assertEqual(lifetime, datetime.timedelta(days=825, hours=1))

    def test_longHostname(self) -> None:
        """A name longer than a common name may be still goes in the SANs."""
        longName = ".".join(["a" * 60, "b" * 60, "example.com"])
        cert = load(generateServerCertificate([longName])[1])
        self.assertEqual(commonName(cert), longName[:64])
        names = extension(cert, x509.SubjectAlternativeName)
        self.assertIn(longName, names.get_values_for_type(x509.DNSName))

    def test_freshKeys(self) -> None:
        """Two certificates never share a key or a serial number."""
        other = load(generateServerCertificate(["backup.example.com"])[1])
        self.assertNotEqual(other.public_key(), self.cert.public_key())
        self.assertNotEqual(other.serial_number, self.cert.serial_number)


class CertificateClockTests(TestCase):
    def test_validityFromTheInjectedClock(self) -> None:
        """Certificates are dated by the clock they are given."""
        clock = Clock()
        clock.advance(datetime.datetime(2031, 5, 1, tzinfo=datetime.timezone.utc).timestamp())
        _, certPem = generateServerCertificate(["db1.example.net"], days=10, clock=clock)
        cert = x509.load_pem_x509_certificate(certPem)
        self.assertEqual(cert.not_valid_after_utc,
                         datetime.datetime(2031, 5, 11, tzinfo=datetime.timezone.utc))


class AuthorityTests(TestCase):
    """A small CA issues client (and server) certificates."""

    def setUp(self) -> None:
        self.caKeyPem, self.caCertPem = generateCertificateAuthority("Test CA")
        self.ca = load(self.caCertPem)

    def test_authority(self) -> None:
        self.assertEqual(commonName(self.ca), "Test CA")
        self.assertTrue(extension(self.ca, x509.BasicConstraints).ca)
        self.assertTrue(extension(self.ca, x509.KeyUsage).key_cert_sign)
        self.ca.verify_directly_issued_by(self.ca)

    def test_clientCertificate(self) -> None:
        keyPem, certPem = issueClientCertificate(
            self.caKeyPem, self.caCertPem, "client-1"
        )
        cert = load(certPem)
        self.assertEqual(commonName(cert), "client-1")
        self.assertEqual(cert.issuer, self.ca.subject)
        cert.verify_directly_issued_by(self.ca)
        self.assertFalse(extension(cert, x509.BasicConstraints).ca)
        self.assertEqual(
            list(extension(cert, x509.ExtendedKeyUsage)),
            [ExtendedKeyUsageOID.CLIENT_AUTH],
        )
        key = serialization.load_pem_private_key(keyPem, password=None)
        self.assertEqual(key.public_key(), cert.public_key())

    def test_serverCertificate(self) -> None:
        keyPem, certPem = issueServerCertificate(
            self.caKeyPem, self.caCertPem, ["backup.example.com"]
        )
        cert = load(certPem)
        cert.verify_directly_issued_by(self.ca)
        self.assertEqual(commonName(cert), "backup.example.com")
        self.assertIn(
            "localhost",
            extension(cert, x509.SubjectAlternativeName).get_values_for_type(
                x509.DNSName
            ),
        )
        self.assertEqual(
            list(extension(cert, x509.ExtendedKeyUsage)),
            [ExtendedKeyUsageOID.SERVER_AUTH],
        )

    def test_mismatchedAuthority(self) -> None:
        """A CA key that is not the CA certificate's is refused."""
        otherKeyPem, _ = generateCertificateAuthority("Other CA")
        error = self.assertRaises(
            BackupRemoteError,
            issueClientCertificate,
            otherKeyPem,
            self.caCertPem,
            "client-1",
        )
        self.assertEqual(error.code, CONFIG_INVALID)

    def test_unreadableAuthority(self) -> None:
        error = self.assertRaises(
            BackupRemoteError, issueClientCertificate, b"junk", b"junk", "client-1"
        )
        self.assertEqual(error.code, CONFIG_INVALID)


class FingerprintTests(TestCase):
    """SHA-256 fingerprints, written C{AB:CD:...}."""

    def test_ofDer(self) -> None:
        self.assertEqual(
            fingerprintOfDer(b""),
            ":".join(EMPTY_SHA256[i : i + 2] for i in range(0, 64, 2)).upper(),
        )

    def test_format(self) -> None:
        fingerprint = fingerprintOfDer(b"anything")
        self.assertEqual(len(fingerprint), 95)
        self.assertRegex(fingerprint, r"^([0-9A-F]{2}:){31}[0-9A-F]{2}$")

    def test_ofPem(self) -> None:
        """The fingerprint of a PEM certificate is that of its DER."""
        _, certPem = generateServerCertificate(["h"])
        der = load(certPem).public_bytes(serialization.Encoding.DER)
        self.assertEqual(fingerprintOfPem(certPem), fingerprintOfDer(der))
        self.assertEqual(
            fingerprintOfPem(certPem).replace(":", "").lower(),
            hashlib.sha256(der).hexdigest(),
        )

    def test_ofPemInvalid(self) -> None:
        error = self.assertRaises(BackupRemoteError, fingerprintOfPem, b"junk")
        self.assertEqual(error.code, CONFIG_INVALID)

    def test_normalize(self) -> None:
        """Any case, with or without colons, with or without C{sha256:}."""
        canonical = fingerprintOfDer(b"")
        for text in [
            canonical,
            canonical.lower(),
            EMPTY_SHA256,
            EMPTY_SHA256.upper(),
            "sha256:" + EMPTY_SHA256,
            "SHA256:" + canonical,
            "sha256=" + canonical.lower(),
            f"  {canonical}\n",
        ]:
            self.assertEqual(normalizeFingerprint(text), canonical, text)

    def test_normalizeInvalid(self) -> None:
        """Anything but 64 hex digits is a configuration error."""
        for text in [
            "",
            "sha256:",
            EMPTY_SHA256[:-1],
            EMPTY_SHA256 + "0",
            EMPTY_SHA256[:-1] + "g",
            "md5:" + EMPTY_SHA256,
            hashlib.sha1(b"").hexdigest(),
        ]:
            error = self.assertRaises(BackupRemoteError, normalizeFingerprint, text)
            self.assertEqual(error.code, CONFIG_INVALID)
            self.assertIn("64 hex digits", error.message)


class WritePrivateFileTests(TestCase):
    """L{writePrivateFile} creates owner-only files and never overwrites."""

    def setUp(self) -> None:
        self.directory = self.mktemp()
        os.mkdir(self.directory)
        self.path = os.path.join(self.directory, "server.key")

    def test_modeAndContent(self) -> None:
        oldUmask = os.umask(0)
        self.addCleanup(os.umask, oldUmask)
        writePrivateFile(self.path, b"secret key")
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o600)
        with open(self.path, "rb") as f:
            self.assertEqual(f.read(), b"secret key")

    def test_refusesToOverwrite(self) -> None:
        writePrivateFile(self.path, b"first")
        error = self.assertRaises(
            BackupRemoteError, writePrivateFile, self.path, b"second"
        )
        self.assertEqual(error.code, CONFIG_INVALID)
        self.assertIn("refusing to overwrite", error.message)
        with open(self.path, "rb") as f:
            self.assertEqual(f.read(), b"first")

    def test_refusesSymlink(self) -> None:
        """A symbolic link in its place is not followed."""
        target = os.path.join(self.directory, "target")
        os.symlink(target, self.path)
        self.assertRaises(BackupRemoteError, writePrivateFile, self.path, b"key")
        self.assertFalse(os.path.exists(target))
