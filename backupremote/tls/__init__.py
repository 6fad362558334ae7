"""
TLS between the backupremote client and server (TLS 1.2 or newer).

The server listens with L{serverContextFactory} (optionally requiring client
certificates from a CA: mutual TLS).  The client checks the server either by
a pinned SHA-256 fingerprint of its certificate or by a CA file
(L{clientCreator}), and turns handshake failures into registered errors with
L{describeTLSFailure}.  L{certificates} makes keys, certificates and
fingerprints.
"""

from backupremote.filewriting import writePrivateFile
from backupremote.tls.certificates import (
    fingerprintOfDer,
    fingerprintOfPem,
    generateCertificateAuthority,
    generateServerCertificate,
    issueClientCertificate,
    issueServerCertificate,
    normalizeFingerprint,
)
from backupremote.tls.client import (
    PinnedCertificateCreator,
    clientCreator,
    describeTLSFailure,
)
from backupremote.tls.server import serverContextFactory

__all__ = [
    "PinnedCertificateCreator",
    "clientCreator",
    "describeTLSFailure",
    "fingerprintOfDer",
    "fingerprintOfPem",
    "generateCertificateAuthority",
    "generateServerCertificate",
    "issueClientCertificate",
    "issueServerCertificate",
    "normalizeFingerprint",
    "serverContextFactory",
    "writePrivateFile",
]
