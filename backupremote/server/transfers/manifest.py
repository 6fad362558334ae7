"""
A staged artifact's manifest, kept on disk beside it in the run's folder.

The artifact is read once, in a worker thread, to compute the whole-file
SHA-256 and one SHA-256 per C{CHUNK_SIZE} chunk. The manifest is stored as
JSON (the wire model) and the chunk digests as 32 raw bytes each; both are
written to a temporary name, fsynced and renamed, digests first, so a
manifest on disk always describes complete digests.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime

from twisted.python.filepath import FilePath

from backupremote.newfile import fsyncFolder, replaceFile
from backupremote.protocol.structured import converter
from backupremote.protocol.transfers import CHUNK_SIZE, FileEntry, Manifest

MANIFEST = "manifest.json"
DIGESTS = "chunks.sha256"
#: Written into the folder by a release deferred by an active transfer.
RELEASED = "released"
DIGEST_SIZE = 32

HELPERS = frozenset({MANIFEST, DIGESTS, RELEASED})


def chunkCount(sizeBytes: int) -> int:
    """Chunks of a file of C{sizeBytes} (an empty file has none)."""
    return -(-sizeBytes // CHUNK_SIZE)


def hashChunks(path: str) -> tuple[int, str, bytes]:
    """Size, whole-file SHA-256 (hex) and the raw per-chunk digests of C{path}."""
    whole = hashlib.sha256()
    digests = bytearray()
    size = 0
    buffer = bytearray(CHUNK_SIZE)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as handle:
        while True:
            filled = 0
            while filled < CHUNK_SIZE:
                read = handle.readinto(view[filled:])
                if not read:
                    break
                filled += read
            if not filled:
                break
            piece = view[:filled]
            whole.update(piece)
            digests += hashlib.sha256(piece).digest()
            size += filled
            if filled < CHUNK_SIZE:
                break
    return size, whole.hexdigest(), bytes(digests)


def writeManifest(artifact: FilePath, runId: str, fileId: str,
                  createdAt: datetime, expiresAt: datetime) -> Manifest:
    """Hash C{artifact} and store its manifest beside it (blocking: run in a thread)."""
    size, sha256, digests = hashChunks(artifact.path)
    entry = FileEntry(fileId=fileId, name=artifact.basename(), sizeBytes=size, sha256=sha256,
                      chunkSize=CHUNK_SIZE, chunkCount=len(digests) // DIGEST_SIZE)
    manifest = Manifest(runId=runId, files=[entry], createdAt=createdAt, expiresAt=expiresAt)
    folder = artifact.parent()
    replaceFile(folder.child(DIGESTS), digests)
    replaceFile(folder.child(MANIFEST), json.dumps(
        converter.unstructure(manifest, Manifest), sort_keys=True).encode("utf-8"))
    fsyncFolder(folder)
    return manifest


def readManifest(folder: FilePath) -> Manifest | None:
    """The manifest stored in C{folder}, or C{None} if there is none (or it is unreadable)."""
    try:
        data = json.loads(folder.child(MANIFEST).getContent())
        return converter.structure(data, Manifest)
    except Exception:  # noqa: BLE001 (missing, torn or of another version: no manifest)
        return None


def readDigests(folder: FilePath, start: int, count: int) -> bytes:
    """Raw digests of chunks C{start} to C{start + count - 1} (fewer at the end)."""
    with open(folder.child(DIGESTS).path, "rb") as handle:
        handle.seek(start * DIGEST_SIZE)
        return handle.read(count * DIGEST_SIZE)
