"""
One run of the C{rclone} program, Buildbot-style (the shape of
L{backupremote.childprocess.runProcess}): an argv list (no shell), the
environment given and nothing else, the child leading its own process group
(killed with it on timeout or cancel: SIGTERM, then SIGKILL after a grace),
stderr kept (its end) for messages, and a L{Deferred} per run.

On top of that shape, what a transfer needs: stdin fed from a slice of a
local file (with the pipe's back-pressure) or closed at once, stdout
streamed to a sink (a hash) or collected up to a cap, and a stall timeout
(nothing moved on stdin or stdout for that long) besides the overall one.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from attrs import frozen
from twisted.internet import task
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure

from backupremote.childprocess import groupLeaderArgv, killChild, killGroup
from backupremote.client.destinations.httpsession import FileSliceProducer, Stall
from backupremote.reactors import IChildReactor

#: The most stderr kept (its end), and the most stdout collected without a sink.
STDERR_CAP = 64 << 10
STDOUT_CAP = 16 << 20
#: Seconds between SIGTERM and SIGKILL.
KILL_GRACE = 5.0

Sink = Callable[[bytes], None]


@frozen
class ChildResult:
    """How a run of rclone ended."""

    exitCode: int | None
    signal: int | None
    stdout: bytes
    stderr: bytes
    timedOut: bool
    stalled: bool

    @property
    def ok(self) -> bool:
        return self.exitCode == 0 and not self.timedOut and not self.stalled

    def lastLines(self, count: int = 3) -> str:
        lines = self.stderr.decode("utf-8", "replace").strip().splitlines()
        return " | ".join(line.strip() for line in lines[-count:])


@frozen
class StdinFile:
    """What to feed the child's stdin: C{length} bytes of C{path} from C{offset}."""

    path: str
    offset: int
    length: int
    onBlock: Sink | None = None


class _Child(ProcessProtocol):
    def __init__(self, stdin: StdinFile | bytes | None, sink: Sink | None,
                 cooperator: Any, touch: Callable[[], None]) -> None:
        self._stdin = stdin
        self._sink = sink
        self._cooperator = cooperator
        self._touch = touch
        self.stdout = bytearray()
        self.stderr = bytearray()
        self.sinkError: BaseException | None = None
        self.producer: FileSliceProducer | None = None
        self.ended: Deferred[BaseException] = Deferred()

    @property
    def _process(self) -> Any:
        """The process transport (an IProcessTransport once spawned)."""
        return self.transport

    def connectionMade(self) -> None:
        if not isinstance(self._stdin, StdinFile):
            if self._stdin:
                self._process.write(self._stdin)
            self._process.closeStdin()
            return
        spec = self._stdin

        def sent(block: bytes) -> None:
            self._touch()
            if spec.onBlock is not None:
                spec.onBlock(block)

        self.producer = FileSliceProducer(spec.path, spec.offset, spec.length, sent,
                                          self._cooperator)
        self._process.registerProducer(self.producer, True)
        done = self.producer.startProducing(self._process)
        done.addCallbacks(self._stdinDone, self._stdinFailed)

    def _stdinDone(self, _: object) -> None:
        self._process.unregisterProducer()
        self._process.closeStdin()

    def _stdinFailed(self, failure: Failure) -> None:
        # the local file could not be read: the child must not complete
        self.sinkError = failure.value
        self._process.unregisterProducer()
        killGroup(self._process.pid)
        killChild(self._process.pid)

    def outReceived(self, data: bytes) -> None:
        self._touch()
        if self._sink is None:
            if len(self.stdout) < STDOUT_CAP:
                self.stdout += data[: STDOUT_CAP - len(self.stdout)]
            return
        if self.sinkError is not None:
            return
        try:
            self._sink(data)
        except Exception as e:
            self.sinkError = e
            killGroup(self._process.pid)

    def errReceived(self, data: bytes) -> None:
        self.stderr += data
        if len(self.stderr) > STDERR_CAP:
            del self.stderr[: len(self.stderr) - STDERR_CAP]

    def processEnded(self, reason: Failure) -> None:
        if self.producer is not None:
            self.producer.stopProducing()
        if not self.ended.called:  # not cancelled
            self.ended.callback(cast(BaseException, reason.value))


async def runChild(
    reactor: IChildReactor,
    argv: Sequence[str],
    env: Mapping[str, str],
    timeout: float | None,
    stall: float,
    stdin: StdinFile | bytes | None = None,
    sink: Sink | None = None,
    cooperator: Any = None,
) -> ChildResult:
    """
    Run C{argv} (C{argv[0]} an absolute path) in the environment C{env}
    only, its stdin fed from C{stdin} (a file's slice, or a few bytes) or
    closed; at most C{timeout} seconds in all (C{None}: no limit) and
    C{stall} seconds without any byte moving on stdin or stdout. Cancelling
    the result kills the child's whole group.
    """
    command = groupLeaderArgv(argv)
    timers: list[Stall] = []
    child = _Child(stdin, sink, cooperator or task, lambda: timers[0].touch() if timers else None)
    transport = reactor.spawnProcess(child, command[0], command, env=dict(env))
    why: list[str] = []
    escalations: list[Any] = []

    def stop(reason: str) -> None:
        why.append(reason)
        killGroup(transport.pid, signal.SIGTERM)
        escalations.append(reactor.callLater(KILL_GRACE, killGroup, transport.pid))

    stalled = Stall(reactor, stall, lambda: stop("stalled"))
    timers.append(stalled)
    overall = reactor.callLater(timeout, stop, "timeout") if timeout is not None else None
    try:
        reason = await child.ended
    except CancelledError:
        killGroup(transport.pid)
        killChild(transport.pid)
        raise
    finally:
        stalled.stop()
        for call in [overall, *escalations]:
            if call is not None and call.active():
                call.cancel()
    killGroup(getattr(transport, "pid", None))
    if child.sinkError is not None:
        raise child.sinkError
    exitCode = signalNumber = None
    if isinstance(reason, ProcessDone):
        exitCode = 0
    elif isinstance(reason, ProcessTerminated):
        exitCode, signalNumber = reason.exitCode, reason.signal
    return ChildResult(exitCode, signalNumber, bytes(child.stdout), bytes(child.stderr),
                       "timeout" in why, "stalled" in why)
