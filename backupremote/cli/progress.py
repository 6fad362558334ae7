"""
Live progress of a run on a terminal, or plain lines when not on one.

On a terminal one line is redrawn per stage: a bar when the total is known,
bytes, rate and ETA; each finished stage stays on screen. Elsewhere (pipes,
CI logs) a line is printed per stage and at most every few seconds.
"""

from __future__ import annotations

import time
from typing import TextIO

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
