"""Responders for fetching staged artifacts: manifest, chunk hashes, transfers, release."""

from __future__ import annotations

from typing import Any

from twisted.protocols.amp import CommandLocator

from backupremote.protocol.transfers import (
    FileChunkHashes,
    FileTransferStart,
    FileTransferStop,
    ListFiles,
    ReleaseArtifact,
)
from backupremote.server.edge.session import RequestContext
from backupremote.server.staging.artifacts import StagedArtifacts
from backupremote.server.transfers.registry import TransferRegistry


class TransferResponders(CommandLocator):
    """Files are named by runId and fileId only; a client sees only its own."""

    def __init__(self, artifacts: StagedArtifacts, transfers: TransferRegistry,
                 connection: Any) -> None:
        self.artifacts = artifacts
        self.transfers = transfers
        self.connection = connection

    @ListFiles.responder
    async def listFiles(self, request: RequestContext, runId: str) -> dict[str, Any]:
        staged = await self.artifacts.staged(request.session.clientId, runId)
        return {"manifest": staged.manifest}

    @FileChunkHashes.responder
    async def fileChunkHashes(self, request: RequestContext, fileId: str,
                              start: int) -> dict[str, Any]:
        staged = await self.artifacts.byFile(request.session.clientId, fileId)
        return {"hashes": self.artifacts.digests(staged, start)}

    @FileTransferStart.responder
    async def fileTransferStart(self, request: RequestContext, fileId: str,
                                startChunk: int) -> dict[str, Any]:
        transferId, chunkCount = await self.transfers.start(
            self.connection, request.session.clientId, fileId, startChunk)
        request.log.info("fileTransferStart {fileId} from chunk {start}: {transferId}",
                         fileId=fileId, start=startChunk, transferId=transferId)
        return {"transferId": transferId, "chunkCount": chunkCount}

    @FileTransferStop.responder
    def fileTransferStop(self, request: RequestContext, transferId: str) -> dict[str, Any]:
        self.transfers.stop(self.connection, transferId)
        return {}

    @ReleaseArtifact.responder
    def releaseArtifact(self, request: RequestContext, runId: str) -> dict[str, Any]:
        released = self.artifacts.release(request.session.clientId, runId)
        request.log.info("releaseArtifact {runId}: {what}", runId=runId,
                         what="released" if released else "nothing left to release")
        return {"released": released}
