"""
Every active transfer of the server (C{core.transfers}).

A transfer belongs to the connection that started it: only that connection
receives its chunks and may stop it. The number of transfers at once is
capped server-wide and per client (all its connections together), so that
one client cannot hold every slot; each holds a lease on its artifact from
its start to its end (completion, ``fileTransferStop``, a refused chunk,
the loss of the connection, or a stall: no box acknowledged for
C{stallTimeout} seconds).
"""

from __future__ import annotations

import os
import uuid
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from backupremote.protocol.errors import (
    ARTIFACT_EXPIRED,
    CAPACITY_EXCEEDED,
    NOT_FOUND,
    VALIDATION_FAILED,
    BackupRemoteError,
)
from backupremote.server.transfers.sender import ChunkSender, ConnectionPump
from backupremote.server.staging.artifacts import StagedArtifacts

_log = Logger(namespace="backupremote.server.transfers")


class TransferRegistry:
    """Starts, stops and accounts for transfers."""

    def __init__(self, clock: IReactorTime, artifacts: StagedArtifacts, maxConcurrent: int,
                 metrics: Any = None, maxPerClient: int | None = None,
                 stallTimeout: float | None = 60.0) -> None:
        self._clock = clock
        self._artifacts = artifacts
        self.maxConcurrent = maxConcurrent
        #: transfers of one clientId at once (C{None}: only the server-wide cap)
        self.maxPerClient = maxPerClient
        #: seconds without an acknowledged box before a transfer is aborted
        self.stallTimeout = stallTimeout
        self._metrics = metrics
        self._senders: dict[str, ChunkSender] = {}
        self._releases: dict[str, Any] = {}
        self._pumps: dict[Any, ConnectionPump] = {}

    @property
    def active(self) -> list[ChunkSender]:
        return list(self._senders.values())

    def _checkCapacity(self, clientId: str) -> None:
        if self.maxPerClient is not None:
            mine = sum(1 for sender in self._senders.values() if sender.clientId == clientId)
            if mine >= self.maxPerClient:
                raise BackupRemoteError(
                    CAPACITY_EXCEEDED, f"this client already has {mine} transfers active, the "
                                       "most one client may have on this server; let one "
                                       "finish or stop it (fileTransferStop) and retry, or "
                                       "ask the operator to raise [limits] "
                                       "max_transfers_per_client")
        if len(self._senders) >= self.maxConcurrent:
            raise BackupRemoteError(
                CAPACITY_EXCEEDED, f"{len(self._senders)} transfers are active, the most this "
                                   "server allows; retry later")

    async def start(self, connection: Any, clientId: str, fileId: str,
                    startChunk: int) -> tuple[str, int]:
        """Start streaming C{fileId} to C{connection}: (transferId, chunk count)."""
        self._checkCapacity(clientId)
        staged = await self._artifacts.byFile(clientId, fileId)
        entry = staged.entry
        if not 0 <= startChunk <= entry.chunkCount:
            raise BackupRemoteError(
                VALIDATION_FAILED, f"startChunk must be between 0 and {entry.chunkCount}",
                details={"fields": {"startChunk": "out of range"}})
        self._checkCapacity(clientId)
        try:
            descriptor = os.open(staged.path.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            raise BackupRemoteError(ARTIFACT_EXPIRED, "the artifact is no longer staged") from None
        transferId = str(uuid.uuid4())
        sender = ChunkSender(transferId, connection, descriptor, entry, startChunk,
                             self._clock, self._ended, clientId=clientId,
                             stallTimeout=self.stallTimeout)
        self._senders[transferId] = sender
        self._releases[transferId] = self._artifacts.lease(staged)
        pump = self._pumps.get(connection)
        if pump is None:
            pump = self._pumps[connection] = ConnectionPump(connection.transport)
        pump.add(sender)
        if self._metrics is not None:
            self._metrics.increment("transfers.started")
            if startChunk > 0:
                self._metrics.increment("transfers.resumed")
        _log.info("transfer {transferId} of run {runId} from chunk {start} of {count}",
                  transferId=transferId, runId=staged.runId, start=startChunk,
                  count=entry.chunkCount)
        # after the answer carrying the transferId has been written
        self._clock.callLater(0, sender.start)
        return transferId, entry.chunkCount

    def stop(self, connection: Any, transferId: str) -> None:
        """Stop a transfer of C{connection} (another connection's is C{NOT_FOUND})."""
        sender = self._senders.get(transferId)
        if sender is None or sender.connection is not connection:
            raise BackupRemoteError(NOT_FOUND, f"no active transfer {transferId!r} on this "
                                               "connection")
        sender.end("stopped by the client")

    def _ended(self, sender: ChunkSender, why: str) -> None:
        self._senders.pop(sender.transferId, None)
        self._releases.pop(sender.transferId)()
        pump = self._pumps.get(sender.connection)
        if pump is not None:
            pump.remove(sender)
            if not pump.senders:
                del self._pumps[sender.connection]
        if self._metrics is not None:
            self._metrics.increment("transfers.bytes", sender.bytesAcknowledged)
            self._metrics.increment("transfers.complete" if why == "complete"
                                    else "transfers.stalled" if sender.stalled
                                    else "transfers.ended")
        if sender.stalled:
            _log.warn("transfer {transferId} of client {clientId} aborted: no chunk "
                      "acknowledged for {timeout} s ({acked} of {count} chunks); its slot "
                      "is free and the client may resume it",
                      transferId=sender.transferId, clientId=sender.clientId,
                      timeout=sender.stallTimeout, acked=sender.ackedChunks,
                      count=sender.entry.chunkCount)
            return
        _log.info("transfer {transferId} ended: {why} ({boxes} boxes sent)",
                  transferId=sender.transferId, why=why, boxes=sender.boxesSent)

    def forget(self, connection: Any) -> None:
        """A connection is gone: end its transfers."""
        pump = self._pumps.get(connection)
        if pump is not None:
            pump.stopProducing()
