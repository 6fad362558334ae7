"""
How an HTTPS destination (WebDAV, S3-compatible) checks the server it talks to.

Three ways, in order of preference:

- pinned: the leaf certificate's SHA-256 fingerprint (one of several during a
  rotation), whoever signed it (L{backupremote.tls.client.PinnedCertificateCreator});
- a private CA (C{--ca-file}): the chain must end there and the certificate
  must name the host;
- neither: the system's trust store, and the certificate must name the host.

Always TLS 1.2 or newer. L{PeerVerification} is the Agent's
C{IPolicyForHTTPS}; after a failed connection, L{PeerVerification.describe}
turns the reason into C{DESTINATION_IDENTITY_MISMATCH}.
"""

from __future__ import annotations

from collections.abc import Sequence

from OpenSSL import SSL
from service_identity import VerificationError
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.internet.ssl import TLSVersion, optionsForClientTLS, platformTrust
from twisted.python.failure import Failure
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

from backupremote.protocol.errors import (
    CONFIG_INVALID,
    DESTINATION_IDENTITY_MISMATCH,
    BackupRemoteError,
)
from backupremote.tls.certificates import loadCertificates
from backupremote.tls.client import clientCreator, describeTLSFailure, pinList


@implementer(IPolicyForHTTPS)
class PeerVerification:
    """
    The TLS policy of one destination: pinned fingerprints, a CA file, or
    the system's trust store.

    @ivar fingerprints: the pinned SHA-256 fingerprints (normalised), or
        empty.
    @ivar caPem: the PEM of the private CA to trust, or C{None}.
    @ivar name: the stored destination's name, for the command in a
        mismatch's message (C{None}: a generic one).
    """

    def __init__(self, caPem: bytes | None = None,
                 fingerprints: Sequence[str] = (), name: str | None = None) -> None:
        if caPem is not None and fingerprints:
            raise BackupRemoteError(
                CONFIG_INVALID,
                "give either pinned certificate fingerprints or a CA file for "
                "the destination, not both")
        if caPem is not None:
            loadCertificates(caPem, "CA file")  # CONFIG_INVALID if unreadable
        self.caPem = caPem
        self.name = name
        self.fingerprints = pinList(fingerprints) if fingerprints else ()
        self._creators: dict[tuple[str, int], IOpenSSLClientConnectionCreator] = {}

    @property
    def description(self) -> str:
        """What the certificate is checked against, for messages."""
        if self.fingerprints:
            return "the pinned fingerprint"
        if self.caPem is not None:
            return "the CA file"
        return "the system's trusted CAs"

    def creatorForNetloc(self, hostname: bytes, port: int) -> IOpenSSLClientConnectionCreator:
        host = hostname.decode("ascii")
        creator = self._creators.get((host, port))
        if creator is None:
            if self.fingerprints or self.caPem is not None:
                creator = clientCreator(host, self.fingerprints or None, self.caPem)
            else:
                creator = optionsForClientTLS(
                    host, trustRoot=platformTrust(),
                    extraCertificateOptions={"raiseMinimumTo": TLSVersion.TLSv1_2})
            self._creators[(host, port)] = creator
        return creator

    def describe(self, failure: Failure | BaseException,
                 location: str) -> BackupRemoteError | None:
        """
        C{DESTINATION_IDENTITY_MISMATCH} for a TLS handshake that failed
        (most often on the server's identity), else C{None}.
        """
        error = failure.value if isinstance(failure, Failure) else failure
        if not isinstance(error, (SSL.Error, VerificationError)):
            return None
        mismatched = [c for c in self._creators.values()
                      if getattr(c, "mismatch", None) is not None]
        described = describeTLSFailure(mismatched[0] if mismatched else None, error)
        assert described is not None
        details = dict(described.details)
        message = (f"{location}: TLS failed, checked against {self.description}: "
                   f"{described.message}")
        if "actual" in details:
            message += " (" + pinHint(self.name, details["actual"]) + ")"
        return BackupRemoteError(DESTINATION_IDENTITY_MISMATCH, message, details=details)


def pinHint(name: str | None, actual: str) -> str:
    """How to pin the certificate a server showed, once its operator confirmed it."""
    return (f"to pin it: backupremote dest update {name or 'NAME'} --fingerprint {actual}")
