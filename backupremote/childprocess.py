"""
Running a program to completion: argv lists, no shell, a timeout. The
server's tools and the client's rclone children both run through here.

The child leads its own process group (in its parent's session) so that a
timeout or a cancel kills everything it started, and a closed stdin unless input is
given. Output is collected up to a cap so a chatty tool cannot eat memory.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Mapping, Sequence

from attrs import evolve, frozen
from twisted.internet.defer import CancelledError
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure

from backupremote.outcome import Outcome
from backupremote.reactors import IChildReactor

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
GROUP_LEADER = ("import os, sys; os.setpgid(0, 0); os.nice(int(sys.argv[1])); "
                "os.execv(sys.argv[2], sys.argv[2:])")


#: Keep at most this much of a pipeline child's stderr (its end matters most).
STDERR_CAP = 64 * 1024


def ioCounters(pid: int | None) -> tuple[int, int] | None:
    """C{(rchar, wchar)} of the process C{pid}, or C{None} if they cannot be read."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/io", "rb") as stream:
            text = stream.read()
    except OSError:
        return None
    counters = {}
    for line in text.splitlines():
        key, _, value = line.partition(b":")
        if key in (b"rchar", b"wchar"):
            counters[key] = int(value)
    if len(counters) != 2:
        return None
    return counters[b"rchar"], counters[b"wchar"]


def exitCounters(counters: tuple[int, int] | None) -> tuple[int, int] | None:
    """
    C{counters} read as a child exits, or C{None} when they say it wrote
    nothing: an exiting process's accounting can already read as zeros
    (seen as "dump bytes 0" for a dump that wrote 6745), and a figure of
    nothing would be trusted over the measured fallback.
    """
    if counters is None or counters[1] == 0:
        return None
    return counters


@frozen
class Exit:
    """How a child ended and what it said (the end of its stderr, the start of its stdout)."""

    role: str
    exitCode: int | None
    signal: int | None
    stderr: str
    stdout: bytes = b""
    timedOut: bool = False

    @property
    def ok(self) -> bool:
        return self.exitCode == 0 and not self.timedOut


class Child(ProcessProtocol):
    """
    One child process; C{ended} settles with its L{Exit} (never fails).

    C{stdin} is written to it, then its stdin closed (when C{closeStdin});
    of what it writes to the reactor, the first C{stdoutCap} bytes of its
    stdout and the last C{stderrCap} bytes of its stderr are kept.
    """

    def __init__(self, role: str, closeStdin: bool = True, stdin: bytes | None = None,
                 stdoutCap: int = 0, stderrCap: int = STDERR_CAP) -> None:
        self.role = role
        self.pid: int | None = None
        self._closeStdin = closeStdin
        self._stdin = stdin
        self._stdoutCap = stdoutCap
        self._stderrCap = stderrCap
        self._stdout = bytearray()
        self._stderr = bytearray()
        self.stderrBytes = 0
        #: C{(rchar, wchar)} read as its stderr closed: the child was
        #: exiting, its counters final and not yet gone (it is reaped after)
        self.exitIO: tuple[int, int] | None = None
        self.ended: Outcome[Exit] = Outcome()

    def connectionMade(self) -> None:
        transport = self.transport
        assert transport is not None, "connectionMade comes after makeConnection"
        self.pid = transport.pid
        if self._stdin:
            transport.write(self._stdin)
        if self._closeStdin:
            transport.closeStdin()

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        if childFD == 1 and len(self._stdout) < self._stdoutCap:
            self._stdout += data[: self._stdoutCap - len(self._stdout)]
        elif childFD == 2:
            self.stderrBytes += len(data)
            self._stderr += data
            if len(self._stderr) > self._stderrCap * 2:
                del self._stderr[: len(self._stderr) - self._stderrCap]

    def childConnectionLost(self, childFD: int) -> None:
        if childFD == 2:
            self.exitIO = exitCounters(ioCounters(self.pid))

    @property
    def finished(self) -> bool:
        return self.ended.done

    def processEnded(self, reason: Failure) -> None:
        value = reason.value
        exitCode = signalNumber = None
        if isinstance(value, ProcessDone):
            exitCode = 0
        elif isinstance(value, ProcessTerminated):
            exitCode, signalNumber = value.exitCode, value.signal
        stderr = bytes(self._stderr[-self._stderrCap:]).decode("utf-8", "replace")
        self.ended.succeed(Exit(self.role, exitCode, signalNumber, stderr, bytes(self._stdout)))

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
        killChild(self.transport.pid if self.transport is not None else None)


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


def groupLeaderArgv(argv: Sequence[str], niceness: int = 0) -> list[str]:
    """
    C{argv} run as the leader of a new process group (in the server's
    session), killed by the kernel if the server dies first (so a crash
    leaves no dump running), C{niceness} steps nicer than the server (its
    threads too: they inherit it).
    """
    command = [sys.executable, "-I", "-S", "-c", GROUP_LEADER, str(niceness), *argv]
    if os.path.exists(SETPRIV):
        command = [SETPRIV, "--pdeathsig", "KILL", "--", *command]
    return command


async def runProcess(
    reactor: IChildReactor,
    argv: Sequence[str],
    env: Mapping[str, str] | None = None,
    timeout: float = 60.0,
    stdin: bytes | None = None,
    path: str | None = None,
) -> Exit:
    """
    Run C{argv[0]} with C{argv} (an absolute path: no PATH search, no shell)
    in the environment C{env} only, and wait for it, at most C{timeout}
    seconds; then its whole process group is killed. Its L{Exit} keeps the
    first L{OUTPUT_CAP} bytes of its stdout and the last of its stderr.
    """
    if not os.path.isabs(argv[0]):
        raise ValueError("runProcess needs an absolute program path")
    child = Child(os.path.basename(argv[0]), stdin=stdin, stdoutCap=OUTPUT_CAP,
                  stderrCap=OUTPUT_CAP)
    command = groupLeaderArgv(argv)
    transport = reactor.spawnProcess(
        child, command[0], command, env=dict(env or {}), path=path,
    )
    timedOut = []

    def expire() -> None:
        timedOut.append(True)
        child.kill()

    timer = reactor.callLater(timeout, expire)
    try:
        done = await child.ended.when()
    except CancelledError:
        # cancelled by the caller: nothing of the child may outlive it
        child.kill()
        raise
    finally:
        if timer.active():
            timer.cancel()
    killGroup(getattr(transport, "pid", None))
    return evolve(done, timedOut=bool(timedOut))


def baseEnvironment() -> dict[str, str]:
    """A minimal environment for children: never the server's own secrets."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "HOME": os.environ.get("HOME", "/"),
        "TMPDIR": os.environ.get("TMPDIR", "/tmp"),
    }
