"""
The WebDAV destination: the contract on wsgidav (HTTP) and on nginx's DAV
modules (HTTPS, private CA), and its faults against real servers.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

from twisted.internet import reactor
from twisted.internet.abstract import FileDescriptor
from twisted.internet.protocol import Factory, Protocol
from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase

from backupremote.client.destinations import parseDestinationURL, putVerified
from backupremote.client.destinations.httpsession import SEND_LIMIT
from backupremote.client.destinations.httptls import PeerVerification
from backupremote.client.destinations.webdav import WebDAVDestination
from backupremote.protocol.errors import (
    DESTINATION_AUTH_FAILED,
    DESTINATION_IDENTITY_MISMATCH,
    DESTINATION_REFUSED,
    DESTINATION_UNREACHABLE,
    TIMEOUT,
    BackupRemoteError,
)
from tests.client.destinations.contract import DestinationFixture, makeDestinationTests
from tests.client.destinations.httpservers import (
    HOST,
    WebDAVServer,
    freePort,
    shared,
    startNginxDAV,
    startWsgiDAV,
)


def filesUnder(root: str) -> set[str]:
    found = set()
    for folder, _, files in os.walk(root):
        for name in files:
            found.add(os.path.relpath(os.path.join(folder, name), root))
    return found


def corruptFile(path: str) -> None:
    with open(path, "r+b") as f:
        first = f.read(1)
        f.seek(0)
        f.write(bytes([first[0] ^ 0xFF]) if first else b"\0")


def destinationOn(case: TestCase, server: WebDAVServer, folder: str,
                  password: str | None = None, **kwargs: Any) -> WebDAVDestination:
    if server.tls is not None and "verification" not in kwargs:
        kwargs["verification"] = PeerVerification(caPem=server.tls.caPem)
    destination = WebDAVDestination(
        reactor, parseDestinationURL(server.url(folder)),
        server.password if password is None else password, **kwargs)
    case.addCleanup(destination.close)
    return destination


def fixtureOn(kind: str) -> Any:
    async def fixture(case: TestCase) -> DestinationFixture:
        server = shared(kind)
        folder = server.newFolder()
        root = os.path.join(server.root, folder)
        return DestinationFixture(
            destinationOn(case, server, folder),
            corrupt=lambda name: corruptFile(os.path.join(root, name)),
            serverNames=lambda: filesUnder(root))
    return fixture


class WsgiDAVContractTests(makeDestinationTests(fixtureOn("wsgidav"))):  # type: ignore[misc]
    """The contract on wsgidav, over HTTP."""


#: nginx's dav_ext module leaves files whose name starts with a dot out of
#: PROPFIND answers, so our temporary names (".FILE.<hex>.partial") are
#: invisible to listFiles there (they are still read back, moved and deleted).
_HIDDEN = "nginx's PROPFIND hides dot files: temporary names are not listed"


class NginxDAVContractTests(makeDestinationTests(fixtureOn("nginx-tls"))):  # type: ignore[misc]
    """The contract on nginx's DAV modules, over HTTPS checked with a private CA."""

    def test_putIsTemporary(self) -> Any:
        return super().test_putIsTemporary()

    test_putIsTemporary.todo = _HIDDEN  # type: ignore[attr-defined]

    def test_folder(self) -> Any:
        return super().test_folder()

    test_folder.todo = _HIDDEN  # type: ignore[attr-defined]


class WebDAVConnectionTests(TestCase):
    timeout = 120

    async def test_widerSends(self) -> None:
        """
        The TCP transport under each HTTPS connection of an upload sends up
        to SEND_LIMIT bytes per write (Twisted's 128 KiB made uploads
        CPU-bound: docs/benchmarks.md), and the upload arrives whole.
        """
        server = shared("nginx-tls")
        folder = server.newFolder()
        destination = destinationOn(self, server, folder)
        source = FilePath(self.mktemp())
        data = os.urandom(3_000_000)
        source.setContent(data)
        stored = await putVerified(destination, source, "a.bin")
        self.assertEqual(stored.sha256, hashlib.sha256(data).hexdigest())
        with open(os.path.join(server.root, folder, "a.bin"), "rb") as f:
            self.assertEqual(f.read(), data)
        sockets = [protocol.transport.transport
                   for protocol in destination._session._pool._made]
        self.assertTrue(sockets)
        for socket in sockets:
            self.assertIsInstance(socket, FileDescriptor)
            self.assertEqual(socket.SEND_LIMIT, SEND_LIMIT)


class _Silent(Protocol):
    """Accepts a connection and never answers."""


class WebDAVFaultTests(TestCase):
    timeout = 120

    def setUp(self) -> None:
        self.source = FilePath(self.mktemp())
        self.data = os.urandom(2_000_000)
        self.source.setContent(self.data)

    def assertUntouched(self) -> None:
        self.assertEqual(hashlib.sha256(self.source.getContent()).digest(),
                         hashlib.sha256(self.data).digest())

    async def assertCode(self, code: str, deferred: Any) -> BackupRemoteError:
        try:
            await deferred
        except BackupRemoteError as e:
            self.assertEqual(e.code, code, str(e))
            return e
        self.fail(f"no {code} error")

    async def test_wrongPassword(self) -> None:
        """A wrong password is DESTINATION_AUTH_FAILED, and nothing is written."""
        server = shared("wsgidav")
        folder = server.newFolder()
        destination = destinationOn(self, server, folder, password="not-the-password")
        error = await self.assertCode(DESTINATION_AUTH_FAILED, destination.testConnection())
        self.assertNotIn("not-the-password", str(error))
        await self.assertCode(DESTINATION_AUTH_FAILED,
                              putVerified(destination, self.source, "a.bin"))
        self.assertEqual(filesUnder(os.path.join(server.root, folder)), set())
        self.assertUntouched()

    async def test_wrongPasswordNginx(self) -> None:
        server = shared("nginx-tls")
        destination = destinationOn(self, server, server.newFolder(), password="nope")
        await self.assertCode(DESTINATION_AUTH_FAILED, destination.testConnection())

    async def test_missingRoot(self) -> None:
        """A root folder that does not exist is refused (never created)."""
        server = shared("wsgidav")
        destination = destinationOn(self, server, "no-such-folder")
        await self.assertCode(DESTINATION_REFUSED, destination.testConnection())
        self.assertFalse(os.path.exists(os.path.join(server.root, "no-such-folder")))

    async def test_otherCA(self) -> None:
        """A certificate from a CA other than the one trusted is refused."""
        server = shared("nginx-tls")
        other = shared("wsgidav-tls")
        assert other.tls is not None
        destination = destinationOn(
            self, server, server.newFolder(),
            verification=PeerVerification(caPem=other.tls.caPem))
        error = await self.assertCode(DESTINATION_IDENTITY_MISMATCH, destination.testConnection())
        self.assertIn("CA file", error.message)
        await self.assertCode(DESTINATION_IDENTITY_MISMATCH,
                              putVerified(destination, self.source, "a.bin"))
        self.assertUntouched()

    async def test_nameMismatch(self) -> None:
        """A certificate from the trusted CA that does not name the host is refused."""
        server = startWsgiDAV(self, certificateName="someone-else.example")
        assert server.tls is not None
        folder = server.newFolder()
        destination = destinationOn(self, server, folder)
        error = await self.assertCode(DESTINATION_IDENTITY_MISMATCH, destination.testConnection())
        self.assertIn("127.0.0.1", error.message)
        await self.assertCode(DESTINATION_IDENTITY_MISMATCH,
                              putVerified(destination, self.source, "a.bin"))
        self.assertEqual(filesUnder(os.path.join(server.root, folder)), set())
        self.assertUntouched()
        # pinned, the same certificate is accepted: a pin does not check names
        pinned = destinationOn(self, server, folder,
                               verification=PeerVerification(fingerprints=[server.tls.fingerprint]))
        await pinned.testConnection()

    async def test_systemTrust(self) -> None:
        """Without a CA file or a pin, a private CA's certificate is not trusted."""
        server = shared("wsgidav-tls")
        destination = destinationOn(self, server, server.newFolder(),
                                    verification=PeerVerification())
        await self.assertCode(DESTINATION_IDENTITY_MISMATCH, destination.testConnection())

    async def test_pinned(self) -> None:
        """A pinned fingerprint is enough (whoever signed), and a wrong one is refused."""
        server = shared("wsgidav-tls")
        assert server.tls is not None
        folder = server.newFolder()
        pinned = destinationOn(self, server, folder,
                               verification=PeerVerification(fingerprints=[server.tls.fingerprint]))
        await pinned.testConnection()
        await putVerified(pinned, self.source, "pinned.bin")
        self.assertEqual(filesUnder(os.path.join(server.root, folder)), {"pinned.bin"})
        wrong = destinationOn(self, server, folder,
                              verification=PeerVerification(fingerprints=["AB" * 32]))
        error = await self.assertCode(DESTINATION_IDENTITY_MISMATCH, wrong.testConnection())
        self.assertEqual(error.details["actual"], server.tls.fingerprint)

    async def test_nothingListens(self) -> None:
        url = parseDestinationURL(f"webdav+http://alice@{HOST}:{freePort()}/dav")
        destination = WebDAVDestination(reactor, url, "pw")
        self.addCleanup(destination.close)
        await self.assertCode(DESTINATION_UNREACHABLE, destination.testConnection())

    async def test_stall(self) -> None:
        """A server that accepts and never answers is a TIMEOUT, after the stall timeout."""
        port = reactor.listenTCP(0, Factory.forProtocol(_Silent), interface=HOST)
        self.addCleanup(port.stopListening)
        url = parseDestinationURL(f"webdav+http://alice@{HOST}:{port.getHost().port}/dav")
        destination = WebDAVDestination(reactor, url, "pw", timeout=0.5)
        self.addCleanup(destination.close)
        await self.assertCode(TIMEOUT, destination.put(self.source, "a.bin"))

    async def test_stoppedMidUpload(self) -> None:
        """
        The server killed during the PUT: the upload fails as unreachable,
        nothing is under the final name, the local file is untouched.
        """
        server = startNginxDAV(self)
        folder = server.newFolder()
        root = os.path.join(server.root, folder)
        big = FilePath(self.mktemp())
        big.setContent(os.urandom(64 << 20))
        destination = destinationOn(self, server, folder)

        def progress(sent: int) -> None:
            if sent >= 8 << 20 and server.daemon.running:
                server.daemon.kill()

        error = await self.assertCode(
            DESTINATION_UNREACHABLE,
            putVerified(destination, big, "2026-01-01/big.zst", progress=progress))
        self.assertIn(server.url(folder).split("@")[1].split("/")[0], error.message)
        self.assertFalse(os.path.exists(os.path.join(root, "2026-01-01", "big.zst")))
        self.assertEqual(len(big.getContent()), 64 << 20)

    async def test_readBackDiffers(self) -> None:
        """A copy corrupted on the server after the upload is never moved to its name."""
        server = startWsgiDAV(self)
        folder = server.newFolder()
        root = os.path.join(server.root, folder)
        destination = destinationOn(self, server, folder)
        upload = await destination.put(self.source, "x.bin")
        corruptFile(os.path.join(root, upload.temporaryName))
        found = await destination.readBack(upload.temporaryName)
        self.assertNotEqual(found.sha256, upload.sha256)
        self.assertEqual(found.size, upload.size)
        self.assertUntouched()


class WebDAVRegistryTests(TestCase):
    """A stored WebDAV destination with --ca-file, opened by the registry, delivers."""

    timeout = 120

    async def test_build(self) -> None:
        from backupremote.client.destinations.registry import build
        from backupremote.client.destinations.stored import StoredDestination

        server = shared("nginx-tls")
        assert server.tls is not None
        folder = server.newFolder()
        stored = StoredDestination("id-1", "nas", "webdav", server.url(folder),
                                   caFile=server.tls.caFile)
        made = build(reactor, stored, server.password)
        self.assertIsInstance(made, WebDAVDestination)
        self.addCleanup(made.close)
        self.assertNotIn(server.password, made.location)
        source = FilePath(self.mktemp())
        source.setContent(b"through the registry")
        await made.testConnection()
        await putVerified(made, source, "r.bin")
        self.assertEqual(filesUnder(os.path.join(server.root, folder)), {"r.bin"})
