"""
The FTP destination (Twisted's client) against a real vsftpd on 127.0.0.1:
the contract, then logins and faults.
"""

from __future__ import annotations

import os

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase

from backupremote.client.destinations import FTPURL, putVerified
from backupremote.client.destinations.ftp import FTPDestination
from backupremote.protocol.errors import (
    DESTINATION_AUTH_FAILED,
    DESTINATION_REFUSED,
    DESTINATION_UNREACHABLE,
    BackupRemoteError,
)
from tests.client.destinations.contract import DestinationFixture, makeDestinationTests
from tests.client.destinations.servers import DestinationServer, shared, startFTP
from tests.client.destinations.test_local import corruptFile, filesUnder
from tests.databases.servers import HOST, freePort


def ftpDestination(server: DestinationServer, root: FilePath, password: str | None = None,
                   **kwargs) -> FTPDestination:
    return FTPDestination(reactor, FTPURL(server.user, HOST, server.port, root.path, False),
                          server.password if password is None else password, **kwargs)


async def ftpFixture(case: TestCase) -> DestinationFixture:
    server = await shared(case, startFTP)
    root = server.newFolder()
    destination = ftpDestination(server, root)
    case.addCleanup(destination.close)
    return DestinationFixture(
        destination,
        corrupt=lambda name: corruptFile(root.preauthChild(name)),
        serverNames=lambda: filesUnder(root),
    )


class FTPContractTests(makeDestinationTests(ftpFixture)):  # type: ignore[misc]
    """FTP passes the contract against vsftpd."""


class FTPTests(TestCase):
    timeout = 120

    async def setUp(self) -> None:
        self.server = await shared(self, startFTP)
        self.root = self.server.newFolder()
        self.source = FilePath(self.mktemp())
        self.source.setContent(os.urandom(200_000))

    def destination(self, **kwargs) -> FTPDestination:
        destination = ftpDestination(self.server, kwargs.pop("root", self.root), **kwargs)
        self.addCleanup(destination.close)
        return destination

    async def assertCode(self, code: str, attempt: Deferred) -> BackupRemoteError:
        with self.assertRaises(BackupRemoteError) as caught:
            await attempt
        self.assertEqual(caught.exception.code, code, str(caught.exception))
        return caught.exception

    async def test_wrongPassword(self) -> None:
        destination = self.destination(password="not-it")
        error = await self.assertCode(DESTINATION_AUTH_FAILED,
                                      destination.put(self.source, "a.zst"))
        self.assertNotIn("not-it", str(error))
        self.assertEqual(filesUnder(self.root), set())

    async def test_unreachable(self) -> None:
        destination = FTPDestination(reactor, FTPURL("u", HOST, freePort(), "/x", False), "p")
        await self.assertCode(DESTINATION_UNREACHABLE, destination.testConnection())

    async def test_missingRoot(self) -> None:
        destination = self.destination(root=self.root.child("absent"))
        await self.assertCode(DESTINATION_REFUSED, destination.testConnection())
        await self.assertCode(DESTINATION_REFUSED, destination.put(self.source, "a.zst"))

    async def test_loginFolder(self) -> None:
        """A path relative to the login folder (ftp://user@host/~/dir)."""
        home = FilePath(os.path.expanduser(f"~{self.server.user}"))
        relative = "/".join(self.root.segmentsFrom(home)) if self.root.path.startswith(
            home.path + "/") else None
        if relative is None:
            folder = home.child("br-" + os.urandom(4).hex())
            folder.makedirs()
            os.chown(folder.path, *_ids(self.server.user))
            self.addCleanup(folder.remove)
            relative, self.root = folder.basename(), folder
        destination = FTPDestination(
            reactor, FTPURL(self.server.user, HOST, self.server.port, relative, False),
            self.server.password)
        self.addCleanup(destination.close)
        await putVerified(destination, self.source, "home.zst")
        self.assertEqual(filesUnder(self.root), {"home.zst"})

    async def test_serverStoppedMidUpload(self) -> None:
        """
        vsftpd and its sessions killed during an upload: UNREACHABLE, nothing
        under the final name, the local file untouched.
        """
        server = await startFTP(self)
        root = server.newFolder()
        source = FilePath(self.mktemp())
        source.setContent(os.urandom(40 * 1024 * 1024))
        before = source.getContent()
        destination = ftpDestination(server, root)
        self.addCleanup(destination.close)

        def progress(sent: int) -> None:
            if sent >= 4 * 1024 * 1024 and server.running:
                server.kill()
        await self.assertCode(DESTINATION_UNREACHABLE,
                              putVerified(destination, source, "big.zst", progress=progress))
        self.assertNotIn("big.zst", filesUnder(root))
        self.assertEqual(source.getContent(), before)


def _ids(user: str) -> tuple[int, int]:
    import pwd
    entry = pwd.getpwnam(user)
    return entry.pw_uid, entry.pw_gid
