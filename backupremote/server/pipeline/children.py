"""
The pipeline's child processes: spawned as process-group leaders, watched,
and killed together.

Each child's stdin, stdout and stderr are wired by the caller through
C{childFDs} (OS pipes between children, files, or C{"r"}/C{"w"} pipes to
the reactor). The reactor only ever reads stderr (kept up to a cap, for
messages) and, when asked, a small stdout; the data itself flows through OS
pipes between processes and worker threads, never through the reactor.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Mapping, Sequence
from typing import Any

from attrs import frozen
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure

from backupremote.server.pipeline.outcome import Outcome
from backupremote.server.pipeline.progress import ioCounters
from backupremote.server.process import groupLeaderArgv, killGroup

#: Keep at most this much of a child's stderr (its end matters most).
STDERR_CAP = 64 * 1024


@frozen
class Exit:
    """How a child ended."""

    role: str
    exitCode: int | None
    signal: int | None
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exitCode == 0


class Child(ProcessProtocol):
    """One pipeline child; C{ended} settles with its L{Exit} (never fails)."""

    def __init__(self, role: str, closeStdin: bool) -> None:
        self.role = role
        self.pid: int | None = None
        self._closeStdin = closeStdin
        self._stderr = bytearray()
        self.stderrBytes = 0
        #: C{(rchar, wchar)} read as its stderr closed: the child was
        #: exiting, its counters final and not yet gone (it is reaped after)
        self.exitIO: tuple[int, int] | None = None
        self.ended: Outcome[Exit] = Outcome()

    def connectionMade(self) -> None:
        self.pid = self.transport.pid
        if self._closeStdin:
            self.transport.closeStdin()

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        if childFD == 2:
            self.stderrBytes += len(data)
            self._stderr += data
            if len(self._stderr) > STDERR_CAP * 2:
                del self._stderr[: len(self._stderr) - STDERR_CAP]

    def childConnectionLost(self, childFD: int) -> None:
        if childFD == 2:
            self.exitIO = ioCounters(self.pid)

    @property
    def finished(self) -> bool:
        return self.ended.done

    def processEnded(self, reason: Failure) -> None:
        value = reason.value
        exitCode = signal = None
        if isinstance(value, ProcessDone):
            exitCode = 0
        elif isinstance(value, ProcessTerminated):
            exitCode, signal = value.exitCode, value.signal
        stderr = bytes(self._stderr[-STDERR_CAP:]).decode("utf-8", "replace")
        self.ended.succeed(Exit(self.role, exitCode, signal, stderr))

    def kill(self) -> None:
        """
        Kill the child's whole process group, and the child itself: just
        after the spawn, before the child has made its group, there is no group yet
        to kill. The transport forgets the pid once the child is reaped,
        so a reused pid is never signalled.
        """
        if self.finished:
            return
        killGroup(self.pid)
        pid = self.transport.pid if self.transport is not None else None
        if pid is not None:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


class Children:
    """Every child of one run: spawned here, killed here, waited for here."""

    def __init__(self, reactor: Any, spawned: Any = None) -> None:
        self._reactor = reactor
        self._spawned = spawned
        self.all: list[Child] = []

    def spawn(self, role: str, argv: Sequence[str], env: Mapping[str, str],
              childFDs: Mapping[int, int | str]) -> Child:
        """
        Start C{argv} (absolute program path, no shell) in the environment
        C{env} only, as the leader of a new process group, with C{childFDs}
        as in C{spawnProcess}. A C{"w"} stdin is closed at once.
        """
        if not os.path.isabs(argv[0]):
            raise ValueError("pipeline children need an absolute program path")
        child = Child(role, closeStdin=childFDs.get(0) == "w")
        command = groupLeaderArgv(argv)
        self._reactor.spawnProcess(child, command[0], command, env=dict(env),
                                   childFDs=dict(childFDs))
        self.all.append(child)
        if self._spawned is not None and child.pid is not None:
            self._spawned(role, child.pid)
        return child

    def killAll(self) -> None:
        for child in self.all:
            child.kill()

    @property
    def running(self) -> list[Child]:
        """The children that have not ended yet."""
        return [child for child in self.all if not child.finished]
