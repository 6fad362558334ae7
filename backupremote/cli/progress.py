"""
Live progress of a run on a terminal, or plain lines when not on one.

On a terminal one line is redrawn per stage: a bar when the total is known,
bytes, rate and ETA; each finished stage stays on screen. Elsewhere (pipes,
CI logs) a line is printed per stage and at most every few seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from backupremote.client.jobs.model import UploadProgress
    from backupremote.protocol.runs import RunEvent

BAR = 28
PLAIN_EVERY = 5.0


def size(count: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(count) < 1000 or unit == "TB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} TB"


def duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def describe(event: RunEvent) -> str:
    """One line for an event: stage, bar, bytes, rate, ETA."""
    parts = [f"{event.stage:<12}"]
    total = event.totalEstimate
    if total:
        share = min(1.0, event.bytes / total)
        filled = int(share * BAR)
        parts.append("[" + "#" * filled + "-" * (BAR - filled) + f"] {share * 100:3.0f}%")
    parts.append(size(event.bytes))
    if event.rate:
        parts.append(f"{size(event.rate)}/s")
        if total and event.bytes < total:
            parts.append(f"ETA {duration((total - event.bytes) / event.rate)}")
    if event.message and event.kind == "progress":
        parts.append(event.message)
    return "  ".join(parts)


class ProgressView:
    """Renders the events of one run."""

    def __init__(self, out: TextIO, interactive: bool) -> None:
        self.out = out
        self.interactive = interactive
        self._stage: str | None = None
        self._last: RunEvent | None = None
        self._lastPlain = 0.0

    def _stageDone(self) -> None:
        """Replace the running line of the stage that ended by its outcome."""
        if self._stage is None or self._last is None:
            return
        line = f"{self._stage:<12}  done  {size(self._last.bytes)}"
        self.out.write(("\r\x1b[K" + line + "\n") if self.interactive else line + "\n")

    def __call__(self, event: RunEvent) -> None:
        if event.kind != "progress":
            self._stageDone()
            self._stage = self._last = None
            self.out.flush()
            return
        newStage = event.stage != self._stage
        if newStage:
            self._stageDone()
        self._last = event
        line = describe(event)
        if self.interactive:
            self.out.write("\r\x1b[K" + line)
        elif newStage or time.monotonic() - self._lastPlain >= PLAIN_EVERY:
            self.out.write(line + "\n")
            self._lastPlain = time.monotonic()
        self._stage = event.stage
        self.out.flush()


def bar(done: int, total: int) -> str:
    """C{[####----]  45%} for C{done} of C{total} (a full bar for an empty total)."""
    share = min(1.0, done / total) if total else 1.0
    filled = int(share * BAR)
    return "[" + "#" * filled + "-" * (BAR - filled) + f"] {share * 100:3.0f}%"


class UploadView:
    """
    The uploads of a run to its destinations, one bar per destination. On a
    terminal one line is redrawn with every upload in flight; a finished
    upload leaves a line of its own. Elsewhere a line when an upload starts
    and ends, and at most every few seconds between.
    """

    def __init__(self, out: TextIO, interactive: bool,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.out = out
        self.interactive = interactive
        self._clock = clock
        #: delivery id -> (its last progress, when its attempt started)
        self._uploads: dict[str, tuple[UploadProgress, float]] = {}
        self._lastPlain = 0.0

    def describe(self, progress: UploadProgress, started: float) -> str:
        parts = [f"upload {progress.destination:<12}",
                 bar(progress.bytesSent, progress.sizeBytes), size(progress.bytesSent)]
        elapsed = self._clock() - started
        if progress.bytesSent and elapsed > 0:
            rate = progress.bytesSent / elapsed
            parts.append(f"{size(rate)}/s")
            if progress.bytesSent < progress.sizeBytes:
                parts.append(f"ETA {duration((progress.sizeBytes - progress.bytesSent) / rate)}")
        if progress.attempt > 1:
            parts.append(f"attempt {progress.attempt}")
        return "  ".join(parts)

    def __call__(self, progress: UploadProgress) -> None:
        known = self._uploads.get(progress.deliveryId)
        fresh = known is None or known[0].attempt != progress.attempt
        started = self._clock() if known is None or fresh else known[1]
        finished = progress.bytesSent >= progress.sizeBytes
        line = self.describe(progress, started)
        if finished:
            self._uploads.pop(progress.deliveryId, None)
            line = (f"upload {progress.destination:<12}  sent  {size(progress.bytesSent)}  "
                    f"as {progress.name}; verifying")
        else:
            self._uploads[progress.deliveryId] = (progress, started)
        if self.interactive:
            self.out.write("\r\x1b[K" + (line + "\n" if finished else ""))
            self.out.write("   ".join(self.describe(p, s) for p, s in self._uploads.values()))
        elif fresh or finished or self._clock() - self._lastPlain >= PLAIN_EVERY:
            self.out.write(line + "\n")
            self._lastPlain = self._clock()
        self.out.flush()
