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


def interruptible() -> None:
    """
    For C{Popen(preexec_fn=...)}: the child takes Ctrl-C (SIGINT) as a user's
    terminal would deliver it. A test run started in the background by a
    non-interactive shell ignores SIGINT, and an ignored signal stays ignored
    across exec, so a test that interrupts a command would otherwise see it
    run on.
    """
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
