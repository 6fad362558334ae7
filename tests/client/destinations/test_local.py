"""The local-folder destination: the contract on the real file system, and its own faults."""

from __future__ import annotations

import os

from twisted.internet import reactor
from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase

from backupremote.client.destinations import putVerified
from backupremote.client.destinations.local import LocalFolderDestination
from backupremote.protocol.errors import (
    DESTINATION_FULL,
    DESTINATION_REFUSED,
    BackupRemoteError,
)
from tests.client.destinations.contract import DestinationFixture, makeDestinationTests


def filesUnder(root: FilePath) -> set[str]:
    return {"/".join(path.segmentsFrom(root)) for path in root.walk()
            if path.isfile() or path.islink()}


def corruptFile(path: FilePath) -> None:
    data = path.getContent()
    with open(path.path, "r+b") as handle:
        handle.write(bytes([data[0] ^ 0xFF]) if data else b"\0")


async def localFixture(case: TestCase) -> DestinationFixture:
    root = FilePath(case.mktemp())
    root.makedirs()
    destination = LocalFolderDestination(reactor, root)
    return DestinationFixture(
        destination,
        corrupt=lambda name: corruptFile(root.preauthChild(name)),
        serverNames=lambda: filesUnder(root),
    )


class LocalFolderContractTests(makeDestinationTests(localFixture)):  # type: ignore[misc]
    """The local folder passes the contract."""


class LocalFolderTests(TestCase):
    def setUp(self) -> None:
        self.root = FilePath(self.mktemp())
        self.root.makedirs()
        self.source = FilePath(self.mktemp())
        self.source.setContent(os.urandom(300_000))
        self.destination = LocalFolderDestination(reactor, self.root)

    async def test_modes(self) -> None:
        """Delivered files are 0600, new date folders 0700."""
        await putVerified(self.destination, self.source, "2026-11-03/a.zst")
        self.assertEqual(self.root.child("2026-11-03").getPermissions().shorthand(), "rwx------")
        self.assertEqual(self.root.descendant(["2026-11-03", "a.zst"]).getPermissions().shorthand(),
                         "rw-------")

    async def test_missingRoot(self) -> None:
        """A root that does not exist is refused, never created: it may be an unmounted share."""
        destination = LocalFolderDestination(reactor, self.root.child("not-mounted"))
        for attempt in (destination.testConnection(), destination.put(self.source, "a.zst"),
                        destination.listFiles()):
            with self.assertRaises(BackupRemoteError) as caught:
                await attempt
            self.assertEqual(caught.exception.code, DESTINATION_REFUSED)
        self.assertFalse(self.root.child("not-mounted").exists())

    async def test_readOnly(self) -> None:
        if os.geteuid() == 0:
            # root ignores permissions: a read-only bind would be needed
            self.root.chmod(0o500)
            self.addCleanup(self.root.chmod, 0o700)
            self.patch(os, "open", _refusing(os.open, self.root.path))
        else:
            self.root.chmod(0o500)
            self.addCleanup(self.root.chmod, 0o700)
        with self.assertRaises(BackupRemoteError) as caught:
            await self.destination.testConnection()
        self.assertEqual(caught.exception.code, DESTINATION_REFUSED)

    async def test_diskFull(self) -> None:
        """ENOSPC while writing: DESTINATION_FULL, no temporary file left, source untouched."""
        before = self.source.getContent()
        self.patch(os, "write", _fullAfter(os.write, self.root.path, 100_000))
        with self.assertRaises(BackupRemoteError) as caught:
            await putVerified(self.destination, self.source, "full.zst")
        self.assertEqual(caught.exception.code, DESTINATION_FULL)
        self.assertEqual(filesUnder(self.root), set())
        self.assertEqual(self.source.getContent(), before)

    async def test_foreignFilesIgnored(self) -> None:
        """The listing leaves out what could not be ours: deep folders, links, odd names."""
        self.root.child("notes .txt").setContent(b"x")
        self.root.child(".hidden").setContent(b"x")
        self.root.descendant(["a", "b"]).makedirs()
        self.root.descendant(["a", "b", "deep.zst"]).setContent(b"x")
        self.source.linkTo(self.root.child("link.zst"))
        self.root.child("kept.zst").setContent(b"xy")
        self.assertEqual([(f.name, f.size) for f in await self.destination.listFiles()],
                         [("kept.zst", 2)])


def _refusing(realOpen, folder):  # type: ignore[no-untyped-def]
    def open_(path, flags, *args, **kwargs):  # type: ignore[no-untyped-def]
        if str(path).startswith(folder + "/") and flags & os.O_CREAT:
            raise PermissionError(13, "Permission denied")
        return realOpen(path, flags, *args, **kwargs)
    return open_


def _fullAfter(realWrite, folder: str, limit: int):  # type: ignore[no-untyped-def]
    """os.write that fails with ENOSPC past C{limit} bytes into files under C{folder}."""
    written = [0]

    def write(descriptor, data):  # type: ignore[no-untyped-def]
        try:
            target = os.readlink(f"/proc/self/fd/{descriptor}")
        except OSError:
            target = ""
        if not target.startswith(folder + "/"):
            return realWrite(descriptor, data)
        if written[0] >= limit:
            raise OSError(28, "No space left on device")
        count = realWrite(descriptor, data[:limit - written[0]])
        written[0] += count
        return count
    return write
