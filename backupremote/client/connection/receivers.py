"""
The client's end of the transfer stream: pushed boxes routed by transferId.

A download registers a receiver under the transferId ``fileTransferStart``
answered; the connection's ``fileChunk``, ``fileTransferProgress``,
``fileTransferComplete`` and ``fileTransferAborted`` boxes go to it. A box
for a transfer nobody receives (stopped, or of a forgotten download) is
refused, which makes the server end that transfer.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from twisted.internet.defer import Deferred
from twisted.protocols import amp

from backupremote.protocol.errors import NOT_FOUND


class Receiver(Protocol):
    def chunk(self, index: int, chunks: list[bytes]) -> Deferred[Any] | None: ...

    def progress(self, chunksSent: int, bytesSent: int) -> None: ...

    def complete(self, sizeBytes: int, sha256: str) -> None: ...

    def aborted(self, errorCode: str, errorMessage: str) -> None: ...


def _unknown(transferId: str) -> amp.RemoteAmpError:
    return amp.RemoteAmpError(NOT_FOUND.encode("ascii"), json.dumps({
        "errorCode": NOT_FOUND, "errorMessage": f"no download receives transfer {transferId}",
        "requestId": None}).encode("utf-8"))


class TransferReceivers:
    """The transfers this client is receiving, by transferId."""

    def __init__(self) -> None:
        self._receivers: dict[str, Receiver] = {}

    def add(self, transferId: str, receiver: Receiver) -> None:
        self._receivers[transferId] = receiver

    def remove(self, transferId: str) -> None:
        self._receivers.pop(transferId, None)

    def _get(self, transferId: str) -> Receiver:
        receiver = self._receivers.get(transferId)
        if receiver is None:
            raise _unknown(transferId)
        return receiver

    def chunk(self, transferId: str, index: int, chunks: list[bytes]) -> Any:
        """The answer acknowledges the box; it is withheld while the disk is behind."""
        withheld = self._get(transferId).chunk(index, chunks)
        return {} if withheld is None else withheld

    def progress(self, transferId: str, chunksSent: int, bytesSent: int) -> dict[str, Any]:
        receiver = self._receivers.get(transferId)
        if receiver is not None:
            receiver.progress(chunksSent, bytesSent)
        return {}

    def complete(self, transferId: str, sizeBytes: int, sha256: str) -> dict[str, Any]:
        self._get(transferId).complete(sizeBytes, sha256)
        return {}

    def aborted(self, transferId: str, errorCode: str, errorMessage: str) -> dict[str, Any]:
        """The server ended the transfer early (it stalled); nothing to do if nobody listens."""
        receiver = self._receivers.get(transferId)
        if receiver is not None:
            receiver.aborted(errorCode, errorMessage)
        return {}
