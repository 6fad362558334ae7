"""
Progress: what each stage has done, sampled twice a second.

Bytes that pass through the server are counted where they pass. Bytes that
flow only between children (the dump into an external compressor) are read
from the kernel's per-process I/O counters, C{/proc/<pid>/io}: the dump's
C{wchar} is what it has written so far, the compressor's C{rchar} what it
has read. Those counters also count a little else (a dump tool's queries to
its server, a program reading its own files), which is noise next to a dump.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from backupremote.childprocess import ioCounters

log = Logger()

#: Seconds between two progress reports.
INTERVAL = 0.5

#: C{progress(stage, bytesDone, totalEstimate)}
ProgressCallback = Callable[[str, int, "int | None"], None]

#: What a stage measures: C{() -> (bytesDone, totalEstimate)}.
Measure = Callable[[], "tuple[int, int | None]"]


class IOMeter:
    """The highest I/O counters seen of one process (they stay once it is gone)."""

    def __init__(self) -> None:
        self.pid: int | None = None
        self.read = 0
        self.written = 0

    def sample(self) -> None:
        counters = ioCounters(self.pid)
        if counters is not None:
            self.read = max(self.read, counters[0])
            self.written = max(self.written, counters[1])


class ProgressTicker:
    """
    Calls C{progress} with the current stage's measure every L{INTERVAL}
    seconds (on the injected reactor's clock), and on demand.
    """

    def __init__(self, reactor: IReactorTime, progress: ProgressCallback,
                 interval: float = INTERVAL) -> None:
        self._progress = progress
        self._stage: str | None = None
        self._measure: Measure | None = None
        self._loop = LoopingCall(self.tick)
        self._loop.clock = reactor
        self._interval = interval

    def follow(self, stage: str, measure: Measure, announce: bool = True) -> None:
        """
        Report C{stage} from now on; at once if C{announce}, else from the
        next tick only (a stage that ends before it is never reported).
        """
        self._stage, self._measure = stage, measure
        if not self._loop.running:
            self._loop.start(self._interval, now=False)
        if announce:
            self.tick()

    def tick(self) -> None:
        if self._stage is None or self._measure is None:
            return
        try:
            done, total = self._measure()
            self._progress(self._stage, done, total)
        except Exception:  # noqa: BLE001 (reported, never lost)
            log.failure("progress report of stage {stage} failed", stage=self._stage)

    def stageEnded(self, stage: str, byteCount: int) -> None:
        """
        C{stage} ended with C{byteCount}: report that figure, the one its
        timing keeps, as the stage's last progress (and stop following it).
        """
        if self._stage == stage:
            self._stage = self._measure = None
        self._progress(stage, byteCount, byteCount)

    def stop(self) -> None:
        if self._loop.running:
            self._loop.stop()
        self._stage = self._measure = None
