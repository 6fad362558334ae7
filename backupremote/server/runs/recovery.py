"""
A start after a crash: runs the last process left unfinished become
C{failed}/C{INTERRUPTED}, and staging keeps only the folders of known runs.
"""

from __future__ import annotations

import shutil
from datetime import datetime, timezone

from attrs import evolve

from twisted.internet.interfaces import IReactorTime

from backupremote.protocol.errors import INTERRUPTED
from backupremote.server.runs.events import RunEventStream
from backupremote.server.runs.store import RunStore
from backupremote.server.staging import StagingArea


def recoverInterrupted(clock: IReactorTime, store: RunStore, staging: StagingArea) -> list[str]:
    """
    Runs left unfinished by a crash become C{failed}/C{INTERRUPTED} (with
    their last event) and their staging folders are removed; returns their ids.
    """
    interrupted = []
    now = datetime.fromtimestamp(clock.seconds(), timezone.utc)
    for status in store.unfinished():
        stored = store.events(status.runId)
        events = RunEventStream(status.runId, clock, store, set,
                                lastSeq=stored[-1].seq if stored else 0)
        message = "the server stopped while the run was in progress"
        events.finish("failed", status.stage, status.bytesDone, message,
                      errorCode=INTERRUPTED)
        store.save(evolve(status, state="failed", endedAt=now, errorCode=INTERRUPTED,
                          errorMessage=message, lastSeq=events.lastSeq))
        shutil.rmtree(staging.runFolder(status.runId).path, ignore_errors=True)
        interrupted.append(status.runId)
    return interrupted


def sweepStrayFolders(store: RunStore, staging: StagingArea) -> None:
    """Remove every staging folder that is not a known run's staged artifact."""
    runs = staging.runs
    if not runs.isdir():
        return
    known = {runId for runId in store.runIds() if store.artifactPath(runId)}
    for child in runs.children():
        if child.basename() not in known:
            shutil.rmtree(child.path, ignore_errors=True)
