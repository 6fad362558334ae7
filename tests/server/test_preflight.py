"""Preflight decisions, with the in-memory engine twin and no programs."""

from __future__ import annotations

import os
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from backupremote.protocol import errors
from backupremote.protocol.databases import ConnectionTestResult
from backupremote.protocol.errors import BackupRemoteError
from backupremote.protocol.options import BackupOptions
from backupremote.server.databases.preflight import preflight
from backupremote.server.engines.base import IEngine, Target
from backupremote.server.machinery.toolfinder import ToolFinder
from backupremote.server.staging import StagingArea
from backupremote.testing import MemoryEngine


OK = ConnectionTestResult(ok=True, reason=None, message="ok", serverVersion="1.0",
                          sizeBytes=1000)


class PreflightTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.tools = ToolFinder(Clock(), ())
        temp = FilePath(self.mktemp())
        temp.makedirs()
        self.temp = temp
        self.staging = StagingArea.forDataDir(FilePath(self.mktemp()), temp)

    def preflight(self, engine: MemoryEngine, options: BackupOptions) -> Any:
        verifyObject(IEngine, engine)
        return self.successResultOf(Deferred.fromCoroutine(
            preflight(engine, Target("memory"), options, self.tools, Clock(), 5,
                      self.staging)))

    def test_ready(self) -> None:
        report = self.preflight(MemoryEngine(result=OK), BackupOptions(compression="zip"))
        self.assertTrue(report.ok)
        self.assertEqual((report.blockers, report.warnings), ([], []))
        self.assertEqual(report.dumpTool.name, "memdump")
        self.assertEqual(report.sizeEstimate, 1000)
        staging = self.temp.child(f"backupremote-{os.getuid()}")
        self.assertEqual(os.stat(staging.path).st_mode & 0o777, 0o700)

    def test_everyBlockerReported(self) -> None:
        engine = MemoryEngine(
            result=ConnectionTestResult(ok=False, reason="DB_AUTH_FAILED", message="no"),
            dumpError=BackupRemoteError(errors.TOOL_MISSING, "no dump tool"))
        report = self.preflight(engine, BackupOptions(compression="zstd"))
        self.assertFalse(report.ok)
        self.assertEqual([f.code for f in report.blockers],
                         ["DB_AUTH_FAILED", errors.TOOL_MISSING, errors.COMPRESSION_UNAVAILABLE])

    def test_tempFolderNotUsable(self) -> None:
        """A staging root that is not a private folder of ours is refused."""
        elsewhere = FilePath(self.mktemp())
        elsewhere.makedirs()
        os.symlink(elsewhere.path, self.temp.child(f"backupremote-{os.getuid()}").path)
        report = self.preflight(MemoryEngine(result=OK), BackupOptions(compression="none"))
        self.assertEqual([f.code for f in report.blockers], [errors.TEMP_NOT_WRITABLE])

    def test_diskSpace(self) -> None:
        free = os.statvfs(self.temp.path)
        freeBytes = free.f_bavail * free.f_frsize
        tooBig = ConnectionTestResult(ok=True, reason=None, message="ok",
                                      sizeBytes=freeBytes * 10)
        report = self.preflight(MemoryEngine(result=tooBig), BackupOptions(compression="none"))
        self.assertEqual([f.code for f in report.blockers], [errors.DISK_SPACE_LOW])
        tight = ConnectionTestResult(ok=True, reason=None, message="ok",
                                     sizeBytes=int(freeBytes * 0.7))
        report = self.preflight(MemoryEngine(result=tight), BackupOptions(compression="none"))
        self.assertTrue(report.ok)
        self.assertEqual([f.code for f in report.warnings], [errors.DISK_SPACE_LOW])
