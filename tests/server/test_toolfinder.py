"""
L{ToolFinder}: a program's version is asked of it once, however many
callers want it at the same time.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from backupremote.server.machinery.toolfinder import ToolFinder


class SpawningClock(Clock):
    """A clock whose C{spawnProcess} records each child instead of starting it."""

    def __init__(self) -> None:
        super().__init__()
        self.spawned: list[tuple[Any, list[str]]] = []
        #: what spawnProcess raises (the program cannot be started), if anything
        self.refusal: Exception | None = None

    def spawnProcess(self, protocol: Any, executable: str, args: list[str], **kwargs: Any
                     ) -> Any:
        self.spawned.append((protocol, args))
        if self.refusal is not None:
            raise self.refusal
        return None

    def answer(self, index: int, text: bytes, code: int = 0) -> None:
        """The child C{index} writes C{text} and exits with C{code}."""
        protocol, _ = self.spawned[index]
        protocol.childDataReceived(1, text)
        reason = ProcessDone(0) if code == 0 else ProcessTerminated(code)
        protocol.processEnded(Failure(reason))


class VersionTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = SpawningClock()
        self.tools = ToolFinder(self.reactor, ("/usr/bin",))

    def test_concurrentCallersShareOneChild(self) -> None:
        """Ten runs admitted at once start one C{zstd --version}, and all get its answer."""
        asked = [_deferred(self.tools.version("/usr/bin/zstd")) for _ in range(10)]
        self.assertEqual(len(self.reactor.spawned), 1)
        self.assertIn("--version", self.reactor.spawned[0][1])
        self.reactor.answer(0, b"*** Zstandard CLI (64-bit) v1.5.4 ***\n")
        for version in asked:
            self.assertEqual(self.successResultOf(version),
                             "*** Zstandard CLI (64-bit) v1.5.4 ***")

    def test_cachedAfterwards(self) -> None:
        first = _deferred(self.tools.version("/usr/bin/zstd"))
        self.reactor.answer(0, b"zstd 1.5.4\n")
        self.assertEqual(self.successResultOf(first), "zstd 1.5.4")
        self.assertEqual(self.successResultOf(_deferred(self.tools.version("/usr/bin/zstd"))),
                         "zstd 1.5.4")
        self.assertEqual(len(self.reactor.spawned), 1)

    def test_eachProgramItsOwnChild(self) -> None:
        _deferred(self.tools.version("/usr/bin/zstd"))
        _deferred(self.tools.version("/usr/bin/pigz"))
        self.assertEqual(len(self.reactor.spawned), 2)

    def test_failedProbeTriedAgain(self) -> None:
        """A probe that fails fails its waiters; the next caller starts another child."""
        self.reactor.refusal = OSError("Permission denied")
        first = _deferred(self.tools.version("/usr/bin/zstd"))
        self.failureResultOf(first, OSError)
        self.reactor.refusal = None
        again = _deferred(self.tools.version("/usr/bin/zstd"))
        self.assertEqual(len(self.reactor.spawned), 2)
        self.reactor.answer(1, b"zstd 1.5.4\n")
        self.assertEqual(self.successResultOf(again), "zstd 1.5.4")


def _deferred(coroutine: Any) -> Deferred[Any]:
    return Deferred.fromCoroutine(coroutine)
