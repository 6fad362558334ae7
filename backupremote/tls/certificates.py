"""
Keys, certificates and fingerprints for the TLS between client and server.

Keys are ECDSA P-256 and travel as unencrypted PKCS#8 PEM, so they must be
written with L{writePrivateFile}.  Fingerprints are the SHA-256 of a
certificate's DER encoding, written as uppercase hex pairs joined by colons
(C{AB:CD:...}), the form C{backupremote server init} prints.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import re

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from twisted.internet.interfaces import IReactorTime

from backupremote.protocol.errors import CONFIG_INVALID, BackupRemoteError

#: Names every server certificate carries, so that loopback always works.
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")

_BACKDATE = datetime.timedelta(hours=1)


def _newKey() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _keyPem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _certPem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _name(commonName: str) -> x509.Name:
    # X.509 caps a common name at 64 characters; the SANs carry full names.
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, commonName[:64])])


def _generalName(hostname: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(hostname))
    except ValueError:
        return x509.DNSName(hostname)


def serverNames(hostnames: list[str]) -> list[str]:
    """The names a server certificate carries: C{hostnames} plus loopback."""
    names: list[str] = []
    for name in [*hostnames, *LOOPBACK_NAMES]:
        name = name.strip()
        if name and name not in names:
            names.append(name)
    return names


def _now(clock: IReactorTime | None) -> datetime.datetime:
    """The time on C{clock} (the system's clock when C{None})."""
    if clock is None:
        return datetime.datetime.now(datetime.timezone.utc)
    return datetime.datetime.fromtimestamp(clock.seconds(), datetime.timezone.utc)


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    publicKey: ec.EllipticCurvePublicKey,
    issuerKey: ec.EllipticCurvePrivateKey,
    days: int,
    clock: IReactorTime | None,
) -> x509.CertificateBuilder:
    now = _now(clock)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(publicKey)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(publicKey), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(
                issuerKey.public_key()
            ),
            critical=False,
        )
    )


def _leafBuilder(
    builder: x509.CertificateBuilder, usage: x509.ObjectIdentifier
) -> x509.CertificateBuilder:
    return builder.add_extension(
        x509.BasicConstraints(ca=False, path_length=None), critical=True
    ).add_extension(x509.ExtendedKeyUsage([usage]), critical=False)


def _serverBuilder(
    hostnames: list[str],
    publicKey: ec.EllipticCurvePublicKey,
    issuer: x509.Name | None,
    issuerKey: ec.EllipticCurvePrivateKey,
    days: int,
    clock: IReactorTime | None,
) -> x509.CertificateBuilder:
    names = serverNames(hostnames)
    subject = _name(names[0])
    builder = _builder(subject, issuer or subject, publicKey, issuerKey, days, clock)
    builder = builder.add_extension(
        x509.SubjectAlternativeName([_generalName(n) for n in names]),
        critical=False,
    )
    return _leafBuilder(builder, ExtendedKeyUsageOID.SERVER_AUTH)


def generateServerCertificate(
    hostnames: list[str], days: int = 825, clock: IReactorTime | None = None
) -> tuple[bytes, bytes]:
    """
    A new key and a self-signed server certificate, as C{(keyPem, certPem)}.

    The common name is the first of C{hostnames}; the subject alternative
    names hold all of them plus L{LOOPBACK_NAMES} (IP literals as IP
    addresses).  Valid from an hour ago, for C{days} days.
    """
    key = _newKey()
    builder = _serverBuilder(hostnames, key.public_key(), None, key, days, clock)
    return _keyPem(key), _certPem(builder.sign(key, hashes.SHA256()))


def generateCertificateAuthority(
    commonName: str, days: int = 3650, clock: IReactorTime | None = None
) -> tuple[bytes, bytes]:
    """A new certificate authority, as C{(keyPem, certPem)}."""
    key = _newKey()
    name = _name(commonName)
    builder = (
        _builder(name, name, key.public_key(), key, days, clock)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    return _keyPem(key), _certPem(builder.sign(key, hashes.SHA256()))


def loadCertificates(pem: bytes, what: str = "certificate") -> list[x509.Certificate]:
    """
    Every certificate in C{pem}, in order (a leaf then its chain, or a CA
    bundle).

    @raise BackupRemoteError: C{CONFIG_INVALID} if there is none or one is
        malformed; C{what} names the file in the message.
    """
    try:
        certs = x509.load_pem_x509_certificates(pem)
    except ValueError:
        raise BackupRemoteError(
            CONFIG_INVALID, f"the {what} is not a valid PEM certificate"
        ) from None
    return certs


def loadPrivateKey(pem: bytes, what: str = "key") -> PrivateKeyTypes:
    """
    The unencrypted private key in C{pem}.

    @raise BackupRemoteError: C{CONFIG_INVALID} if it is not one.
    """
    try:
        return serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        raise BackupRemoteError(
            CONFIG_INVALID, f"the {what} is not an unencrypted PEM private key"
        ) from None


def checkKeyMatches(key: PrivateKeyTypes, cert: x509.Certificate, what: str) -> None:
    """
    @raise BackupRemoteError: C{CONFIG_INVALID} unless C{key} is the private
        half of C{cert}'s public key.
    """
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if key.public_key().public_bytes(*spki) != cert.public_key().public_bytes(*spki):
        raise BackupRemoteError(
            CONFIG_INVALID, f"the {what} key does not belong to its certificate"
        )


def _loadAuthority(
    caKeyPem: bytes, caCertPem: bytes
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = loadPrivateKey(caKeyPem, "CA key")
    cert = loadCertificates(caCertPem, "CA certificate")[0]
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise BackupRemoteError(CONFIG_INVALID, "the CA key must be an ECDSA key")
    checkKeyMatches(key, cert, "CA")
    return key, cert


def issueServerCertificate(
    caKeyPem: bytes, caCertPem: bytes, hostnames: list[str], days: int = 825,
    clock: IReactorTime | None = None,
) -> tuple[bytes, bytes]:
    """
    A new key and a server certificate signed by a CA, as C{(keyPem,
    certPem)}; the names are those of L{generateServerCertificate}.
    """
    caKey, caCert = _loadAuthority(caKeyPem, caCertPem)
    key = _newKey()
    builder = _serverBuilder(
        hostnames, key.public_key(), caCert.subject, caKey, days, clock
    )
    return _keyPem(key), _certPem(builder.sign(caKey, hashes.SHA256()))


def issueClientCertificate(
    caKeyPem: bytes, caCertPem: bytes, clientId: str, days: int = 825,
    clock: IReactorTime | None = None,
) -> tuple[bytes, bytes]:
    """
    A new key and a client certificate (CN = C{clientId}, clientAuth) signed
    by a CA, as C{(keyPem, certPem)}, for mutual TLS.
    """
    caKey, caCert = _loadAuthority(caKeyPem, caCertPem)
    key = _newKey()
    builder = _leafBuilder(
        _builder(_name(clientId), caCert.subject, key.public_key(), caKey, days, clock),
        ExtendedKeyUsageOID.CLIENT_AUTH,
    )
    return _keyPem(key), _certPem(builder.sign(caKey, hashes.SHA256()))


def _colonPairs(hexDigits: str) -> str:
    return ":".join(hexDigits[i : i + 2] for i in range(0, len(hexDigits), 2))


def fingerprintOfDer(der: bytes) -> str:
    """The SHA-256 fingerprint of a DER certificate: C{AB:CD:...}."""
    return _colonPairs(hashlib.sha256(der).hexdigest().upper())


def fingerprintOfPem(certPem: bytes) -> str:
    """The SHA-256 fingerprint of the (first) certificate in C{certPem}."""
    cert = loadCertificates(certPem)[0]
    return fingerprintOfDer(cert.public_bytes(serialization.Encoding.DER))


_SEPARATORS = re.compile(r"[\s:]")
_HEX64 = re.compile(r"[0-9A-F]{64}")


def normalizeFingerprint(text: str) -> str:
    """
    The canonical form (C{AB:CD:...}) of a SHA-256 fingerprint written with
    or without colons, in any case, with an optional C{sha256:} prefix.

    @raise BackupRemoteError: C{CONFIG_INVALID} unless it is 64 hex digits.
    """
    raw = str(text)
    digits = raw.strip()
    if digits[:7].lower() in ("sha256:", "sha256="):
        digits = digits[7:]
    digits = _SEPARATORS.sub("", digits).upper()
    if not _HEX64.fullmatch(digits):
        raise BackupRemoteError(
            CONFIG_INVALID,
            "the TLS fingerprint must be a SHA-256 fingerprint: 64 hex digits, "
            "optionally in colon-separated pairs (as printed by `backupremote "
            f"server init`); got {raw[:100]!r}",
        )
    return _colonPairs(digits)
