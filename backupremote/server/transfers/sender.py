"""
One transfer: a file pushed to one connection in ``fileChunk`` boxes.

Each box carries up to C{CHUNKS_PER_BOX} chunks read with one small
C{pread} each (the file is never buffered whole); at most C{WINDOW_BOXES}
boxes are unacknowledged, and the client's answer to a box acknowledges it.
The sender also stops while its connection's transport says it is paused
(TLS back-pressure, see L{ConnectionPump}). Nothing per chunk is done in
Python beyond the read: no JSON, no hashing (the manifest has the hashes).

A transfer whose window has not moved (no box acknowledged) for
C{stallTimeout} seconds is aborted: the client is told with
``fileTransferAborted`` and the transfer ends, which frees its slot. The
watch is one C{callLater} on the injected clock, re-armed only when it
fires, so an acknowledgement costs nothing more than noting the time.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from backupremote.protocol.errors import TIMEOUT
from backupremote.protocol.models import ChunkLimits
from backupremote.protocol.transfers import (
    CHUNK_SIZE,
    CHUNKS_PER_BOX,
    WINDOW_BOXES,
    FileChunk,
    FileEntry,
    FileTransferAborted,
    FileTransferComplete,
    FileTransferProgress,
)

_log = Logger(namespace="backupremote.server.transfers")

#: Seconds between two ``fileTransferProgress`` pushes of one transfer.
PROGRESS_INTERVAL = 0.25

#: How a L{ChunkSender} cuts and paces a transfer (its defaults), as
#: ``capabilities`` tells an authenticated client.
CHUNK_LIMITS = ChunkLimits(maxChunkBytes=CHUNK_SIZE, chunksPerBox=CHUNKS_PER_BOX,
                           maxChunksInFlight=CHUNKS_PER_BOX * WINDOW_BOXES)


class ChunkSender:
    """Streams C{entry} from chunk C{startChunk} over C{connection}."""

    def __init__(self, transferId: str, connection: Any, descriptor: int, entry: FileEntry,
                 startChunk: int, clock: IReactorTime, onEnd: Callable[[ChunkSender, str], None],
                 window: int = WINDOW_BOXES, perBox: int = CHUNKS_PER_BOX,
                 clientId: str = "", stallTimeout: float | None = None) -> None:
        self.transferId = transferId
        self.connection = connection
        self.clientId = clientId
        self.entry = entry
        self.startChunk = startChunk
        self._descriptor = descriptor
        self._clock = clock
        self._onEnd = onEnd
        self.window = window
        self.perBox = perBox
        self.nextChunk = startChunk
        self.ackedChunks = startChunk
        self.outstanding = 0
        self.boxesSent = 0
        self.paused = False
        self.ended: str | None = None
        self.stalled = False
        self._lastProgress = clock.seconds()
        #: when a box was last acknowledged (or the transfer started)
        self.movedAt = self._lastProgress
        self.stallTimeout = stallTimeout
        self._stallCall: IDelayedCall | None = None

    @property
    def bytesAcknowledged(self) -> int:
        """The file's bytes the client acknowledged in this transfer (for metrics)."""
        entry = self.entry
        end = min(self.ackedChunks * entry.chunkSize, entry.sizeBytes)
        return max(0, end - self.startChunk * entry.chunkSize)

    # Flow

    def start(self) -> None:
        if self.ended is not None:
            return
        self.movedAt = self._clock.seconds()
        if self.stallTimeout is not None:
            self._stallCall = self._clock.callLater(self.stallTimeout, self._checkStall)
        self._fill()

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False
        self._fill()

    def _fill(self) -> None:
        count = self.entry.chunkCount
        while (not self.paused and self.ended is None and self.outstanding < self.window
               and self.nextChunk < count):
            self._sendBox(min(self.perBox, count - self.nextChunk))
        if self.ended is None and self.outstanding == 0 and self.nextChunk >= count:
            self._complete()

    def _sendBox(self, count: int) -> None:
        index = self.nextChunk
        offset = index * CHUNK_SIZE
        pread = os.pread
        descriptor = self._descriptor
        chunks = [pread(descriptor, CHUNK_SIZE, offset + i * CHUNK_SIZE) for i in range(count)]
        self.nextChunk = index + count
        self.outstanding += 1
        self.boxesSent += 1
        answer = self.connection.callRemote(FileChunk, transferId=self.transferId, index=index,
                                            chunks=chunks)
        answer.addCallbacks(self._acknowledged, self._refused, callbackArgs=(count,))

    def _acknowledged(self, _: object, count: int) -> None:
        if self.ended is not None:
            return
        self.outstanding -= 1
        self.ackedChunks += count
        now = self.movedAt = self._clock.seconds()
        if now - self._lastProgress >= PROGRESS_INTERVAL:
            self._lastProgress = now
            self.connection.callRemote(
                FileTransferProgress, transferId=self.transferId, chunksSent=self.ackedChunks,
                bytesSent=min(self.ackedChunks * CHUNK_SIZE, self.entry.sizeBytes))
        self._fill()

    def _refused(self, reason: Any) -> None:
        # the client refused a box (it stopped this transfer) or the connection is gone
        self.end(f"chunk not acknowledged: {reason.getErrorMessage()}")

    def _complete(self) -> None:
        self.connection.callRemote(
            FileTransferComplete, transferId=self.transferId, sizeBytes=self.entry.sizeBytes,
            sha256=self.entry.sha256,
        ).addErrback(lambda _: None)
        self.end("complete")

    def _checkStall(self) -> None:
        self._stallCall = None
        if self.ended is not None or self.stallTimeout is None:
            return
        still = self._clock.seconds() - self.movedAt
        if still < self.stallTimeout:
            self._stallCall = self._clock.callLater(self.stallTimeout - still, self._checkStall)
            return
        self.stalled = True
        self.abort(TIMEOUT, (
            f"transfer {self.transferId} made no progress for {self.stallTimeout:g} s (no "
            "chunk acknowledged), so the server ended it to free its slot; start a new "
            "transfer from the first chunk you lack (fileTransferStart with startChunk)"))

    def abort(self, errorCode: str, message: str) -> None:
        """End the transfer before its end and tell the client why."""
        if self.ended is not None:
            return
        self.connection.callRemote(
            FileTransferAborted, transferId=self.transferId, errorCode=errorCode,
            errorMessage=message,
        ).addErrback(lambda _: None)
        self.end(f"aborted ({errorCode}): {message}")

    def end(self, why: str) -> None:
        """Stop sending, close the file, let the registry release the lease."""
        if self.ended is not None:
            return
        self.ended = why
        if self._stallCall is not None:
            self._stallCall.cancel()
            self._stallCall = None
        os.close(self._descriptor)
        self._onEnd(self, why)


@implementer(IPushProducer)
class ConnectionPump:
    """
    The producer registered on one connection's transport while it has
    transfers (a transport takes only one): pauses, resumes and stops them all.
    """

    def __init__(self, transport: Any) -> None:
        self._transport = transport
        self.senders: set[ChunkSender] = set()
        self.paused = False
        self._registered = False

    def add(self, sender: ChunkSender) -> None:
        self.senders.add(sender)
        sender.paused = self.paused
        if not self._registered:
            self._registered = True
            self._transport.registerProducer(self, True)

    def remove(self, sender: ChunkSender) -> None:
        self.senders.discard(sender)
        if not self.senders and self._registered:
            self._registered = False
            self._transport.unregisterProducer()

    def pauseProducing(self) -> None:
        self.paused = True
        for sender in self.senders:
            sender.pause()

    def resumeProducing(self) -> None:
        self.paused = False
        for sender in list(self.senders):
            sender.resume()

    def stopProducing(self) -> None:
        for sender in list(self.senders):
            sender.end("connection lost")
