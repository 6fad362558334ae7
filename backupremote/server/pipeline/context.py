"""
What every stage of one run shares: its children, threads, files, clock.

Everything a stage starts is registered here, so that one call stops it
all, whatever stage the run was in when it failed or was cancelled.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from attrs import define, evolve, field
from twisted.python.filepath import FilePath

from backupremote.outcome import Outcome
from backupremote.protocol.options import BackupOptions
from backupremote.protocol.runs import StageTiming
from backupremote.reactors import IWorkReactor
from backupremote.server.engines.base import Target
from backupremote.server.pipeline.children import Children
from backupremote.server.pipeline.hooks import PipelineHooks
from backupremote.server.pipeline.progress import ProgressTicker
from backupremote.server.pipeline.threads import StopFlag, runInThread

T = TypeVar("T")

#: Files SQLite may make next to a database file.
SQLITE_SIDE_FILES = ("-journal", "-wal", "-shm")


class RunFiles:
    """The files a run makes in its folder, removed unless kept."""

    def __init__(self, runDir: FilePath) -> None:
        self.runDir = runDir
        self._paths: list[str] = []

    def claim(self, name: str) -> str:
        """The path of a new file C{name} in the run folder, to be removed unless released."""
        if "/" in name or name in ("", ".", ".."):
            raise ValueError(f"not a plain file name: {name!r}")
        path = self.runDir.child(name).path
        self._paths.append(path)
        return path

    def release(self, path: str) -> None:
        """Keep C{path} (the finished artifact)."""
        if path in self._paths:
            self._paths.remove(path)

    def remove(self, path: str) -> None:
        """Remove C{path} (and what SQLite may have made next to it) now."""
        for candidate in (path, *(path + suffix for suffix in SQLITE_SIDE_FILES)):
            try:
                os.unlink(candidate)
            except FileNotFoundError:
                pass
        self.release(path)

    def removeAll(self) -> None:
        for path in list(self._paths):
            self.remove(path)


class StageClock:
    """When each stage started and ended, for L{StageTiming}s."""

    def __init__(self, now: Callable[[], float],
                 ended: Callable[[str, int], None] | None = None) -> None:
        self._now = now
        self._ended = ended
        self._open: dict[str, datetime] = {}
        self.timings: list[StageTiming] = []

    def _time(self) -> datetime:
        return datetime.fromtimestamp(self._now(), UTC)

    def start(self, stage: str) -> None:
        self._open.setdefault(stage, self._time())

    def end(self, stage: str, byteCount: int) -> None:
        started = self._open.pop(stage, None)
        if started is not None:
            self.timings.append(StageTiming(stage, started, self._time(), byteCount))
            if self._ended is not None:
                self._ended(stage, byteCount)

    def amend(self, stage: str, byteCount: int) -> None:
        """Correct the byte count of an ended stage (once a better one is known)."""
        self.timings = [evolve(timing, bytes=byteCount) if timing.stage == stage else timing
                        for timing in self.timings]


@define
class RunContext:
    """One run's shared state; L{RunContext.stopEverything} ends all it started."""

    reactor: IWorkReactor
    target: Target
    options: BackupOptions
    files: RunFiles
    ticker: ProgressTicker
    hooks: PipelineHooks
    sizeEstimate: int | None
    children: Children = field(init=False)
    stop: StopFlag = field(factory=StopFlag, init=False)
    jobs: list[Outcome[Any]] = field(factory=list, init=False)
    clock: StageClock = field(init=False)

    def __attrs_post_init__(self) -> None:
        self.children = Children(self.reactor, self.hooks.spawned)
        # each stage's last progress is the figure its timing keeps
        self.clock = StageClock(self.reactor.seconds, self.ticker.stageEnded)

    def thread(self, name: str, function: Callable[..., T], *args: Any) -> Outcome[T]:
        """Run C{function} in a thread of its own, registered with the run."""
        job = runInThread(self.reactor, name, function, *args)
        self.jobs.append(job)
        return job

    def stopEverything(self) -> None:
        """Ask every thread to stop and kill every child's process group."""
        self.stop.set()
        self.children.killAll()

    def running(self) -> list[Outcome[Any]]:
        """What has not ended yet: threads and children."""
        return ([job for job in self.jobs if not job.done]
                + [child.ended for child in self.children.running])
