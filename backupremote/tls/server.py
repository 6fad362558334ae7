"""
The server's side of TLS: what it listens with.

Wrap the listening factory with
C{TLSMemoryBIOFactory(serverContextFactory(...), False, factory)}, or with a
L{SwappableServerOptions} to change the key and certificate while
listening (a certificate rotation without a restart).
"""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding
from OpenSSL import SSL, crypto
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from twisted.internet.ssl import CertificateOptions, TLSVersion
from zope.interface import implementer

from backupremote.tls.certificates import (
    checkKeyMatches,
    fingerprintOfDer,
    loadCertificates,
    loadPrivateKey,
)


def serverContextFactory(
    keyPem: bytes, certPem: bytes, clientCAPem: bytes | None = None
) -> CertificateOptions:
    """
    TLS options for the listening side: TLS 1.2 or newer.

    @param certPem: the server's certificate, optionally followed by its
        intermediate certificates.
    @param clientCAPem: if given, mutual TLS: the handshake fails unless the
        client presents a certificate signed by one of these CAs.
    @raise BackupRemoteError: C{CONFIG_INVALID} for an unreadable key or
        certificate, or a key that is not the certificate's.
    """
    key = loadPrivateKey(keyPem, "server TLS key")
    leaf, *chain = loadCertificates(certPem, "server TLS certificate")
    checkKeyMatches(key, leaf, "server TLS")
    clientCAs = None
    if clientCAPem is not None:
        clientCAs = [
            crypto.X509.from_cryptography(c)
            for c in loadCertificates(clientCAPem, "client CA file")
        ]
    # cryptography objects: pyOpenSSL deprecates its own X509 and PKey here
    # (CertificateOptions only hands them on to the context).
    return CertificateOptions(
        privateKey=key,
        certificate=leaf,
        extraCertChain=chain,
        raiseMinimumTo=TLSVersion.TLSv1_2,
        verify=clientCAs is not None,
        caCerts=clientCAs,
        requireCertificate=clientCAs is not None,
    )


@implementer(IOpenSSLServerConnectionCreator)
class SwappableServerOptions:
    """
    Server TLS options that can be replaced while listening: each new
    connection is made from the options of the moment, and connections
    already made keep theirs.

    @ivar options: the L{CertificateOptions} new connections use.
    """

    def __init__(self, options: CertificateOptions) -> None:
        self.options = options

    @property
    def fingerprint(self) -> str:
        """The SHA-256 fingerprint of the certificate new connections get."""
        return fingerprintOfDer(self.options.certificate.public_bytes(Encoding.DER))

    def serverConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        return SSL.Connection(self.options.getContext(), None)
