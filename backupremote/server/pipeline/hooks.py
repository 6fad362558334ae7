"""
Seams of the pipeline for tests, benchmarks and embedders. The defaults do
nothing and cost nothing.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any

from attrs import frozen
from twisted.python.filepath import FilePath

from backupremote.filewriting import Writer
from backupremote.server.pipeline.sink import CHUNK_SIZE, ArtifactSink


def _nothing(*args: Any) -> None:
    return None


@frozen
class PipelineHooks:
    """
    C{spawned(role, pid)}: a child started ("dump", "compressor",
    "decompressor", "checker").
    C{sinkStarted(sink)}: the L{ArtifactSink} has started (its counters
    can be watched).
    C{beforeVerification(path)}: the artifact is written and about to be
    read back (may return an awaitable).
    C{write}: how the sink writes to the artifact file (C{os.write}).
    C{chunkSize}: how much the sink reads at a time.
    """

    spawned: Callable[[str, int], None] = _nothing
    sinkStarted: Callable[[ArtifactSink], None] = _nothing
    beforeVerification: Callable[[FilePath], Awaitable[None] | None] = _nothing
    write: Writer = os.write
    chunkSize: int = CHUNK_SIZE
