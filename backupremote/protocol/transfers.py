"""
Fetching a staged artifact: its manifest, then a resumable chunk stream.

Files are addressed by opaque ids from the manifest; no path exists in
this API. Data travels as chunks of at most C{CHUNK_SIZE} bytes (one AMP
value each), several chunks per box, each box acknowledged by the client
with a bounded window of boxes in flight.
"""

from __future__ import annotations

from datetime import datetime

from attrs import frozen
from twisted.protocols import amp

from backupremote.protocol.features import REMOTE_DOWNLOAD
from backupremote.protocol.base import Request
from backupremote.protocol.structured import Structured

#: Bytes per chunk: the unit of hashing, resuming and sending (fits one AMP value).
CHUNK_SIZE = 65_000
#: Chunks sent in one box.
CHUNKS_PER_BOX = 8
#: Boxes the server sends before it waits for the client's acknowledgements.
WINDOW_BOXES = 6
#: Chunk hashes per ``fileChunkHashes`` answer (32 bytes each, one AMP value).
HASHES_PER_ANSWER = 2000


@frozen
class FileEntry:
    """One staged file of a run."""

    fileId: str
    name: str
    sizeBytes: int
    sha256: str
    chunkSize: int
    chunkCount: int


@frozen
class Manifest:
    """What a run staged; per-chunk hashes come from ``fileChunkHashes``."""

    runId: str
    files: list[FileEntry]
    createdAt: datetime
    expiresAt: datetime


class ChunkList(amp.Argument):
    """
    Several byte strings in one box, one AMP value each: the argument C{name}
    becomes keys C{name.0}, C{name.1}, ... (at most 65,535 bytes each).
    """

    def toBox(self, name: bytes, strings: dict, objects: dict, proto: object) -> None:
        chunks = objects.pop(name.decode("ascii"))
        strings[name] = str(len(chunks)).encode("ascii")
        for index, chunk in enumerate(chunks):
            strings[name + b".%d" % index] = chunk

    def fromBox(self, name: bytes, strings: dict, objects: dict, proto: object) -> None:
        count = int(strings[name])
        if not 0 <= count <= 64:
            raise ValueError("too many chunks in one box")
        objects[name.decode("ascii")] = [strings[name + b".%d" % i] for i in range(count)]


class ListFiles(Request):
    """The manifest of a run's staged artifact."""

    commandName = b"listFiles"
    feature = REMOTE_DOWNLOAD
    arguments = [(b"runId", amp.Unicode())]
    response = [(b"manifest", Structured(Manifest, answer=True))]


class FileChunkHashes(Request):
    """SHA-256 of chunks C{start}.. (up to 2,000), as 32 raw bytes each."""

    commandName = b"fileChunkHashes"
    feature = REMOTE_DOWNLOAD
    arguments = [(b"fileId", amp.Unicode()), (b"start", amp.Integer())]
    response = [(b"hashes", amp.String())]


class FileTransferStart(Request):
    """Stream the file from chunk C{startChunk} to this connection."""

    commandName = b"fileTransferStart"
    feature = REMOTE_DOWNLOAD
    arguments = [(b"fileId", amp.Unicode()), (b"startChunk", amp.Integer())]
    response = [(b"transferId", amp.Unicode()), (b"chunkCount", amp.Integer())]


class FileTransferStop(Request):
    """Stop a transfer of this connection (e.g. a chunk failed its hash)."""

    commandName = b"fileTransferStop"
    feature = REMOTE_DOWNLOAD
    arguments = [(b"transferId", amp.Unicode())]
    response: list = []


class ReleaseArtifact(Request):
    """The client has the artifact: the server may delete the run's staging."""

    commandName = b"releaseArtifact"
    feature = REMOTE_DOWNLOAD
    arguments = [(b"runId", amp.Unicode())]
    response = [(b"released", amp.Boolean())]


class FileChunk(amp.Command):
    """Server to client: chunks C{index}, C{index + 1}, ...; the answer acknowledges them."""

    commandName = b"fileChunk"
    arguments = [
        (b"transferId", amp.Unicode()),
        (b"index", amp.Integer()),
        (b"chunks", ChunkList()),
    ]
    response: list = []


class FileTransferProgress(amp.Command):
    """Server to client: how far the transfer is (a few times per second at most)."""

    commandName = b"fileTransferProgress"
    arguments = [(b"transferId", amp.Unicode()), (b"chunksSent", amp.Integer()),
                 (b"bytesSent", amp.Integer())]
    response: list = []
    requiresAnswer = False


class FileTransferComplete(amp.Command):
    """Server to client: every chunk was sent; the whole file's size and hash."""

    commandName = b"fileTransferComplete"
    arguments = [(b"transferId", amp.Unicode()), (b"sizeBytes", amp.Integer()),
                 (b"sha256", amp.Unicode())]
    response: list = []


class FileTransferAborted(amp.Command):
    """
    Server to client: the server ended a transfer before its end (its window
    did not move for ``[limits] transfer_stall_timeout``); C{errorCode} is a
    registry code. The client starts a new transfer from the first chunk it
    lacks. Sent with an ``_ask``, like ``fileTransferComplete``, so that a
    client that does not know it answers with an error instead of dropping
    the connection; the server ignores the answer.
    """

    commandName = b"fileTransferAborted"
    arguments = [(b"transferId", amp.Unicode()), (b"errorCode", amp.Unicode()),
                 (b"errorMessage", amp.Unicode())]
    response: list = []
