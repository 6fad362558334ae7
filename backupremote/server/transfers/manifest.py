"""
A staged artifact's manifest, kept on disk beside it in the run's folder.

The whole-file SHA-256 and one SHA-256 per C{CHUNK_SIZE} chunk are made by
the pipeline while it writes the artifact; when they are missing or no
longer match the file, the artifact is read once, in a worker thread. The manifest is stored as
JSON (the wire model) and the chunk digests as 32 raw bytes each; both are
written to a temporary name, fsynced and renamed, digests first, so a
manifest on disk always describes complete digests.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime

from twisted.python.filepath import FilePath

from backupremote.filewriting import fsyncFolder, replaceFile
from backupremote.protocol.structured import converter
from backupremote.protocol.transfers import CHUNK_SIZE, FileEntry, Manifest
from backupremote.server.pipeline.chunkdigests import ChunkDigests

MANIFEST = "manifest.json"
DIGESTS = "chunks.sha256"
#: Written into the folder by a release deferred by an active transfer.
RELEASED = "released"
DIGEST_SIZE = 32


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


def _madeWhileWriting(artifact: FilePath, chunks: ChunkDigests | None) -> bool:
    """
    Whether C{chunks} still describes C{artifact}: its digests file complete,
    the artifact the same size and not changed after them (a post-script could).
    """
    if chunks is None:
        return False
    try:
        made = os.stat(chunks.path.path)
        now = os.stat(artifact.path)
    except OSError:
        return False
    return (now.st_size == chunks.sizeBytes and now.st_mtime_ns <= made.st_mtime_ns
            and made.st_size == chunkCount(chunks.sizeBytes) * DIGEST_SIZE)


def writeManifest(artifact: FilePath, runId: str, fileId: str, createdAt: datetime,
                  expiresAt: datetime, chunks: ChunkDigests | None = None) -> Manifest:
    """
    Store C{artifact}'s manifest beside it (blocking: run in a thread), from
    the digests made while writing it when they still hold (their synced
    file is renamed into place), else by hashing it.
    """
    folder = artifact.parent()
    if chunks is not None and _madeWhileWriting(artifact, chunks):
        size, sha256 = chunks.sizeBytes, chunks.sha256
        os.replace(chunks.path.path, folder.child(DIGESTS).path)
    else:
        size, sha256, digests = hashChunks(artifact.path)
        replaceFile(folder.child(DIGESTS), digests)
        if chunks is not None and chunks.path.exists():
            chunks.path.remove()
    entry = FileEntry(fileId=fileId, name=artifact.basename(), sizeBytes=size, sha256=sha256,
                      chunkSize=CHUNK_SIZE, chunkCount=chunkCount(size))
    manifest = Manifest(runId=runId, files=[entry], createdAt=createdAt, expiresAt=expiresAt)
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
