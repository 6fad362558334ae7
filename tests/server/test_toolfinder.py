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
from twisted.python.filepath import FilePath
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


class WarmTests(SynchronousTestCase):
    """L{ToolFinder.warm}: every installed program asked once, at start, by the usual rules."""

    def setUp(self) -> None:
        self.reactor = SpawningClock()
        self.folder = FilePath(self.mktemp())
        self.folder.makedirs()
        self.tools = ToolFinder(self.reactor, (self.folder.path,))

    def install(self, name: str) -> str:
        program = self.folder.child(name)
        program.setContent(b"#!/bin/sh\n")
        program.chmod(0o755)
        return program.path

    def test_asksEveryInstalledProgramOnce(self) -> None:
        """Missing programs are skipped, each program's flag is used, a repeat is asked once."""
        zstd = self.install("zstd")
        gbak = self.install("gbak")
        warmed = _deferred(self.tools.warm(
            [("zstd", "--version"), ("xz", "--version"), ("gbak", "-z"), ("zstd", "--version")]))
        self.assertEqual([args[-2:] for _, args in self.reactor.spawned],
                         [[zstd, "--version"], [gbak, "-z"]])
        self.assertNoResult(warmed)
        self.reactor.answer(0, b"zstd 1.5.4\n")
        self.reactor.answer(1, b"gbak version LI-V3.0.11\n")
        self.successResultOf(warmed)
        self.assertEqual(self.successResultOf(_deferred(self.tools.version(zstd))), "zstd 1.5.4")
        self.assertEqual(len(self.reactor.spawned), 2, "the run's preflight asks no child")

    def test_laterInstallsAndFailuresAreAskedLater(self) -> None:
        """A program installed after the warm-up, or whose asking failed, is asked when needed."""
        gzip = self.install("gzip")
        self.reactor.refusal = OSError("Permission denied")
        warmed = _deferred(self.tools.warm([("gzip", "--version"), ("zstd", "--version")]))
        self.successResultOf(warmed)  # the failure is logged, not raised
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)
        self.reactor.refusal = None
        zstd = self.install("zstd")
        tool = _deferred(self.tools.tool("zstd"))
        again = _deferred(self.tools.version(gzip))
        self.assertEqual([args[-2:] for _, args in self.reactor.spawned[1:]],
                         [[zstd, "--version"], [gzip, "--version"]])
        self.reactor.answer(1, b"zstd 1.5.5\n")
        self.reactor.answer(2, b"gzip 1.12\n")
        self.assertEqual(self.successResultOf(tool).version, "zstd 1.5.5")
        self.assertEqual(self.successResultOf(again), "gzip 1.12")
