"""
The SFTP destination against a real OpenSSH sshd on 127.0.0.1: the
contract, then logins, host keys and faults.
"""

from __future__ import annotations

import os
import subprocess

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase

from backupremote.client.destinations import SFTPURL, putVerified
from backupremote.client.destinations import sshconnect
from backupremote.client.destinations.sftp import SFTPDestination
from backupremote.client.destinations.sshkeys import (
    HostKeyPolicy,
    SSHCredentials,
    normalizeHostKeyFingerprint,
)
from backupremote.protocol.errors import (
    CONFIG_INVALID,
    DESTINATION_AUTH_FAILED,
    DESTINATION_FULL,
    DESTINATION_IDENTITY_MISMATCH,
    DESTINATION_REFUSED,
    DESTINATION_UNREACHABLE,
    BackupRemoteError,
)
from tests.client.destinations.contract import DestinationFixture, makeDestinationTests
from tests.client.destinations.servers import DestinationServer, shared, startSSH
from tests.client.destinations.test_local import corruptFile, filesUnder
from tests.databases.servers import HOST, freePort

OTHER_FINGERPRINT = "SHA256:" + "A" * 43


def sftpDestination(server: DestinationServer, root: FilePath, *,
                    credentials: SSHCredentials | None = None,
                    hostKeys: HostKeyPolicy | None = None, **kwargs) -> SFTPDestination:
    return SFTPDestination(
        reactor, SFTPURL(server.user, HOST, server.port, root.path),
        credentials or SSHCredentials(password=server.password),
        hostKeys or HostKeyPolicy((server.extra["hostKeyFingerprint"],)), **kwargs)


async def sftpFixture(case: TestCase) -> DestinationFixture:
    server = await shared(case, startSSH)
    root = server.newFolder()
    destination = sftpDestination(server, root)
    case.addCleanup(destination.close)
    return DestinationFixture(
        destination,
        corrupt=lambda name: corruptFile(root.preauthChild(name)),
        serverNames=lambda: filesUnder(root),
    )


class SFTPContractTests(makeDestinationTests(sftpFixture)):  # type: ignore[misc]
    """SFTP passes the contract against OpenSSH."""


class SFTPTests(TestCase):
    timeout = 120

    async def setUp(self) -> None:
        self.server = await shared(self, startSSH)
        self.root = self.server.newFolder()
        self.source = FilePath(self.mktemp())
        self.source.setContent(os.urandom(200_000))

    def destination(self, **kwargs) -> SFTPDestination:
        destination = sftpDestination(self.server, kwargs.pop("root", self.root), **kwargs)
        self.addCleanup(destination.close)
        return destination

    async def assertCode(self, code: str, attempt: Deferred) -> BackupRemoteError:
        with self.assertRaises(BackupRemoteError) as caught:
            await attempt
        self.assertEqual(caught.exception.code, code, str(caught.exception))
        return caught.exception

    async def test_keyLogin(self) -> None:
        """A key alone logs in."""
        destination = self.destination(credentials=SSHCredentials(
            keyFile=FilePath(self.server.extra["clientKey"])))
        stored = await putVerified(destination, self.source, "2026-11-03/k.zst")
        self.assertEqual(stored.size, 200_000)
        self.assertEqual(filesUnder(self.root), {"2026-11-03/k.zst"})

    async def test_negotiated(self) -> None:
        """
        Against OpenSSH the connection uses AES-128-GCM both ways (no
        per-packet HMAC), and a 3 MB put and its read-back over it are intact.
        """
        destination = self.destination()
        self.assertEqual(destination.negotiated, {})
        self.source.setContent(os.urandom(3_000_000))
        stored = await putVerified(destination, self.source, "2026-11-03/g.zst")
        self.assertEqual(stored.size, 3_000_000)
        self.assertEqual(
            {k: v for k, v in destination.negotiated.items() if k in ("out", "in")},
            {"out": "aes128-gcm@openssh.com", "in": "aes128-gcm@openssh.com"})
        self.assertEqual(self.root.descendant(["2026-11-03", "g.zst"]).getContent(),
                         self.source.getContent())

    async def test_rekey(self) -> None:
        """
        A key re-exchange in a session (OpenSSH starts one after 64 GiB with
        AES) switches to fresh AES-GCM keys without logging in again, and
        the put that starts during it is intact.
        """
        destination = self.destination()
        await putVerified(destination, self.source, "2026-11-03/before.zst")
        session = destination._session
        assert session is not None and session.transport is not None
        before = session.transport.currentEncryptions
        session.transport.sendKexInit()
        stored = await putVerified(destination, self.source, "2026-11-03/after.zst")
        self.assertIs(destination._session, session)
        self.assertIsNot(session.transport.currentEncryptions, before)
        self.assertEqual(destination.negotiated["out"], "aes128-gcm@openssh.com")
        self.assertEqual(stored.size, 200_000)

    def test_offeredAlgorithms(self) -> None:
        """Only sound algorithms are offered: no CBC, 3DES, MD5 or SHA-1."""
        transport = sshconnect._Transport
        self.assertEqual(transport.supportedCiphers[0], b"aes128-gcm@openssh.com")
        self.assertEqual([c for c in transport.supportedCiphers
                          if b"cbc" in c or b"3des" in c or c == b"none"], [])
        self.assertEqual(transport.supportedMACs, [b"hmac-sha2-256", b"hmac-sha2-512"])

    async def test_modes(self) -> None:
        await putVerified(self.destination(), self.source, "2026-11-03/m.zst")
        self.assertEqual(self.root.descendant(["2026-11-03", "m.zst"]).getPermissions()
                         .shorthand(), "rw-------")
        self.assertEqual(self.root.child("2026-11-03").getPermissions().shorthand(),
                         "rwx------")

    async def test_wrongPassword(self) -> None:
        destination = self.destination(credentials=SSHCredentials(password="not-it"))
        error = await self.assertCode(DESTINATION_AUTH_FAILED, destination.testConnection())
        self.assertNotIn("not-it", str(error))
        self.assertIn(self.server.user, str(error))

    async def test_wrongKey(self) -> None:
        other = FilePath(self.mktemp())
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", other.path],
                       check=True)
        destination = self.destination(credentials=SSHCredentials(keyFile=other))
        await self.assertCode(DESTINATION_AUTH_FAILED, destination.put(self.source, "a.zst"))
        self.assertEqual(filesUnder(self.root), set())

    async def test_hostKeyMismatch(self) -> None:
        """A pinned fingerprint that is not the server's: refused before the login."""
        destination = self.destination(hostKeys=HostKeyPolicy((OTHER_FINGERPRINT,)))
        logged = os.path.getsize(self.server.log)
        error = await self.assertCode(DESTINATION_IDENTITY_MISMATCH,
                                      destination.put(self.source, "a.zst"))
        self.assertIn(self.server.extra["hostKeyFingerprint"], str(error))
        self.assertEqual(filesUnder(self.root), set())
        self.assertNotIn(f"Accepted password for {self.server.user}", _since(self.server, logged))

    async def test_nothingPinned(self) -> None:
        await self.assertCode(DESTINATION_IDENTITY_MISMATCH,
                              self.destination(hostKeys=HostKeyPolicy()).testConnection())

    async def test_rotation(self) -> None:
        """Several pins: any of them is trusted (a key rotation)."""
        await self.destination(hostKeys=HostKeyPolicy(
            (OTHER_FINGERPRINT, self.server.extra["hostKeyFingerprint"]))).testConnection()

    async def test_knownHosts(self) -> None:
        known = FilePath(self.mktemp())
        known.setContent(self.server.extra["knownHosts"].encode())
        await self.destination(hostKeys=HostKeyPolicy(knownHosts=known)).testConnection()

    async def test_knownHostsChanged(self) -> None:
        other = FilePath(self.mktemp())
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", other.path],
                       check=True)
        known = FilePath(self.mktemp())
        known.setContent(f"[{HOST}]:{self.server.port} ".encode()
                         + b" ".join(other.siblingExtension(".pub").getContent().split()[:2]))
        error = await self.assertCode(
            DESTINATION_IDENTITY_MISMATCH,
            self.destination(hostKeys=HostKeyPolicy(knownHosts=known, acceptNew=True))
            .testConnection())
        self.assertIn("CHANGED", str(error))

    async def test_knownHostsUnknown(self) -> None:
        """A host known_hosts does not know: refused, unless accept-new, which records it."""
        known = FilePath(self.mktemp())
        known.setContent(b"")
        await self.assertCode(DESTINATION_IDENTITY_MISMATCH, self.destination(
            hostKeys=HostKeyPolicy(knownHosts=known)).testConnection())
        self.assertEqual(known.getContent(), b"")
        await self.destination(
            hostKeys=HostKeyPolicy(knownHosts=known, acceptNew=True)).testConnection()
        self.assertNotEqual(known.getContent(), b"")
        await self.destination(hostKeys=HostKeyPolicy(knownHosts=known)).testConnection()

    async def test_insecure(self) -> None:
        """Insecure mode connects to any key, and says so in the log each time."""
        from twisted.logger import globalLogPublisher
        seen: list[dict] = []
        globalLogPublisher.addObserver(seen.append)
        self.addCleanup(globalLogPublisher.removeObserver, seen.append)
        await self.destination(hostKeys=HostKeyPolicy(insecure=True)).testConnection()
        self.assertTrue(any("INSECURE" in event.get("log_format", "") for event in seen))

    def test_fingerprintForms(self) -> None:
        fingerprint = self.server.extra["hostKeyFingerprint"]
        self.assertEqual(normalizeHostKeyFingerprint(fingerprint[7:] + "="), fingerprint)
        for bad in ("MD5:aa:bb", "SHA256:short", "", "SHA256:" + "!" * 43):
            with self.assertRaises(BackupRemoteError) as caught:
                normalizeHostKeyFingerprint(bad)
            self.assertEqual(caught.exception.code, CONFIG_INVALID)

    async def test_unreachable(self) -> None:
        destination = SFTPDestination(
            reactor, SFTPURL("u", HOST, freePort(), "/x"), SSHCredentials(password="p"),
            HostKeyPolicy((OTHER_FINGERPRINT,)))
        self.addCleanup(destination.close)
        await self.assertCode(DESTINATION_UNREACHABLE, destination.testConnection())

    async def test_missingRoot(self) -> None:
        destination = self.destination(root=self.root.child("absent"))
        await self.assertCode(DESTINATION_REFUSED, destination.testConnection())
        await self.assertCode(DESTINATION_REFUSED, destination.put(self.source, "x/a.zst"))

    async def test_reconnects(self) -> None:
        """A connection the server dropped is opened again by the next operation."""
        destination = self.destination()
        await destination.testConnection()
        assert destination._session is not None and destination._session.transport is not None
        destination._session.transport.transport.abortConnection()
        await destination._session.lost
        await putVerified(destination, self.source, "again.zst")

    async def test_serverStoppedMidUpload(self) -> None:
        """
        The server (and its sessions) killed during an upload: UNREACHABLE,
        nothing under the final name, the local file untouched.
        """
        server = await startSSH(self)
        root = server.newFolder()
        source = FilePath(self.mktemp())
        source.setContent(os.urandom(40 * 1024 * 1024))
        before = source.getContent()
        destination = sftpDestination(server, root)
        self.addCleanup(destination.close)

        def progress(sent: int) -> None:
            if sent >= 4 * 1024 * 1024 and server.running:
                server.kill()
        await self.assertCode(DESTINATION_UNREACHABLE,
                              putVerified(destination, source, "big.zst", progress=progress))
        self.assertNotIn("big.zst", filesUnder(root))
        self.assertEqual(source.getContent(), before)

    async def test_diskFull(self) -> None:
        """A full disk on the server's side (a 1 MiB tmpfs): DESTINATION_FULL, no file left."""
        root = self.server.newFolder()
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", root.path],
                       check=True)
        self.addCleanup(subprocess.run, ["umount", root.path], check=True)
        os.chown(root.path, *_ids(self.server.user))
        source = FilePath(self.mktemp())
        source.setContent(os.urandom(3 * 1024 * 1024))
        await self.assertCode(DESTINATION_FULL,
                              putVerified(self.destination(root=root), source, "full.zst"))
        self.assertEqual(filesUnder(root), set())


def _ids(user: str) -> tuple[int, int]:
    import pwd
    entry = pwd.getpwnam(user)
    return entry.pw_uid, entry.pw_gid


def _since(server: DestinationServer, offset: int) -> str:
    """What the server logged past C{offset}."""
    with open(server.log, "rb") as handle:
        handle.seek(offset)
        return handle.read().decode("utf-8", "replace")
