"""
The one table of meanings and actions (L{backupremote.protocol.errors}): every
code the CLI prints carries that table's action, whatever prints it (an
error, a failed connection test, a preflight finding, a run's or a job's
error, a check's finding), and the dashboard's run page shows it too.
"""

from __future__ import annotations

import html
import io
import json
from datetime import datetime, timezone

from twisted.trial.unittest import SynchronousTestCase

from backupremote.cli.check import describeReport
from backupremote.cli.databases import describePreflight, describeTest
from backupremote.cli.history import describeJob
from backupremote.cli.output import Output
from backupremote.cli.runs import describeStatus
from backupremote.client.check import BLOCKER, WARNING, CheckReport, Finding
from backupremote.client.jobs import Job
from backupremote.protocol.databases import ConnectionTestResult
from backupremote.protocol.databases import Finding as PreflightFinding
from backupremote.protocol.databases import PreflightReport
from backupremote.protocol.errors import REGISTRY, BackupRemoteError
from backupremote.protocol.options import BackupOptions
from backupremote.protocol.runs import RunStatus

T0 = datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc)


class EveryPrintedCodeCarriesItsActionTests(SynchronousTestCase):
    def assertActionAfter(self, text: str, code: str, times: int = 1) -> None:
        """C{code} is printed, each time followed (on a later line) by the table's action."""
        action = REGISTRY[code].action
        self.assertEqual(text.count(f"what to do: {action}"), times, (code, text))
        self.assertLess(text.index(code), text.index(action), (code, text))

    def test_errors(self) -> None:
        for code in REGISTRY:
            err = io.StringIO()
            Output(False, out=io.StringIO(), err=err).error(BackupRemoteError(code, "why"))
            self.assertActionAfter(err.getvalue(), code)

    def test_errorsAsJSON(self) -> None:
        for code in REGISTRY:
            err = io.StringIO()
            Output(True, out=io.StringIO(), err=err).error(BackupRemoteError(code, "why"))
            self.assertEqual(json.loads(err.getvalue())["action"], REGISTRY[code].action)

    def test_connectionTest(self) -> None:
        for code in REGISTRY:
            self.assertActionAfter(describeTest(ConnectionTestResult(
                ok=False, reason=code, message="why")), code)

    def test_preflight(self) -> None:
        for code in REGISTRY:
            report = PreflightReport(ok=False, blockers=[PreflightFinding(code, "b")],
                                     warnings=[PreflightFinding(code, "w")])
            self.assertActionAfter(describePreflight(report), code, times=2)

    def test_runStatus(self) -> None:
        for code in REGISTRY:
            status = RunStatus("r1", "c1", "alice", BackupOptions(), "failed", "dump",
                               errorCode=code, errorMessage="why")
            self.assertActionAfter(describeStatus(status), code)

    def test_job(self) -> None:
        for code in REGISTRY:
            job = Job("r1", "default", "c1", None, None, None, "delivered", "failed", None,
                      False, (), T0, T0, failedStep="download", errorCode=code,
                      errorMessage="why")
            self.assertActionAfter(describeJob(job), code)

    def test_checkFindings(self) -> None:
        for code in REGISTRY:
            report = CheckReport((Finding("server", "east", BLOCKER, "why", code),
                                  Finding("clock", "east", WARNING, "why", code)))
            self.assertActionAfter(describeReport(report), code, times=2)

    def test_dashboardRunPage(self) -> None:
        from backupremote.client.web import pages

        for code in REGISTRY:
            job = Job("r1", "default", "c1", None, None, None, "delivered", "failed", None,
                      False, (), T0, T0, failedStep="download", errorCode=code,
                      errorMessage="why")
            page = self.successResultOf(pages.render(pages.runPage(job, [], None, None,
                                                                   "csrf", None)))
            self.assertIn(html.escape(REGISTRY[code].action, quote=False).encode("utf-8"),
                          page, code)
