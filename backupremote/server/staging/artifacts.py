"""
The staged artifacts of finished runs: lookup, leases, release, expiry.

A run's artifact stays in its staging folder with its manifest until the
client releases it or its time to live ends. An active transfer holds a
lease: a leased artifact is never deleted; a release during a transfer
takes effect when the last lease ends, and expiry waits for the next tick.
Clients only ever name runIds and fileIds, and only see their own (an
admin sees every client's; see L{backupremote.server.state.ownership}).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from attrs import define
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.filepath import FilePath

from backupremote.protocol.errors import (
    ARTIFACT_EXPIRED,
    CONFLICT,
    NOT_FOUND,
    STAGING_FULL,
    VALIDATION_FAILED,
    BackupRemoteError,
)
from backupremote.protocol.runs import TERMINAL, ArtifactInfo, RunStatus
from backupremote.protocol.transfers import HASHES_PER_ANSWER, FileEntry, Manifest
from backupremote.server.pipeline.chunkdigests import ChunkDigests
from backupremote.server.runs.store import RunStore
from backupremote.server.staging import StagingArea
from backupremote.server.state.ownership import Ownership
from backupremote.server.transfers.manifest import (
    RELEASED,
    readDigests,
    readManifest,
    writeManifest,
)

_log = Logger(namespace="backupremote.server.staging")


@define(eq=False)
class Staged:
    """One run's staged artifact, as the server holds it."""

    runId: str
    clientId: str
    manifest: Manifest
    folder: FilePath
    leases: int = 0
    released: bool = False

    @property
    def entry(self) -> FileEntry:
        return self.manifest.files[0]

    @property
    def path(self) -> FilePath:
        return self.folder.child(self.entry.name)


class StagedArtifacts:
    """Every staged artifact of the server (C{core.artifacts})."""

    def __init__(self, clock: IReactorTime, staging: StagingArea, runs: RunStore,
                 runInThread: Callable[..., Deferred[Any]], ttl: float,
                 maxBytes: int = 0, ownership: Ownership | None = None) -> None:
        self._clock = clock
        self.staging = staging
        self._ownership = ownership or Ownership()
        self._runs = runs
        self._runInThread = runInThread
        self.ttl = ttl
        self.maxBytes = maxBytes
        self._staged: dict[str, Staged] = {}
        self._byFile: dict[str, str] = {}
        self._writing: dict[str, Deferred[Manifest]] = {}

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock.seconds(), UTC)

    # Manifests

    async def finalize(self, runId: str, clientId: str, artifact: FilePath,
                       info: ArtifactInfo, chunks: ChunkDigests | None = None) -> Manifest:
        """
        Stage C{artifact} with its manifest, written off the reactor (from
        the C{chunks} digests made while writing it, else by hashing it).
        """
        if runId in self._writing:
            return await self._writing[runId]
        createdAt = self._now()
        writing = self._runInThread(writeManifest, artifact, runId, info.fileId, createdAt,
                                    createdAt + timedelta(seconds=self.ttl), chunks)
        self._writing[runId] = writing
        try:
            manifest = await writing
        finally:
            del self._writing[runId]
        self._add(Staged(runId, clientId, manifest, self.staging.runFolder(runId)))
        return manifest

    def _add(self, staged: Staged) -> None:
        self._staged[staged.runId] = staged
        for entry in staged.manifest.files:
            self._byFile[entry.fileId] = staged.runId

    def _status(self, clientId: str, runId: str) -> RunStatus:
        status = self._runs.get(runId)
        if status is None or not self._ownership.allows(clientId, status.clientId):
            raise BackupRemoteError(NOT_FOUND, f"no run {runId!r} of this client")
        return status

    def _live(self, staged: Staged) -> Staged:
        if staged.released or self._now() >= staged.manifest.expiresAt:
            raise BackupRemoteError(ARTIFACT_EXPIRED, f"the artifact of run {staged.runId} "
                                    "was released or expired")
        return staged

    async def staged(self, clientId: str, runId: str) -> Staged:
        """The live staged artifact of a run of C{clientId}, or the error saying why not."""
        staged = self._staged.get(runId)
        if staged is not None and self._ownership.allows(clientId, staged.clientId):
            return self._live(staged)
        status = self._status(clientId, runId)
        if status.state not in TERMINAL:
            raise BackupRemoteError(CONFLICT, f"run {runId} has not finished; follow it with "
                                              f"`backupremote status {runId}` and download "
                                              "once it completed")
        if status.artifact is None:
            raise BackupRemoteError(NOT_FOUND, f"run {runId} staged no artifact")
        kept = self._runs.artifactPath(runId)
        folder = self.staging.runFolder(runId)
        if kept and os.path.isfile(kept) and not folder.child(RELEASED).exists():
            # kept without a manifest: its post-script failed after the dump
            await self.finalize(runId, status.clientId, FilePath(kept), status.artifact)
            return self._live(self._staged[runId])
        raise BackupRemoteError(ARTIFACT_EXPIRED, f"the artifact of run {runId} was released "
                                                  "or expired")

    async def byFile(self, clientId: str, fileId: str) -> Staged:
        """The live staged artifact holding C{fileId}; a foreign id is C{NOT_FOUND}."""
        runId = self._byFile.get(fileId) or self._runs.runOfFile(fileId)
        if runId is None:
            raise BackupRemoteError(NOT_FOUND, f"no file {fileId!r}")
        try:
            return await self.staged(clientId, runId)
        except BackupRemoteError as error:
            if error.code == NOT_FOUND:
                raise BackupRemoteError(NOT_FOUND, f"no file {fileId!r}") from None
            raise

    def digests(self, staged: Staged, start: int) -> bytes:
        """Raw digests from chunk C{start}, at most C{HASHES_PER_ANSWER} of them."""
        if not 0 <= start <= staged.entry.chunkCount:
            raise BackupRemoteError(
                VALIDATION_FAILED, f"start must be between 0 and {staged.entry.chunkCount}",
                details={"fields": {"start": "out of range"}})
        try:
            return readDigests(staged.folder, start, HASHES_PER_ANSWER)
        except FileNotFoundError:
            raise BackupRemoteError(ARTIFACT_EXPIRED, "the artifact is no longer staged on "
                                                      "the server") from None

    # Lifecycle

    def lease(self, staged: Staged) -> Callable[[], None]:
        """Hold C{staged} on disk until the returned function is called (once)."""
        staged.leases += 1
        ended = False

        def release() -> None:
            nonlocal ended
            if ended:
                return
            ended = True
            staged.leases -= 1
            if staged.leases == 0 and staged.released:
                self._delete(staged)

        return release

    def release(self, clientId: str, runId: str) -> bool:
        """
        The client has the artifact: delete it now, or when its last transfer
        ends. C{False} if nothing was staged any more.
        """
        staged = self._staged.get(runId)
        if staged is None or not self._ownership.allows(clientId, staged.clientId):
            status = self._status(clientId, runId)
            if status.state not in TERMINAL:
                raise BackupRemoteError(CONFLICT, f"run {runId} has not finished")
            folder = self.staging.runFolder(runId)
            kept = folder.exists()
            shutil.rmtree(folder.path, ignore_errors=True)
            self._runs.artifactRemoved(runId)
            return kept
        if staged.released:
            return False
        staged.released = True
        if staged.leases:
            self._runs.artifactRemoved(runId)  # no new transfer may start
            staged.folder.child(RELEASED).setContent(b"")
            _log.info("run {runId}: released; deleted when its {count} transfer(s) end",
                      runId=runId, count=staged.leases)
        else:
            self._delete(staged)
        return True

    def _delete(self, staged: Staged) -> None:
        shutil.rmtree(staged.folder.path, ignore_errors=True)
        self._runs.artifactRemoved(staged.runId)
        self._staged.pop(staged.runId, None)
        for entry in staged.manifest.files:
            self._byFile.pop(entry.fileId, None)
        _log.info("run {runId}: staging removed ({why})", runId=staged.runId,
                  why="released" if staged.released else "expired")

    def expire(self) -> list[str]:
        """Delete what is released or past its time to live and not leased."""
        now = self._now()
        gone = []
        for staged in list(self._staged.values()):
            if staged.leases == 0 and (staged.released or now >= staged.manifest.expiresAt):
                self._delete(staged)
                gone.append(staged.runId)
        runs = self.staging.runs
        for folder in runs.children() if runs.isdir() else []:
            runId = folder.basename()
            if runId in self._staged or runId in self._writing:
                continue
            status = self._runs.get(runId)
            if status is None or status.state not in TERMINAL:
                continue  # a run in progress, or an orphan left to the start-up sweep
            try:
                age = now.timestamp() - os.stat(folder.path).st_mtime
            except OSError:
                continue
            if age >= self.ttl:
                shutil.rmtree(folder.path, ignore_errors=True)
                self._runs.artifactRemoved(runId)
                gone.append(runId)
        return gone

    def sweep(self) -> None:
        """
        At start-up (after the run manager's recovery): forget nothing that
        is staged, remove what was released or belongs to no run, then expire.
        """
        runs = self.staging.runs
        for folder in runs.children() if runs.isdir() else []:
            for child in folder.children():
                if child.path.endswith(".tmp"):
                    child.remove()
            status = self._runs.get(folder.basename())
            manifest = readManifest(folder)
            if status is None or folder.child(RELEASED).exists():
                shutil.rmtree(folder.path, ignore_errors=True)
                self._runs.artifactRemoved(folder.basename())
            elif manifest is not None and manifest.runId == status.runId:
                self._add(Staged(status.runId, status.clientId, manifest, folder))
        self.expire()

    @property
    def stagedCount(self) -> int:
        """Artifacts that can be downloaded (staged, not released)."""
        return sum(1 for staged in self._staged.values() if not staged.released)

    def checkRoom(self, estimate: int | None) -> None:
        """Refuse a run that would take staging past C{maxBytes} (0: no cap)."""
        if not self.maxBytes:
            return
        used = self.staging.stagedBytes()
        if used + (estimate or 0) > self.maxBytes:
            raise BackupRemoteError(STAGING_FULL, (
                f"staging holds {used} bytes of the {self.maxBytes} allowed"
                + (f" and this backup is estimated at {estimate} bytes" if estimate else "")
                + "; release downloaded artifacts first"))
