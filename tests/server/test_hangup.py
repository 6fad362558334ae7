"""
SIGHUP on the server daemon: the log file is reopened (for logrotate) and
the handler lives only while its service runs.
"""

from __future__ import annotations

import json
import signal
from typing import Any

from twisted.application.service import MultiService
from twisted.logger import Logger, LogPublisher
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from backupremote.logfile import LOG_FILE_SERVICE, JSONLogFileService, withLogFile
from backupremote.protocol.errors import CONFIG_INVALID, BackupRemoteError
from backupremote.server.edge.hangup import HangupService, reopenAndReload


def events(path: FilePath) -> list[str]:
    return [json.loads(line.lstrip(b"\x1e"))["log_format"]
            for line in path.getContent().splitlines() if line.strip(b"\x1e")]


class LogFileReopenTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.publisher = LogPublisher()
        self.log = Logger(observer=self.publisher)
        self.path = FilePath(self.mktemp()).child("server.jsonl")
        self.service = JSONLogFileService(self.path, self.publisher)

    def test_reopenAfterRotation(self) -> None:
        """After the file is moved away, reopen writes to a new file at the path."""
        self.service.startService()
        self.addCleanup(self.service.stopService)
        self.log.info("before")
        rotated = self.path.siblingExtension(".1")
        self.path.moveTo(rotated)
        self.log.info("still to the moved file")
        self.service.reopen()
        self.log.info("after")
        self.assertEqual(events(rotated), ["before", "still to the moved file"])
        self.assertEqual(events(self.path), ["after"])
        self.assertEqual(self.path.getPermissions().shorthand(), "rw-------")

    def test_reopenWithoutRotationAppends(self) -> None:
        self.service.startService()
        self.addCleanup(self.service.stopService)
        self.log.info("one")
        self.service.reopen()
        self.log.info("two")
        self.assertEqual(events(self.path), ["one", "two"])

    def test_reopenFailureKeepsTheOldFile(self) -> None:
        self.service.startService()
        self.addCleanup(self.service.stopService)
        folder = self.path.parent()
        self.path.moveTo(folder.sibling("elsewhere.jsonl"))
        folder.remove()
        self.assertRaises(OSError, self.service.reopen)
        self.log.info("kept")
        self.assertEqual(events(folder.sibling("elsewhere.jsonl")), ["kept"])

    def test_notRunningIsNoOp(self) -> None:
        self.service.reopen()
        self.assertFalse(self.path.exists())

    def test_stopAfterReopenClosesEverything(self) -> None:
        self.service.startService()
        self.service.reopen()
        self.service.stopService()
        self.log.info("after stop")
        self.assertEqual(events(self.path), [])

    def test_withLogFileNamesIt(self) -> None:
        top = withLogFile(self.path)
        self.assertIsInstance(top.getServiceNamed(LOG_FILE_SERVICE), JSONLogFileService)


class FakeListener(MultiService):
    def __init__(self, outcome: Any) -> None:
        super().__init__()
        self.outcome = outcome
        self.reloads = 0

    def reloadCertificate(self) -> str:
        self.reloads += 1
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome


class ReopenAndReloadTests(SynchronousTestCase):
    def top(self, outcome: Any, logFile: FilePath | None) -> MultiService:
        top = withLogFile(logFile)
        listener = FakeListener(outcome)
        listener.setName("listener")
        listener.setServiceParent(top)
        return top

    def messages(self) -> list[str]:
        from twisted.logger import formatEvent, globalLogPublisher
        seen: list[str] = []

        def observer(event: Any) -> None:
            seen.append(formatEvent(event))

        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        return seen

    def test_reopensAndReloads(self) -> None:
        logFile = FilePath(self.mktemp()).child("server.jsonl")
        top = self.top("AB:CD", logFile)
        top.startService()
        self.addCleanup(top.stopService)
        seen = self.messages()
        logFile.moveTo(logFile.siblingExtension(".1"))
        reopenAndReload(top)
        self.assertEqual(top.getServiceNamed("listener").reloads, 1)
        self.assertIn(f"SIGHUP: reopened the log file {logFile.path}", seen)
        self.assertIn("SIGHUP: reloaded the TLS key and certificate; new connections get "
                      "the certificate AB:CD", seen)
        # the reopen message went to the new file
        self.assertIn(b"reopened the log file", logFile.getContent())

    def test_withoutLogFile(self) -> None:
        top = self.top("AB:CD", None)
        reopenAndReload(top)
        self.assertEqual(top.getServiceNamed("listener").reloads, 1)

    def test_badCertificateKeepsTheOldOne(self) -> None:
        top = self.top(BackupRemoteError(CONFIG_INVALID, "the TLS key is bad"), None)
        seen = self.messages()
        reopenAndReload(top)
        self.assertIn("SIGHUP: kept the TLS certificate in use; the files cannot be used: "
                      "the TLS key is bad", seen)


class FakeReactor:
    def __init__(self) -> None:
        self.calls: list[Any] = []

    def callFromThread(self, function: Any, *args: Any) -> None:
        self.calls.append((function, args))

    def runCalls(self) -> None:
        for function, args in self.calls:
            function(*args)
        self.calls = []


class HangupServiceTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.before = signal.getsignal(signal.SIGHUP)
        self.addCleanup(signal.signal, signal.SIGHUP, self.before)
        self.reactor = FakeReactor()
        self.hangups: list[int] = []
        self.service = HangupService(lambda: self.hangups.append(1), self.reactor)

    def test_installedWhileRunning(self) -> None:
        self.service.startService()
        self.assertEqual(signal.getsignal(signal.SIGHUP), self.service.received)
        self.service.stopService()
        self.assertEqual(signal.getsignal(signal.SIGHUP), self.before)

    def test_handlerDefersToTheReactor(self) -> None:
        """The handler only schedules: the work runs on the reactor's turn."""
        self.service.startService()
        self.addCleanup(self.service.stopService)
        self.service.received(signal.SIGHUP, None)
        self.assertEqual(self.hangups, [])
        self.reactor.runCalls()
        self.assertEqual(self.hangups, [1])

    def test_failureLogged(self) -> None:
        def fail() -> None:
            raise RuntimeError("boom")

        service = HangupService(fail, self.reactor)
        service.received(signal.SIGHUP, None)
        self.reactor.runCalls()
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
