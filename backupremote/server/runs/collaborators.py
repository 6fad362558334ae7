"""
What the run manager is given, typed: the pipeline that makes an artifact
(L{Produce}), the staging that keeps it (L{Finalize}) and the check that
refuses a run staging has no room for (L{CheckStagingRoom}).

The service passes the real ones (L{produceArtifact},
L{StagedArtifacts.finalize}, L{StagedArtifacts.checkRoom}); tests pass
their own, of the same shape.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, Protocol

from twisted.python.filepath import FilePath

from backupremote.protocol.options import BackupOptions
from backupremote.protocol.runs import ArtifactInfo
from backupremote.protocol.transfers import Manifest
from backupremote.reactors import IWorkReactor
from backupremote.server.engines.base import IEngine, Target
from backupremote.server.machinery.toolfinder import ToolFinder
from backupremote.server.pipeline.artifact import Artifact
from backupremote.server.pipeline.chunkdigests import ChunkDigests
from backupremote.server.pipeline.progress import ProgressCallback


class Produce(Protocol):
    """
    Makes one run's verified artifact in C{runDir} (the real one is
    L{backupremote.server.pipeline.produceArtifact}); cancelling the
    Deferred that runs it stops it and removes its files.
    """

    def __call__(self, reactor: IWorkReactor, engine: IEngine, target: Target,
                 options: BackupOptions, tools: ToolFinder, runDir: FilePath[str],
                 baseName: str, progress: ProgressCallback, sizeEstimate: int | None, *,
                 serverVersion: str | None = ...) -> Coroutine[Any, Any, Artifact]: ...


class Finalize(Protocol):
    """Stages a finished run's artifact with its manifest (L{StagedArtifacts.finalize})."""

    def __call__(self, runId: str, clientId: str, artifact: FilePath[str], info: ArtifactInfo,
                 chunks: ChunkDigests | None = ...) -> Coroutine[Any, Any, Manifest]: ...


class CheckStagingRoom(Protocol):
    """
    Raises C{STAGING_FULL} when a run of C{estimate} bytes would not fit in
    staging (L{StagedArtifacts.checkRoom}).
    """

    def __call__(self, estimate: int | None) -> None: ...
