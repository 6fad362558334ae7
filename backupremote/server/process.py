"""
Running a program to completion: argv lists, no shell, a timeout.

The child leads its own process group (in the server's session) so that a
timeout or a cancel kills everything it started, and a closed stdin unless input is
given. Output is collected up to a cap so a chatty tool cannot eat memory.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any, Mapping, Sequence

from attrs import frozen
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure

#: Keep at most this much of each output stream.
OUTPUT_CAP = 1 << 20

SETPRIV = "/usr/bin/setpriv"

#: Run by the server's own interpreter between the fork and the program:
#: a new process group in the same session, then the program itself.
#: Not C{setsid}: a new session is also a new scheduler autogroup
#: (C{sched_autogroup_enabled}), and the kernel then shares the CPU
#: equally between the dump's group, the compressor's and the database's
#: backend instead of between their threads; a pg_dump | zstd -T0 pipeline
#: measured 16% slower that way on 2 cores (pgbench scale 120, median of 4).
GROUP_LEADER = "import os, sys; os.setpgid(0, 0); os.execv(sys.argv[1], sys.argv[1:])"


@frozen
class Completed:
    """How a program ended and what it said."""

    exitCode: int | None
    signal: int | None
    stdout: bytes
    stderr: bytes
    timedOut: bool

    @property
    def ok(self) -> bool:
        return self.exitCode == 0 and not self.timedOut


class _Collector(ProcessProtocol):
    def __init__(self, stdin: bytes | None) -> None:
        self._stdin = stdin
        self.stdout = bytearray()
        self.stderr = bytearray()
        self.ended: Deferred[BaseException] = Deferred()

    def connectionMade(self) -> None:
        if self._stdin:
            self.transport.write(self._stdin)
        self.transport.closeStdin()

    def outReceived(self, data: bytes) -> None:
        if len(self.stdout) < OUTPUT_CAP:
            self.stdout += data[: OUTPUT_CAP - len(self.stdout)]

    def errReceived(self, data: bytes) -> None:
        if len(self.stderr) < OUTPUT_CAP:
            self.stderr += data[: OUTPUT_CAP - len(self.stderr)]

    def processEnded(self, reason: Failure) -> None:
        # the exception, not the Failure: a Failure would fail the Deferred
        self.ended.callback(reason.value)


def killGroup(pid: int | None, sig: int = signal.SIGKILL) -> None:
    """Kill the process group led by C{pid}, if it is still there."""
    if pid is None:
        return
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def killChild(pid: int | None) -> None:
    """Kill the child itself too: right after a spawn its group may not exist yet."""
    if pid is None:
        return
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def groupLeaderArgv(argv: Sequence[str]) -> list[str]:
    """
    C{argv} run as the leader of a new process group (in the server's
    session), killed by the kernel if the server dies first (so a crash
    leaves no dump running).
    """
    command = [sys.executable, "-I", "-S", "-c", GROUP_LEADER, *argv]
    if os.path.exists(SETPRIV):
        command = [SETPRIV, "--pdeathsig", "KILL", "--", *command]
    return command


async def runProcess(
    reactor: Any,
    argv: Sequence[str],
    env: Mapping[str, str] | None = None,
    timeout: float = 60.0,
    stdin: bytes | None = None,
    path: str | None = None,
) -> Completed:
    """
    Run C{argv[0]} with C{argv} (an absolute path: no PATH search, no shell)
    in the environment C{env} only, and wait for it, at most C{timeout}
    seconds; then its whole process group is killed.
    """
    if not os.path.isabs(argv[0]):
        raise ValueError("runProcess needs an absolute program path")
    collector = _Collector(stdin)
    command = groupLeaderArgv(argv)
    transport = reactor.spawnProcess(
        collector, command[0], command, env=dict(env or {}), path=path,
    )
    timedOut = []

    def expire() -> None:
        timedOut.append(True)
        killGroup(transport.pid)
        killChild(transport.pid)

    timer = reactor.callLater(timeout, expire)
    try:
        reason = await collector.ended
    except CancelledError:
        # cancelled by the caller: nothing of the child may outlive it
        killGroup(transport.pid)
        killChild(transport.pid)
        raise
    finally:
        if timer.active():
            timer.cancel()
    killGroup(getattr(transport, "pid", None))
    exitCode = signalNumber = None
    if isinstance(reason, ProcessDone):
        exitCode = 0
    elif isinstance(reason, ProcessTerminated):
        exitCode = reason.exitCode
        signalNumber = reason.signal
    return Completed(exitCode, signalNumber, bytes(collector.stdout),
                     bytes(collector.stderr), bool(timedOut))


def baseEnvironment() -> dict[str, str]:
    """A minimal environment for children: never the server's own secrets."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "HOME": os.environ.get("HOME", "/"),
        "TMPDIR": os.environ.get("TMPDIR", "/tmp"),
    }
