"""
Reloading the server's TLS key and certificate while it runs (what SIGHUP
does), over real TLS on 127.0.0.1: new connections get the new certificate,
open ones keep going, and unusable files leave the old one in place; and a
certificate rotation that clients pinning both fingerprints do not notice.
"""

from __future__ import annotations

from twisted.trial.unittest import TestCase

from backupremote.protocol.errors import TLS_FINGERPRINT_MISMATCH, BackupRemoteError
from backupremote.server.admin.certrotation import activatePending, stageNewCertificate
from backupremote.server.edge.hangup import reopenAndReload
from backupremote.tls.certificates import fingerprintOfPem, generateServerCertificate
from tests.integration.servers import startServer


class CertificateReloadTests(TestCase):
    async def assertRefused(self, client) -> None:
        with self.assertRaises(BackupRemoteError) as raised:
            await client.capabilities()
        self.assertEqual(raised.exception.code, TLS_FINGERPRINT_MISMATCH)

    async def test_newConnectionsGetTheNewCertificate(self) -> None:
        server = await startServer(self)
        old = server.fingerprint
        keyPem, certPem = generateServerCertificate(["localhost"])
        new = fingerprintOfPem(certPem)
        both = server.client(self, fingerprints=(old, new))
        await both.capabilities()
        openBefore = server.client(self, fingerprints=(old,))
        await openBefore.capabilities()

        server.config.tlsKey.setContent(keyPem)
        server.config.tlsKey.chmod(0o600)
        server.config.tlsCert.setContent(certPem)
        await self.assertRefused(server.client(self, fingerprints=(new,)))
        reopenAndReload(server.service)

        await server.client(self, fingerprints=(new,)).capabilities()
        await server.client(self, fingerprints=(old, new)).capabilities()
        await self.assertRefused(server.client(self, fingerprints=(old,)))
        # connections made before the reload keep their session
        await openBefore.capabilities()
        await both.capabilities()
        log = server.config.logFile.getContent()
        self.assertIn(b"reloaded the TLS key and certificate", log)
        self.assertIn(new.encode(), log)

    async def test_unusableFilesKeepTheOldCertificate(self) -> None:
        server = await startServer(self)
        otherKey, _ = generateServerCertificate(["localhost"])
        original = server.config.tlsKey.getContent()
        server.config.tlsKey.setContent(otherKey)  # not the certificate's key
        server.config.tlsKey.chmod(0o600)
        reopenAndReload(server.service)
        server.config.tlsKey.setContent(original)
        server.config.tlsKey.chmod(0o600)
        await server.client(self).capabilities()
        self.assertIn(b"kept the TLS certificate in use",
                      server.config.logFile.getContent())


class RotationTests(TestCase):
    """
    The rotation procedure on a running server: stage, pin both, activate,
    reload.
    """

    async def test_clientPinningBothSurvivesTheRotation(self) -> None:
        """
        A client pinning [old, new] connects before and after activation; one
        pinning only the old fingerprint is refused with
        TLS_FINGERPRINT_MISMATCH once the new certificate is offered.
        """
        server = await startServer(self)
        old = server.fingerprint
        new = stageNewCertificate(server.config).fingerprint
        # staged only: the server still offers the old certificate
        await server.client(self, fingerprints=(old, new)).capabilities()
        await server.client(self, fingerprints=(old,)).capabilities()
        await self.assertRefusedWith(server.client(self, fingerprints=(new,)))

        activatePending(server.config)
        reopenAndReload(server.service)

        await server.client(self, fingerprints=(old, new)).capabilities()
        await server.client(self, fingerprints=(new, old)).capabilities()
        await server.client(self, fingerprints=(new,)).capabilities()
        await self.assertRefusedWith(server.client(self, fingerprints=(old,)))

    async def assertRefusedWith(self, client) -> None:
        with self.assertRaises(BackupRemoteError) as raised:
            await client.capabilities()
        self.assertEqual(raised.exception.code, TLS_FINGERPRINT_MISMATCH)
