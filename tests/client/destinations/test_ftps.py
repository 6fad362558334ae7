"""
The FTPS destination (ftplib in a thread, TLS sessions reused) against a
real vsftpd with FTPS required: the contract, then certificates, logins and
faults.
"""

from __future__ import annotations

import ftplib
import io
import os
import ssl

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase

from backupremote.client.destinations import FTPURL, putVerified
from backupremote.client.destinations.ftps import FTPSDestination
from backupremote.protocol.errors import (
    DESTINATION_AUTH_FAILED,
    DESTINATION_IDENTITY_MISMATCH,
    DESTINATION_UNREACHABLE,
    BackupRemoteError,
)
from backupremote.tls.certificates import generateServerCertificate
from tests.client.destinations.contract import DestinationFixture, makeDestinationTests
from tests.client.destinations.servers import DestinationServer, shared, startFTP
from tests.client.destinations.test_local import corruptFile, filesUnder
from tests.databases.servers import HOST

OTHER_FINGERPRINT = ":".join(["AB"] * 32)


def ftpsDestination(server: DestinationServer, root: FilePath, password: str | None = None,
                    **kwargs) -> FTPSDestination:
    if "caFile" not in kwargs:
        kwargs.setdefault("fingerprints", (server.extra["fingerprint"],))
    return FTPSDestination(reactor, FTPURL(server.user, HOST, server.port, root.path, True),
                           server.password if password is None else password, **kwargs)


async def ftpsFixture(case: TestCase) -> DestinationFixture:
    server = await shared(case, startFTP, tls=True)
    root = server.newFolder()
    destination = ftpsDestination(server, root)
    case.addCleanup(destination.close)
    return DestinationFixture(
        destination,
        corrupt=lambda name: corruptFile(root.preauthChild(name)),
        serverNames=lambda: filesUnder(root),
    )


class FTPSContractTests(makeDestinationTests(ftpsFixture)):  # type: ignore[misc]
    """FTPS passes the contract against vsftpd (require_ssl_reuse=YES)."""


class FTPSTests(TestCase):
    timeout = 120

    async def setUp(self) -> None:
        self.server = await shared(self, startFTP, tls=True)
        self.root = self.server.newFolder()
        self.source = FilePath(self.mktemp())
        self.source.setContent(os.urandom(200_000))

    async def assertCode(self, code: str, attempt: Deferred) -> BackupRemoteError:
        with self.assertRaises(BackupRemoteError) as caught:
            await attempt
        self.assertEqual(caught.exception.code, code, str(caught.exception))
        return caught.exception

    async def test_caFile(self) -> None:
        """The certificate verified by a CA file (here: itself), its name checked."""
        destination = ftpsDestination(self.server, self.root,
                                      caFile=FilePath(self.server.extra["certificate"]))
        await putVerified(destination, self.source, "ca.zst")
        self.assertEqual(filesUnder(self.root), {"ca.zst"})

    async def test_untrustedCertificate(self) -> None:
        """A certificate the CA file does not vouch for: refused before the login."""
        _, otherPem = generateServerCertificate([HOST])
        other = FilePath(self.mktemp())
        other.setContent(otherPem)
        destination = ftpsDestination(self.server, self.root, caFile=other)
        await self.assertCode(DESTINATION_IDENTITY_MISMATCH,
                              destination.put(self.source, "a.zst"))
        self.assertEqual(filesUnder(self.root), set())

    async def test_systemCAs(self) -> None:
        """By default the system's CAs, which do not know a self-signed certificate."""
        destination = FTPSDestination(
            reactor, FTPURL(self.server.user, HOST, self.server.port, self.root.path, True),
            self.server.password)
        await self.assertCode(DESTINATION_IDENTITY_MISMATCH, destination.testConnection())

    async def test_pinMismatch(self) -> None:
        destination = ftpsDestination(self.server, self.root, fingerprints=(OTHER_FINGERPRINT,))
        error = await self.assertCode(DESTINATION_IDENTITY_MISMATCH,
                                      destination.testConnection())
        self.assertIn(self.server.extra["fingerprint"], str(error))
        self.assertNotIn(f"OK LOGIN: Client \"{HOST}\"", _tail(self.server))

    async def test_wrongPassword(self) -> None:
        destination = ftpsDestination(self.server, self.root, password="not-it")
        error = await self.assertCode(DESTINATION_AUTH_FAILED,
                                      destination.put(self.source, "a.zst"))
        self.assertNotIn("not-it", str(error))

    def test_stockFTPTLSRefused(self) -> None:
        """
        The server requires TLS session reuse: the stock ftplib.FTP_TLS fails
        its data connection, which is why FTPSDestination reuses the session.
        """
        context = ssl.create_default_context(cafile=self.server.extra["certificate"])
        ftp = ftplib.FTP_TLS(context=context, timeout=10)
        ftp.connect(HOST, self.server.port)
        ftp.login(self.server.user, self.server.password)
        ftp.prot_p()
        self.addCleanup(ftp.close)
        with self.assertRaises((ftplib.Error, ssl.SSLError, OSError)):
            ftp.storbinary(f"STOR {self.root.path}/stock.bin", io.BytesIO(b"x" * 1000))

    async def test_serverStoppedMidUpload(self) -> None:
        server = await startFTP(self, tls=True)
        root = server.newFolder()
        source = FilePath(self.mktemp())
        source.setContent(os.urandom(40 * 1024 * 1024))
        before = source.getContent()
        destination = ftpsDestination(server, root)

        def progress(sent: int) -> None:
            if sent >= 4 * 1024 * 1024 and server.running:
                server.kill()
        await self.assertCode(DESTINATION_UNREACHABLE,
                              putVerified(destination, source, "big.zst", progress=progress))
        self.assertNotIn("big.zst", filesUnder(root))
        self.assertEqual(source.getContent(), before)


def _tail(server: DestinationServer) -> str:
    return server.tail()
