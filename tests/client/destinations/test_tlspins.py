"""
Stored destinations that pin their server's TLS certificate
(C{dest add/update --fingerprint}): the pins go through validation and the
store into the registry's FTPS, WebDAV and S3 clients, against the real
vsftpd, nginx and C{rclone serve s3} the suite starts.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from typing import Any, Callable

from attrs import evolve
from twisted.internet import reactor
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase, TestCase

from backupremote.client.destinations import putVerified
from backupremote.client.destinations.registry import DestinationRegistry
from backupremote.client.destinations.stored import (
    KEEP,
    DestinationStore,
    StoredDestination,
    validateDestination,
)
from backupremote.protocol.errors import (
    DESTINATION_IDENTITY_MISMATCH,
    VALIDATION_FAILED,
    BackupRemoteError,
)
from backupremote.testing import MemoryClientStore
from tests.client.destinations.httpservers import shared as sharedHTTP
from tests.client.destinations.servers import shared as sharedFTP
from tests.client.destinations.servers import startFTP
from tests.client.destinations.test_webdav import filesUnder
from tests.databases.servers import HOST

NOW = datetime(2026, 11, 3, 2, 0, tzinfo=timezone.utc)
WRONG = ":".join(["AB"] * 32)


class PinValidationTests(SynchronousTestCase):
    """Which destinations may pin, in which form, and what is stored."""

    def fields(self, destination: StoredDestination) -> dict[str, str]:
        with self.assertRaises(BackupRemoteError) as caught:
            validateDestination(destination)
        self.assertEqual(caught.exception.code, VALIDATION_FAILED)
        return caught.exception.details["fields"]

    def test_normalised(self) -> None:
        """Any spelling C{client init --fingerprint} takes is stored as AB:CD:..., once."""
        stored = validateDestination(StoredDestination(
            "i", "box", "webdav", "webdav+https://h/dav", fingerprints=(
                "sha256:" + "ab" * 32, "AB" * 32, WRONG.replace("AB", "CD"))))
        self.assertEqual(stored.fingerprints, (WRONG, WRONG.replace("AB", "CD")))

    def test_refused(self) -> None:
        cases = [
            StoredDestination("i", "a", "local", "file:///x", fingerprints=(WRONG,)),
            StoredDestination("i", "a", "ftp", "ftp://u@h/x", hasSecret=True,
                              fingerprints=(WRONG,)),
            StoredDestination("i", "a", "webdav", "webdav+http://h/x", fingerprints=(WRONG,)),
            StoredDestination("i", "a", "s3", "s3+http://K@h/b", hasSecret=True,
                              fingerprints=(WRONG,)),
            StoredDestination("i", "a", "s3", "s3+https://K@h/b", hasSecret=True,
                              fingerprints=("SHA256:nothex",)),
            StoredDestination("i", "a", "ftps", "ftps://u@h/x", hasSecret=True,
                              caFile="/ca.pem", fingerprints=(WRONG,)),
        ]
        for destination in cases:
            self.assertIn("fingerprints", self.fields(destination), destination)

    def test_storedAndKept(self) -> None:
        """The pins survive the store (JSON definition), an update keeps them, none reads as ()."""
        store = DestinationStore(MemoryClientStore())
        added = self.successResultOf(store.add(StoredDestination(
            "i", "s3", "s3", "s3+https://K@h/bkt", fingerprints=("ab" * 32,)), "sealed", NOW))
        self.assertEqual(added.fingerprints, (WRONG,))
        updated = self.successResultOf(store.update(
            evolve(added, url="s3+https://K@h/other"), KEEP, NOW))
        self.assertEqual(updated.fingerprints, (WRONG,))
        cleared = self.successResultOf(store.update(evolve(updated, fingerprints=()), KEEP, NOW))
        self.assertEqual(cleared.fingerprints, ())


class PinnedDeliveryTests(TestCase):
    """
    Through the registry, each TLS client delivers with the right pin and
    refuses the wrong one with C{DESTINATION_IDENTITY_MISMATCH}: what was
    expected, what was seen, the command that pins it; nothing uploaded.
    """

    timeout = 120

    def setUp(self) -> None:
        self.source = FilePath(self.mktemp())
        self.source.setContent(os.urandom(100_000))
        self.folder = FilePath(self.mktemp())
        self.folder.makedirs()
        self.registry = DestinationRegistry.inFolder(reactor, MemoryClientStore(), self.folder)

    async def deliver(self, stored: StoredDestination, secret: str, actual: str,
                      files: Callable[[], set[str]]) -> None:
        wrong = await self.registry.store.add(
            evolve(stored, id=stored.id + "-w", name=stored.name + "-wrong",
                   fingerprints=(WRONG,)), self.registry.seal(stored.id + "-w", secret), NOW)
        destination: Any = await self.registry.open(wrong)
        self.addCleanup(destination.close)
        for attempt in (destination.testConnection, lambda: putVerified(
                destination, self.source, "x.bin")):
            with self.assertRaises(BackupRemoteError) as caught:
                await attempt()
            error = caught.exception
            self.assertEqual(error.code, DESTINATION_IDENTITY_MISMATCH, str(error))
            self.assertIn(WRONG, error.message)
            self.assertIn(actual, error.message)
            self.assertIn(f"backupremote dest update {wrong.name} --fingerprint {actual}",
                          error.message)
            self.assertNotIn(secret, error.message)
            self.assertEqual(error.details["actual"], actual)
        self.assertEqual(files(), set())

        right = await self.registry.store.add(
            evolve(stored, fingerprints=(WRONG, actual.lower())),
            self.registry.seal(stored.id, secret), NOW)
        self.assertEqual(right.fingerprints, (WRONG, actual))
        destination = await self.registry.open(right)
        self.addCleanup(destination.close)
        await destination.testConnection()
        await putVerified(destination, self.source, "x.bin")
        self.assertEqual(files(), {"x.bin"})

    async def test_ftps(self) -> None:
        server = await sharedFTP(self, startFTP, tls=True)
        root = server.newFolder()
        url = f"ftps://{server.user}@{HOST}:{server.port}{root.path}"
        await self.deliver(StoredDestination("f", "vsftpd", "ftps", url), server.password,
                           server.extra["fingerprint"], lambda: filesUnder(root.path))

    async def test_webdav(self) -> None:
        server = sharedHTTP("nginx-tls")
        folder = server.newFolder()
        await self.deliver(StoredDestination("w", "nginx", "webdav", server.url(folder)),
                           server.password, server.tls.fingerprint,
                           lambda: filesUnder(os.path.join(server.root, folder)))

    async def test_s3(self) -> None:
        server = sharedHTTP("rclone-s3-tls")
        bucket = server.newBucket()
        await self.deliver(StoredDestination("s", "rclone", "s3", server.url(bucket, "db")),
                           server.secretKey, server.tls.fingerprint,
                           lambda: filesUnder(os.path.join(server.data, bucket, "db")))
