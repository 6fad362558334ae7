"""
The server as a Twisted service: read this file first.

L{makeService} builds everything from a L{ServerConfig}: the state store,
the licence verifier, the authenticator, the JSON log file, and the TLS
listener whose connections each run a gated L{ServerProtocol}.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from twisted.application.service import IService, MultiService
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from backupremote.license import LicenseVerifier, loadTrustedKey
from backupremote.logfile import withLogFile
from backupremote.metrics import MetricsService, ServerCollector
from backupremote.reactors import IServerReactor, IWorkReactor
from backupremote.secretbox import SecretBox
from backupremote.server.config import ServerConfig
from backupremote.server.databases.busy import BusyConfigs
from backupremote.server.databases.service import DatabaseConfigs
from backupremote.server.databases.store import DatabaseConfigStore
from backupremote.server.edge.authenticator import Authenticator
from backupremote.server.edge.components import ServerComponents
from backupremote.server.edge.factory import ServerFactory
from backupremote.server.edge.listener import TLSEndpoint
from backupremote.server.edge.revocation import RevocationSweep
from backupremote.server.edge.throttle import PeerThrottle
from backupremote.server.engines import defaultEngines
from backupremote.server.engines.base import IEngine
from backupremote.server.machinery.compressors import compressorPrograms
from backupremote.server.machinery.toolfinder import ToolFinder
from backupremote.server.pipeline import produceArtifact
from backupremote.server.responders.session import ServerOffers
from backupremote.server.runs.manager import RunManager
from backupremote.server.runs.scripts import PostScripts
from backupremote.server.runs.store import RunStore
from backupremote.server.staging import StagingArea
from backupremote.server.staging.artifacts import StagedArtifacts
from backupremote.server.staging.expiry import StagingJanitor
from backupremote.server.state.metrics import Metrics
from backupremote.server.state.ownership import Ownership
from backupremote.server.state.store import ServerStore
from backupremote.server.transfers.registry import TransferRegistry


_log = Logger(namespace="backupremote.server.service")


def buildComponents(config: ServerConfig, reactor: IWorkReactor, runInThread: Any = None,
                    produce: Any = None, trustedKeys: tuple[Any, ...] | None = None,
                    staging: StagingArea | None = None,
                    engines: Mapping[str, IEngine] | None = None) -> ServerComponents:
    """
    The shared server state, from configuration (opens the store).

    @param produce: what makes an artifact (default: the real pipeline);
        tests pass a fake.
    @param trustedKeys: the licence issuers' public keys (default: loaded
        from the config's C{trusted_issuers} files).
    @param staging: where runs are staged (default: this data folder's
        runs folder in the OS temp folder).
    @param engines: the database engines by name (default: every engine).
    """
    metrics = Metrics(startedAt=reactor.seconds())
    if staging is None:
        staging = StagingArea.forDataDir(config.dataDir)
    if engines is None:
        engines = defaultEngines()
    store = ServerStore.inDataDir(config.dataDir, reactor)
    if trustedKeys is None:
        trustedKeys = tuple(loadTrustedKey(path) for path in config.trustedIssuers)
    verifier = LicenseVerifier(
        trustedKeys=trustedKeys,
        clock=reactor,
        onDenied=lambda code: metrics.increment(f"license.denied.{code}"),
    )
    if runInThread is None:
        def runInThread(function: Any, *args: Any) -> Deferred[Any]:
            return deferToThreadPool(reactor, reactor.getThreadPool(), function, *args)
    authenticator = Authenticator(
        store=store,
        verifier=verifier,
        throttle=PeerThrottle(reactor, config.maxFailedAuthsPerPeer, config.peerLockoutSeconds),
        metrics=metrics,
        runInThread=runInThread,
    )
    tools = ToolFinder(reactor, config.toolPath)
    scripts = PostScripts(reactor, config.postScriptsDir, config.postScriptTimeout)
    ownership = Ownership(config.adminClients)
    # the configurations a run uses now: the runs keep it, deletion asks it
    busy = BusyConfigs()
    databases = DatabaseConfigs(
        DatabaseConfigStore(store.connection), SecretBox.inDataDir(config.dataDir),
        config, reactor, tools, busy, engines=engines, staging=staging,
        scripts=scripts, ownership=ownership,
    )
    produce = produce or produceArtifact
    # the record a run's admission answers for waits for the disk in a thread
    runStore = RunStore(store.connection, store.walFlush(runInThread))
    artifacts = StagedArtifacts(reactor, staging, runStore, runInThread,
                                config.artifactTtl, config.stagingMaxBytes, ownership=ownership)
    runs = RunManager(
        reactor, runStore, databases, produce, scripts, staging, engines, busy,
        maxConcurrent=config.maxConcurrentRuns, maxQueued=config.maxQueuedRuns,
        progressInterval=config.progressInterval,
        finalize=artifacts.finalize, checkStagingRoom=artifacts.checkRoom, metrics=metrics,
    )
    return ServerComponents(
        config=config, clock=reactor, store=store, authenticator=authenticator,
        metrics=metrics, tools=tools, databases=databases, runs=runs,
        artifacts=artifacts, scripts=scripts,
        offers=ServerOffers(engines, tools, mutualTLS=config.clientCA is not None),
        transfers=TransferRegistry(reactor, artifacts, config.maxConcurrentTransfers, metrics,
                                   maxPerClient=config.maxTransfersPerClient,
                                   stallTimeout=config.transferStallTimeout),
    )


class ListeningService(MultiService):
    """Listens while running; on stop, closes the port and every connection."""

    def __init__(self, core: ServerComponents, endpoint: TLSEndpoint) -> None:
        super().__init__()
        self.core = core
        self._endpoint = endpoint
        self._listening: Deferred[Any] | None = None
        #: the tools' versions being asked at start (fires when all have answered)
        self.toolsWarmed: Deferred[None] | None = None

    def startService(self) -> None:
        super().startService()
        interrupted = self.core.runs.recover()
        if interrupted:
            _log.warn("{count} run(s) were interrupted by the last stop and marked failed",
                      count=len(interrupted))
        self.core.refusals.start()
        self._listening = self._endpoint.listen(ServerFactory(self.core))
        self._listening.addCallback(self._announce)
        self._listening.addCallback(self._warmTools)

    def _announce(self, port: Any) -> Any:
        """The start-up line: where it listens, what clients pin, where its data is."""
        address = port.getHost()
        _log.info("listening on {host}:{port} (TLS), certificate SHA-256 fingerprint "
                  "{fingerprint}, data folder {dataDir}", host=address.host,
                  port=address.port, fingerprint=self._endpoint.fingerprint,
                  dataDir=self.core.config.dataDir.path)
        return port

    def _warmTools(self, port: Any) -> Any:
        """
        Once listening, ask every tool an engine or a compressor uses its
        version: the first runs commanded of a fresh server found none
        cached, and each waited for a C{--version} child in its preflight.
        """
        programs = [program for engine in self.core.databases.engines.values()
                    for program in engine.programs]
        self.toolsWarmed = Deferred.fromCoroutine(
            self.core.tools.warm([*programs, *compressorPrograms()]))
        return port

    def whenListening(self) -> Deferred[Any]:
        """Fires with the listening port (its C{getHost()} tells the port)."""
        assert self._listening is not None, "the service is not running"
        result: Deferred[Any] = Deferred()
        self._listening.addCallback(lambda port: (result.callback(port), port)[1])
        return result

    def reloadCertificate(self) -> str:
        """
        New connections get the TLS key and certificate files as they are
        now; returns the certificate's fingerprint.

        @raise BackupRemoteError: C{CONFIG_INVALID} if they are not a usable
            pair; the ones in use stay.
        """
        return self._endpoint.reloadCertificate()

    async def _stop(self) -> None:
        assert self._listening is not None
        self.core.runs.stop()
        port = await self._listening
        await maybeDeferred(port.stopListening)
        for connection in list(self.core.connections):
            connection.transport.abortConnection()
        self.core.refusals.stop()
        if self.toolsWarmed is not None:
            await self.toolsWarmed  # its children end in moments (each has a timeout)
        self.core.store.close()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        return Deferred.fromCoroutine(self._stop())


def makeService(config: ServerConfig, reactor: IServerReactor | None = None,
                produce: Any = None,
                staging: StagingArea | None = None) -> IService:
    """
    The whole server, ready to be started or embedded in an application.

    @param staging: where runs are staged (default: this data folder's runs
        folder in the OS temp folder).
    """
    if reactor is None:
        from twisted.internet import reactor as globalReactor

        # the global reactor provides every interface a server uses
        reactor = cast(IServerReactor, globalReactor)
    top = withLogFile(config.logFile)
    core = buildComponents(config, reactor, produce=produce, staging=staging)
    listening = ListeningService(core, TLSEndpoint(reactor, config))
    listening.setName("listener")
    listening.setServiceParent(top)
    # after the listener, whose start recovers interrupted runs first
    janitor = StagingJanitor(core.artifacts, reactor)
    janitor.setName("staging")
    janitor.setServiceParent(top)
    revocations = RevocationSweep(core, reactor)
    revocations.setName("revocations")
    revocations.setServiceParent(top)
    if config.metrics.enabled:
        metrics = MetricsService(reactor, config.metrics, ServerCollector.registryFor(core, reactor))
        metrics.setName("metrics")
        metrics.setServiceParent(top)
    return top
