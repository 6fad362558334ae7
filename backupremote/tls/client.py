"""
The client's side of TLS: how it checks the server it connects to.

Either the server's leaf certificate is pinned by its SHA-256 fingerprint,
one of several during a certificate rotation (L{PinnedCertificateCreator}),
or it must chain to a CA file and name the host.  Connect with C{wrapClientTLS(clientCreator(...), endpoint)}; when the
connection is lost before the handshake completed, L{describeTLSFailure}
turns the reason into a registered error.
"""

from __future__ import annotations

import hmac
from typing import Any, Sequence

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding
from OpenSSL import SSL, crypto
from service_identity import VerificationError
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.internet.ssl import (
    Certificate,
    TLSVersion,
    optionsForClientTLS,
    trustRootFromCertificates,
)
from twisted.python.failure import Failure
from zope.interface import implementer

from backupremote.protocol.errors import (
    CONFIG_INVALID,
    TLS_FAILED,
    TLS_FINGERPRINT_MISMATCH,
    BackupRemoteError,
)
from backupremote.tls.certificates import (
    checkKeyMatches,
    fingerprintOfDer,
    loadCertificates,
    loadPrivateKey,
    normalizeFingerprint,
)


def _isDnsName(host: str) -> bool:
    return not (isIPAddress(host) or isIPv6Address(host))


def _loadClientCertificate(
    certPem: bytes | None, keyPem: bytes | None
) -> tuple[PrivateKeyTypes, x509.Certificate, list[x509.Certificate]] | None:
    """The client's key, certificate and chain for mutual TLS, if any."""
    if certPem is None and keyPem is None:
        return None
    if certPem is None or keyPem is None:
        raise BackupRemoteError(
            CONFIG_INVALID,
            "mutual TLS needs both the client certificate and its key",
        )
    key = loadPrivateKey(keyPem, "client TLS key")
    leaf, *chain = loadCertificates(certPem, "client TLS certificate")
    checkKeyMatches(key, leaf, "client TLS")
    return key, leaf, chain


@implementer(IOpenSSLClientConnectionCreator)
class PinnedCertificateCreator:
    """
    Client TLS (1.2 or newer) that trusts exactly the server certificates
    whose DER has one of the pinned SHA-256 fingerprints, whoever signed
    them. Several pins let a client follow a certificate rotation: it pins
    the old and the new certificate until the server offers the new one.

    @ivar fingerprints: the pins, normalised (C{AB:CD:...}), in order.
    @ivar mismatch: C{(expected, actual)} once a connection was refused for
        presenting another certificate, else C{None}; reset per connection.
        C{expected} is the pins joined by C{", "}.
    @ivar context: the pyOpenSSL context every connection is made from.
    """

    def __init__(
        self,
        fingerprints: str | Sequence[str],
        hostname: str | None = None,
        clientCertPem: bytes | None = None,
        clientKeyPem: bytes | None = None,
    ) -> None:
        self.fingerprints = pinList(fingerprints)
        self.hostname = hostname
        self.mismatch: tuple[str, str] | None = None
        self.context = SSL.Context(SSL.TLS_METHOD)
        self.context.set_min_proto_version(SSL.TLS1_2_VERSION)
        self.context.set_verify(
            SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, self._verify
        )
        self.context.set_info_callback(self._checkOnHandshakeDone)
        clientCertificate = _loadClientCertificate(clientCertPem, clientKeyPem)
        if clientCertificate is not None:
            key, leaf, chain = clientCertificate
            self.context.use_certificate(leaf)
            for cert in chain:
                self.context.add_extra_chain_cert(cert)
            self.context.use_privatekey(key)

    @property
    def _expected(self) -> str:
        return ", ".join(self.fingerprints)

    def _matches(self, der: bytes) -> bool:
        actual = fingerprintOfDer(der)
        # every pin is compared, so the time taken does not say which matched
        found = [hmac.compare_digest(actual, pin) for pin in self.fingerprints]
        if any(found):
            return True
        self.mismatch = (self._expected, actual)
        return False

    def _verify(
        self, conn: SSL.Connection, cert: crypto.X509, errno: int, depth: int, ok: int
    ) -> bool:
        # The chain above the leaf is not judged: the pin alone decides.
        if depth > 0:
            return True
        return self._matches(cert.to_cryptography().public_bytes(Encoding.DER))

    def _checkOnHandshakeDone(self, conn: SSL.Connection, where: int, ret: int) -> None:
        # Belt and braces: whatever path the handshake took (resumption
        # included), the leaf it ended with must be the pinned one.
        if not where & SSL.SSL_CB_HANDSHAKE_DONE:
            return
        cert = conn.get_peer_certificate(as_cryptography=True)
        if cert is None:
            self.mismatch = (self._expected, "(no certificate)")
        elif self._matches(cert.public_bytes(Encoding.DER)):
            return
        conn.get_app_data().failVerification(
            Failure(SSL.Error([("", "", "server certificate is not the pinned one")]))
        )

    def clientConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        """A new client connection for C{tlsProtocol} (SNI for DNS names)."""
        self.mismatch = None
        connection = SSL.Connection(self.context, None)
        connection.set_app_data(tlsProtocol)
        if self.hostname and _isDnsName(self.hostname):
            connection.set_tlsext_host_name(self.hostname.encode("idna"))
        return connection


def pinList(fingerprints: str | Sequence[str]) -> tuple[str, ...]:
    """
    One or more fingerprints, normalised, without repeats, in order.

    @raise BackupRemoteError: C{CONFIG_INVALID} for an empty list or a
        malformed fingerprint.
    """
    given = [fingerprints] if isinstance(fingerprints, str) else list(fingerprints)
    pins: list[str] = []
    for text in given:
        pin = normalizeFingerprint(text)
        if pin not in pins:
            pins.append(pin)
    if not pins:
        raise BackupRemoteError(
            CONFIG_INVALID, "pin at least one fingerprint of the server's certificate"
        )
    return tuple(pins)


def clientCreator(
    host: str,
    fingerprints: str | Sequence[str] | None,
    caPem: bytes | None,
    clientCertPem: bytes | None = None,
    clientKeyPem: bytes | None = None,
) -> IOpenSSLClientConnectionCreator:
    """
    How the client checks the server at C{host}: pinned C{fingerprints}
    (one, or several during a certificate rotation; any of them is
    accepted), or C{caPem} (one or more CA certificates) plus the host name;
    optionally with a client certificate and key for mutual TLS.

    @raise BackupRemoteError: C{CONFIG_INVALID} unless exactly one of
        C{fingerprints} and C{caPem} is given, or for unreadable PEM.
    """
    if fingerprints and caPem:
        raise BackupRemoteError(
            CONFIG_INVALID,
            "give either a pinned fingerprint or a CA file for the server, not both",
        )
    if fingerprints:
        return PinnedCertificateCreator(fingerprints, host, clientCertPem, clientKeyPem)
    if not caPem:
        raise BackupRemoteError(
            CONFIG_INVALID,
            "the server's certificate cannot be checked: pin a fingerprint or "
            "give a CA file",
        )
    trustRoot = trustRootFromCertificates(
        [
            Certificate(crypto.X509.from_cryptography(c))
            for c in loadCertificates(caPem, "CA file")
        ]
    )
    extraOptions: dict[str, Any] = {"raiseMinimumTo": TLSVersion.TLSv1_2}
    clientCertificate = _loadClientCertificate(clientCertPem, clientKeyPem)
    if clientCertificate is not None:
        # Given as cryptography objects rather than through the
        # clientCertificate argument, whose pyOpenSSL X509 objects are
        # deprecated by pyOpenSSL.
        key, leaf, chain = clientCertificate
        extraOptions.update(privateKey=key, certificate=leaf, extraCertChain=chain)
    return optionsForClientTLS(
        host, trustRoot=trustRoot, extraCertificateOptions=extraOptions
    )


def _opensslReasons(error: SSL.Error) -> str:
    """OpenSSL's reasons, like C{certificate verify failed}."""
    entries = error.args[0] if error.args else None
    if isinstance(entries, list):
        reasons = [str(e[-1]) for e in entries if isinstance(e, tuple) and e]
        if any(reasons):
            return "; ".join(r for r in reasons if r)
    return str(error) or "the handshake was aborted"


def _mismatchedNames(error: VerificationError) -> str:
    """The names the certificate failed to carry, like C{host.example}."""
    names = []
    for mismatch in getattr(error, "errors", []):
        identity = getattr(mismatch, "mismatched_id", None)
        name = getattr(identity, "hostname", None) or getattr(identity, "ip", None)
        if isinstance(name, bytes):
            name = name.decode("ascii", "replace")
        if name is not None and str(name) not in names:
            names.append(str(name))
    return " or ".join(names) or "the host connected to"


def describeTLSFailure(
    creator: object, failure: Failure | BaseException
) -> BackupRemoteError | None:
    """
    The registered error for a connection that C{creator} set up and that was
    lost with C{failure}: C{TLS_FINGERPRINT_MISMATCH} if the server showed a
    certificate other than the pinned one, C{TLS_FAILED} for any other
    handshake failure, C{None} if it was not a TLS failure.
    """
    error = failure.value if isinstance(failure, Failure) else failure
    if isinstance(error, BackupRemoteError):
        return error
    mismatch = getattr(creator, "mismatch", None)
    if isinstance(error, SSL.Error) and mismatch is not None:
        expected, actual = mismatch
        oneOf = "one of " if "," in expected else ""
        return BackupRemoteError(
            TLS_FINGERPRINT_MISMATCH,
            f"server certificate fingerprint is {actual}, expected {oneOf}{expected}; "
            "if the server's certificate was renewed, pin the new fingerprint, "
            "otherwise this may be another machine: do not proceed",
            details={"expected": expected, "actual": actual},
        )
    if isinstance(error, VerificationError):
        return BackupRemoteError(
            TLS_FAILED,
            f"the server's certificate does not name {_mismatchedNames(error)}; "
            "connect by a name its certificate carries",
        )
    if isinstance(error, SSL.Error):
        return BackupRemoteError(
            TLS_FAILED,
            f"TLS handshake with the server failed: {_opensslReasons(error)}",
        )
    return None
