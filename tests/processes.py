"""Looking at the machine's processes from tests (Linux /proc)."""

from __future__ import annotations

import os
import shutil

from twisted.python.filepath import FilePath


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


ENDLESS_ZSTD = """#!/bin/sh
# a zstd that never finishes: the run stays in its dump stage
if [ "$1" = "--version" ]; then echo "*** Zstandard CLI (64-bit) v1.5.4 ***"; exit 0; fi
exec "$(dirname "$0")/endless-sleep" 300
"""


def installEndlessZstd(tools: FilePath) -> bytes:
    """
    Put in C{tools} a C{zstd} that never finishes; return the argv prefix
    of the sleep it becomes. The prefix names this folder, so a test looking
    for leftovers sees only its own, not another test's or a user's C{sleep}.
    """
    sleeper = tools.child("endless-sleep")
    os.symlink(shutil.which("sleep") or "/bin/sleep", sleeper.path)
    zstd = tools.child("zstd")
    zstd.setContent(ENDLESS_ZSTD.encode())
    zstd.chmod(0o755)
    return sleeper.path.encode() + b"\x00300"
