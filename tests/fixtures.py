"""
A whole server core on a fake clock and in-memory connections.

L{ServerHarness} builds the real L{ServerComponents} (real store in a temp folder,
real licence verifier and authenticator) with a L{Clock}; L{Loopback} joins
a L{ServerProtocol} to a plain AMP client through L{twisted.test.iosim}, so
every box really is serialised and parsed on both sides.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

from attrs import evolve
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from twisted.internet.defer import succeed
from twisted.internet.task import Clock
from twisted.protocols import amp
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath
from twisted.test.iosim import FakeTransport, IOPump, connect

from backupremote.license import DEFAULT_FEATURES, License, signLicense
from backupremote.protocol.errors import BackupRemoteError
from backupremote.protocol.runs import BackupComplete, BackupFailed, BackupProgress
from backupremote.protocol.session import Auth, Ping
from backupremote.protocol.versions import CURRENT_API_VERSION
from backupremote.server.config import ServerConfig
from backupremote.server.edge.protocol import ServerProtocol
from backupremote.server.responders.groups import RESPONDER_GROUPS
from backupremote.server.service import buildComponents
from backupremote.server.staging import StagingArea
from backupremote.server.staging.expiry import StagingJanitor
from backupremote.server.state.secrethash import hashSecret

CLIENT_ID = "alice"
SECRET = "correct-horse-battery-staple-" + "s3cr3t"
START = datetime(2026, 11, 1, tzinfo=timezone.utc)

_SECRET_HASH = hashSecret(SECRET)


async def unavailableProducer(*args: Any) -> Any:
    """Unit tests that run backups pass their own producer."""
    raise AssertionError("this test did not expect a backup to run")


def synchronously(function: Any, *args: Any) -> Any:
    """A C{runInThread} that runs in the calling thread (tests only)."""
    return succeed(function(*args))


class ServerHarness:
    """A real server core whose time and connections tests control."""

    def __init__(
        self, testCase: Any, responderGroups: tuple = RESPONDER_GROUPS,
        runInThread: Any = synchronously, produce: Any = None,
        tempDir: FilePath | None = None, **config: Any,
    ) -> None:
        self.clock = Clock()
        self.clock.advance(START.timestamp())
        self.issuerKey = Ed25519PrivateKey.generate()
        dataDir = FilePath(testCase.mktemp())
        config.setdefault("toolPath", ())  # no programs: nothing is spawned
        self.config = ServerConfig(
            dataDir=dataDir,
            tlsKey=dataDir.child("unused.key"),
            tlsCert=dataDir.child("unused.crt"),
            **config,
        )
        #: this server's staging, in C{tempDir} (default: a temp folder of the test's own)
        if tempDir is None:
            tempDir = FilePath(testCase.mktemp())
            tempDir.makedirs()
        self.staging = StagingArea.forDataDir(dataDir, tempDir)
        # The service's own wiring, with this test's clock, key and doubles.
        self.core = buildComponents(self.config, self.clock, runInThread,
                                    produce or unavailableProducer,
                                    trustedKeys=(self.issuerKey.public_key(),),
                                    staging=self.staging)
        self.responderGroups = responderGroups
        self.store = self.core.store
        testCase.addCleanup(self.store.close)
        self.store.addClient(CLIENT_ID, _SECRET_HASH)
        self.metrics = self.core.metrics
        self.tools = self.core.tools
        self.verifier = self.core.authenticator.verifier
        self.scripts = self.core.scripts
        self.databases = self.core.databases
        self.busyConfigs = self.databases.busy
        self.artifacts = self.core.artifacts
        self.transfers = self.core.transfers
        self.runs = self.core.runs
        testCase.addCleanup(self.runs.stop)
        #: started by the tests that want the start-up sweep and TTL expiry
        self.janitor = StagingJanitor(self.artifacts, self.clock)
        testCase.addCleanup(lambda: self.janitor.running and self.janitor.stopService())

    def license(
        self,
        clientId: str = CLIENT_ID,
        features: tuple[str, ...] = DEFAULT_FEATURES,
        notBefore: datetime | None = None,
        expiresAt: datetime | None = None,
        key: Ed25519PrivateKey | None = None,
    ) -> str:
        """A signed token; by default valid for 30 days from now for alice."""
        now = datetime.fromtimestamp(self.clock.seconds(), timezone.utc)
        return signLicense(
            License(
                licenseId=str(uuid.uuid4()),
                licensee="Alice's company",
                clientId=clientId,
                features=features,
                notBefore=notBefore or now - timedelta(days=1),
                expiresAt=expiresAt or now + timedelta(days=30),
            ),
            key or self.issuerKey,
        )

    def withConfig(self, **changes: Any) -> None:
        self.config = evolve(self.config, **changes)
        self.core.config = self.config
        self.artifacts.ttl = self.config.artifactTtl
        self.artifacts.maxBytes = self.config.stagingMaxBytes
        self.transfers.maxConcurrent = self.config.maxConcurrentTransfers
        self.transfers.maxPerClient = self.config.maxTransfersPerClient
        self.transfers.stallTimeout = self.config.transferStallTimeout

    def serverProtocol(self, peerHost: str = "192.0.2.10", port: int = 40000) -> ServerProtocol:
        """The server's end of a new connection from C{peerHost}."""
        return ServerProtocol(self.core, f"{peerHost}:{port}", peerHost, self.responderGroups)

    def connect(self, peerHost: str = "192.0.2.10", port: int = 40000,
                client: amp.AMP | None = None) -> Loopback:
        server = self.serverProtocol(peerHost, port)
        client = client if client is not None else EventRecorder()
        pump = connect(
            server, FakeTransport(server, isServer=True),
            client, FakeTransport(client, isServer=False),
            clock=self.clock,
        )
        return Loopback(server, client, pump)


class EventRecorder(amp.AMP):
    """A test client that answers pings and records the run events pushed to it."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[Any] = []

    @BackupProgress.responder
    def progress(self, event: Any) -> dict[str, Any]:
        self.events.append(event)
        return {}

    @BackupComplete.responder
    def complete(self, event: Any) -> dict[str, Any]:
        self.events.append(event)
        return {}

    @BackupFailed.responder
    def failed(self, event: Any) -> dict[str, Any]:
        self.events.append(event)
        return {}

    @Ping.responder
    def ping(self, requestId: Any = None) -> dict[str, Any]:
        return {}


class Loopback:
    """One in-memory connection: call commands and get results synchronously."""

    def __init__(self, server: ServerProtocol, client: amp.AMP, pump: IOPump) -> None:
        self.server = server
        self.client = client
        self.pump = pump
        self.lost: list[Failure] = []
        originalLost = client.connectionLost

        def connectionLost(reason: Failure) -> None:
            self.lost.append(reason)
            originalLost(reason)

        client.connectionLost = connectionLost  # type: ignore[method-assign]

    @property
    def closed(self) -> bool:
        return bool(self.lost)

    def result(self, deferred: Any) -> Any:
        """Flush the pump and return what C{deferred} fired with."""
        outcome: list[Any] = []
        deferred.addBoth(outcome.append)
        self.pump.flush()
        if not outcome:
            raise AssertionError("no answer arrived")
        return outcome[0]

    def call(self, command: Any, **arguments: Any) -> dict[str, Any]:
        """The answer of C{command}, or raise the L{BackupRemoteError} it got."""
        outcome = self.result(self.client.callRemote(command, **arguments))
        if isinstance(outcome, Failure):
            if outcome.check(amp.RemoteAmpError):
                raise BackupRemoteError.fromDescription(
                    outcome.value.errorCode, outcome.value.description
                )
            outcome.raiseException()
        return outcome

    def error(self, command: Any, **arguments: Any) -> BackupRemoteError:
        """The error C{command} answers (fails if it succeeds)."""
        try:
            answer = self.call(command, **arguments)
        except BackupRemoteError as error:
            return error
        raise AssertionError(f"{command.commandName!r} succeeded: {answer!r}")

    def sendBox(self, box: dict[bytes, bytes]) -> amp.AmpBox | None:
        """Send a raw box; return the raw answer or error box, if any came."""
        received: list[amp.AmpBox] = []
        original = self.client.ampBoxReceived
        self.client.ampBoxReceived = received.append  # type: ignore[method-assign]
        try:
            self.client.transport.write(amp.AmpBox(box).serialize())
            self.pump.flush()
        finally:
            self.client.ampBoxReceived = original  # type: ignore[method-assign]
        return received[0] if received else None

    def auth(self, harness: ServerHarness, **overrides: Any) -> dict[str, Any]:
        arguments = {
            "clientId": CLIENT_ID,
            "secret": SECRET,
            "license": harness.license(),
            "apiVersion": CURRENT_API_VERSION,
        } | overrides
        return self.call(Auth, **arguments)


def errorBody(box: amp.AmpBox) -> dict[str, Any]:
    """The JSON C{_error_description} of a raw error box."""
    return json.loads(box[b"_error_description"])
