"""
Staged artifacts without databases: a producer that writes random bytes,
and a test client that records (and can hold back answers to) chunk boxes.
"""

from __future__ import annotations

import os
import random
from typing import Any

from twisted.internet.defer import Deferred
from twisted.python.filepath import FilePath

from backupremote.protocol.databases import (
    CreateDatabaseConfig,
    DatabaseConfigInput,
    PreflightReport,
)
from backupremote.protocol.options import BackupOptions
from backupremote.protocol.runs import ExecuteBackup, GetExecutionStatus
from backupremote.protocol.transfers import (
    FileChunk,
    FileTransferAborted,
    FileTransferComplete,
    FileTransferProgress,
)
from backupremote.server.pipeline import Artifact
from tests.fixtures import EventRecorder, ServerHarness


def randomBytes(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


class RandomProducer:
    """Makes each run's artifact at once: C{sizes[runId]} random bytes (default 1 MB)."""

    def __init__(self) -> None:
        self.sizes: dict[str, int] = {}
        self.data: dict[str, bytes] = {}

    async def __call__(self, reactor: Any, engine: Any, target: Any, options: BackupOptions,
                       tools: Any, runDir: FilePath, baseName: str, progress: Any,
                       sizeEstimate: Any) -> Artifact:
        runId = runDir.basename()
        data = randomBytes(self.sizes.get(runId, 1_000_000), seed=hash(runId) & 0xFFFF)
        self.data[runId] = data
        artifact = runDir.child(baseName + ".bin")
        artifact.setContent(data)
        return Artifact(artifact, artifact.basename(), len(data), "sha256", "", [])


class ChunkRecorder(EventRecorder):
    """A test client that records the transfer stream and can hold its answers back."""

    def __init__(self) -> None:
        super().__init__()
        self.boxes: list[tuple[str, int, list[bytes]]] = []
        self.progress: list[tuple[str, int, int]] = []
        self.completed: list[tuple[str, int, str]] = []
        self.aborted: list[tuple[str, str, str]] = []
        self.holding = False
        self.held: list[Deferred[dict[str, Any]]] = []

    @FileChunk.responder
    def fileChunk(self, transferId: str, index: int, chunks: list[bytes]) -> Any:
        self.boxes.append((transferId, index, chunks))
        if self.holding:
            answer: Deferred[dict[str, Any]] = Deferred()
            self.held.append(answer)
            return answer
        return {}

    @FileTransferProgress.responder
    def fileTransferProgress(self, transferId: str, chunksSent: int,
                             bytesSent: int) -> dict[str, Any]:
        self.progress.append((transferId, chunksSent, bytesSent))
        return {}

    @FileTransferComplete.responder
    def fileTransferComplete(self, transferId: str, sizeBytes: int,
                             sha256: str) -> dict[str, Any]:
        self.completed.append((transferId, sizeBytes, sha256))
        return {}

    @FileTransferAborted.responder
    def fileTransferAborted(self, transferId: str, errorCode: str,
                            errorMessage: str) -> dict[str, Any]:
        self.aborted.append((transferId, errorCode, errorMessage))
        return {}

    def release(self, count: int | None = None) -> None:
        """Answer the C{count} oldest held boxes (all by default)."""
        count = len(self.held) if count is None else count
        for answer in self.held[:count]:
            answer.callback({})
        del self.held[:count]

    def received(self, transferId: str | None = None) -> bytes:
        return b"".join(b"".join(chunks) for t, _, chunks in self.boxes
                        if transferId is None or t == transferId)


class StagingMixin:
    """A server harness whose runs stage random artifacts in a private temp folder."""

    harness: ServerHarness

    def setUpStaging(self, tempDir: FilePath | None = None, **config: Any) -> None:
        roots = FilePath(self.mktemp())  # type: ignore[attr-defined]
        roots.makedirs()
        self.producer = RandomProducer()
        self.harness = ServerHarness(self, produce=self.producer, sqliteRoots=(roots,),
                                     keepaliveInterval=1e6, authTimeout=1e6,
                                     maxQueuedRuns=8, tempDir=tempDir, **config)
        self.preflightReport = PreflightReport(ok=True, blockers=[], warnings=[],
                                               sizeEstimate=1000)

        async def preflight(configId: str, options: Any) -> PreflightReport:
            return self.preflightReport

        self.patch(self.harness.databases, "preflight", preflight)  # type: ignore[attr-defined]
        self.client = self.connect()
        database = roots.child("db.sqlite3")
        database.setContent(b"")
        self.configId = self.client.call(CreateDatabaseConfig, config=DatabaseConfigInput(
            name="db", engine="sqlite", path=database.path))["config"].id

    def connect(self, port: int = 40000, clientId: str | None = None) -> Any:
        loopback = self.harness.connect(port=port, client=ChunkRecorder())
        if clientId is None:
            loopback.auth(self.harness)
        else:
            loopback.auth(self.harness, clientId=clientId, secret=clientId + "-secret-" * 3,
                          license=self.harness.license(clientId=clientId))
        return loopback

    def stage(self, runId: str, size: int = 1_000_000) -> Any:
        """Run a backup to completion; its final status (with the artifact)."""
        self.producer.sizes[runId] = size
        self.client.call(ExecuteBackup, runId=runId, databaseConfigId=self.configId)
        self.client.pump.flush()
        status = self.client.call(GetExecutionStatus, runId=runId)["status"]
        assert status.state == "completed", status
        return status

    def addClient(self, clientId: str) -> Any:
        from backupremote.server.state.secrethash import hashSecret
        self.harness.store.addClient(clientId, hashSecret(clientId + "-secret-" * 3))
        return self.connect(port=41000 + len(clientId), clientId=clientId)




def folderNames(path: FilePath) -> list[str]:
    return sorted(os.listdir(path.path)) if path.exists() else []
