"""Looking at the machine's processes from tests (Linux /proc)."""

from __future__ import annotations

import os


def commandLine(pid: str) -> bytes:
    """The NUL-separated argv of process C{pid}, or C{b""} if it is gone."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read()
    except OSError:
        return b""


def runningWithArgv(prefix: bytes) -> list[str]:
    """The pids of processes whose argv starts with C{prefix} (NUL-separated)."""
    return [pid for pid in os.listdir("/proc")
            if pid.isdigit() and commandLine(pid).startswith(prefix)]
