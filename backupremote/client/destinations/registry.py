"""
From a destination's name to a working L{IDestination}.

    registry = DestinationRegistry.inFolder(reactor, store, dataDir)
    stored = await registry.byName("nas")            # name or id; NOT_FOUND otherwise
    refs = await registry.references(["nas", "s3"])   # for JobRequest.destinations
    destination = await registry.open(stored)         # an IDestination, secret unsealed

The registry is the one place that unseals a destination's secret (with
the client's C{secrets.key}, 0600, made on first use) or reads it from its
0600 file, and builds the implementation of its type. Secrets go from
there into the destination object only: never into a log line, a message,
or a command line.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Iterable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.python.filepath import FilePath

from backupremote.client.destinations.interface import IDestination
from backupremote.client.destinations.stored import DestinationStore, StoredDestination
from backupremote.client.destinations.urls import parseDestinationURL
from backupremote.client.jobs.model import NamedDestination
from backupremote.configfile import configError
from backupremote.private import refuseShared
from backupremote.protocol.errors import CONFIG_INVALID, BackupRemoteError
from backupremote.reactors import IDestinationReactor
from backupremote.secretbox import SecretBox, SecretBoxError


def secretContext(destinationId: str) -> str:
    """The associated data a destination's secret is sealed with (bound to its row)."""
    return f"destination:{destinationId}"


def readSecretFile(path: str, what: str = "password file") -> str:
    """The first line of a 0600 file; refused if others may read it."""
    file = FilePath(path)
    refuseShared(file, f"destination {what}")
    try:
        value = file.getContent().decode("utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        raise configError(f"cannot read the destination {what} {path}") from None
    if not value or not value[0]:
        raise configError(f"the destination {what} {path} is empty")
    return value[0]


class DestinationRegistry:
    """
    The client's named destinations: find them by name or id, and open
    them as L{IDestination}s.

    @param box: makes the L{SecretBox} of the client's data folder, when a
        secret is first sealed or unsealed (so listing never creates a key).
    """

    def __init__(self, reactor: IDestinationReactor, store: DestinationStore,
                 box: Any = None) -> None:
        self._reactor = reactor
        self.store = store
        self._makeBox = box
        self._box: SecretBox | None = None

    @classmethod
    def inFolder(cls, reactor: IDestinationReactor, clientStore: Any,
                 dataDir: FilePath) -> DestinationRegistry:
        """The registry of a client's data folder (its store, its C{secrets.key})."""
        return cls(reactor, DestinationStore(clientStore), lambda: SecretBox.inDataDir(dataDir))

    # Finding

    def byName(self, nameOrId: str) -> Deferred[StoredDestination]:
        """
        The destination named (or whose id is) C{nameOrId}.

        @raise BackupRemoteError: C{NOT_FOUND}, with C{details.didYouMean}
            when a name is close.
        """
        return self.store.get(nameOrId)

    def references(self, namesOrIds: Iterable[str]) -> Deferred[tuple[NamedDestination, ...]]:
        """
        What a L{backupremote.client.jobs.JobRequest} names for each
        destination (a schedule's C{destinations}), in order.
        """

        async def work() -> tuple[NamedDestination, ...]:
            found = []
            for nameOrId in namesOrIds:
                found.append((await self.byName(nameOrId)).reference())
            return tuple(found)

        return Deferred.fromCoroutine(work())

    def list(self) -> Deferred[list[StoredDestination]]:
        return self.store.list()

    # Secrets

    @property
    def box(self) -> SecretBox:
        if self._box is None:
            if self._makeBox is None:
                raise BackupRemoteError(CONFIG_INVALID, (
                    "this client keeps no secrets (no data folder): give the password in a "
                    "file"))
            self._box = self._makeBox()
        return self._box

    def seal(self, destinationId: str, secret: str) -> str:
        """C{secret} sealed for the destination C{destinationId}."""
        return self.box.seal(secret, secretContext(destinationId))

    async def secretOf(self, destination: StoredDestination) -> str | None:
        """The destination's secret: unsealed, or read from its file; C{None} if none."""
        if destination.passwordFile is not None:
            return readSecretFile(destination.passwordFile)
        if not destination.hasSecret:
            return None
        sealed = await self.store.sealed(destination.id)
        if sealed is None:
            return None
        try:
            return self.box.open(sealed, secretContext(destination.id))
        except SecretBoxError as error:
            raise BackupRemoteError(CONFIG_INVALID, (
                f"the secret of destination {destination.name} cannot be read: {error} "
                "(was secrets.key replaced?); give it again with `backupremote dest update "
                f"{destination.name} --password-stdin`")) from None

    # Opening

    def open(self, destination: StoredDestination) -> Deferred[IDestination]:
        """The L{IDestination} of C{destination}, ready to use (close it after)."""

        async def work() -> IDestination:
            return build(self._reactor, destination, await self.secretOf(destination),
                         lambda: self._recordedUploads(destination.id))

        return Deferred.fromCoroutine(work())

    def openByName(self, nameOrId: str) -> Deferred[IDestination]:
        async def work() -> IDestination:
            return await self.open(await self.byName(nameOrId))

        return Deferred.fromCoroutine(work())


    def _recordedUploads(self, destinationId: str) -> Deferred[set[str]]:
        """The uploads to a destination that deliveries mean to resume (never stale)."""
        from backupremote.client.delivery.store import recordedUploads

        return recordedUploads(self.store.store, destinationId)


def _ca(destination: StoredDestination) -> FilePath | None:
    return FilePath(destination.caFile) if destination.caFile else None


def build(reactor: IDestinationReactor, destination: StoredDestination, secret: str | None,
          recorded: Callable[[], Awaitable[Collection[str]]] | None = None) -> IDestination:
    """
    The implementation of C{destination}'s type, with its secret;
    C{recorded}: the ids of its unfinished uploads that deliveries mean to
    resume (an S3 destination never aborts them as stale).
    """
    url: Any = parseDestinationURL(destination.url)
    kind = destination.type
    if kind == "local":
        from backupremote.client.destinations.local import LocalFolderDestination

        return LocalFolderDestination(reactor, FilePath(url.path))
    if kind == "sftp":
        from backupremote.client.destinations.sftp import SFTPDestination
        from backupremote.client.destinations.sshkeys import HostKeyPolicy, SSHCredentials

        keyFile = FilePath(destination.keyFile) if destination.keyFile else None
        if keyFile is not None:
            refuseShared(keyFile, "SSH key file")
        credentials = SSHCredentials(password=None if keyFile else secret, keyFile=keyFile,
                                     passphrase=secret if keyFile else None)
        knownHosts = FilePath(destination.knownHosts) if destination.knownHosts else None
        return SFTPDestination(reactor, url, credentials,
                               HostKeyPolicy(destination.hostKeys, knownHosts))
    if kind == "ftp":
        from backupremote.client.destinations.ftp import FTPDestination

        return FTPDestination(reactor, url, secret or "")
    if kind == "ftps":
        from backupremote.client.destinations.ftps import FTPSDestination

        return FTPSDestination(reactor, url, secret or "", caFile=_ca(destination),
                               fingerprints=destination.fingerprints, name=destination.name)
    verification = None
    if destination.caFile or destination.fingerprints:
        from backupremote.client.destinations.httptls import PeerVerification

        try:
            caPem = FilePath(destination.caFile).getContent() if destination.caFile else None
        except OSError as e:
            raise configError(f"cannot read the CA file {destination.caFile}: "
                              f"{e.strerror}") from None
        verification = PeerVerification(caPem, destination.fingerprints, destination.name)
    if kind == "webdav":
        from backupremote.client.destinations.webdav import WebDAVDestination

        return WebDAVDestination(reactor, url, secret, verification)
    if kind == "s3":
        try:
            from backupremote.client.destinations.s3 import S3Destination
        except ImportError:
            raise _notHere(kind) from None
        return S3Destination(reactor, url, secret or "", verification, recorded=recorded)
    if kind == "rclone":
        try:
            from backupremote.client.destinations import rclone
        except ImportError:
            raise _notHere(kind) from None
        return rclone.fromStored(reactor, destination, secret)
    raise _notHere(kind)


def _notHere(kind: str) -> BackupRemoteError:
    return BackupRemoteError(CONFIG_INVALID, (
        f"this version of backupremote cannot deliver to {kind} destinations yet"))
