"""``backupremote cancel`` of a run that has already ended."""

from __future__ import annotations

import argparse
import io
from typing import Any

from twisted.internet.defer import Deferred, fail
from twisted.trial.unittest import SynchronousTestCase

from backupremote.cli.output import EXIT_REFUSED, Output
from backupremote.cli.runs import cancelCommand
from backupremote.protocol.errors import CONFLICT, REGISTRY, BackupRemoteError


class RefusingClient:
    def __init__(self, error: BackupRemoteError) -> None:
        self.error = error

    def cancelBackup(self, runId: str) -> Deferred[Any]:
        return fail(self.error)


class CancelEndedRunTests(SynchronousTestCase):
    def cancel(self, error: BackupRemoteError) -> tuple[BackupRemoteError, str]:
        done = Deferred.fromCoroutine(cancelCommand(
            RefusingClient(error), argparse.Namespace(run_id="r-1"), Output(False)))
        raised = self.failureResultOf(done, BackupRemoteError).value
        err = io.StringIO()
        self.assertEqual(Output(False, io.StringIO(), err).error(raised), EXIT_REFUSED)
        return raised, err.getvalue()

    def test_endedRunSaysSo(self) -> None:
        """The action says the run already ended, not CONFLICT's generic retry advice."""
        raised, shown = self.cancel(BackupRemoteError(
            CONFLICT, "the run has already ended (completed): there is nothing to cancel",
            "req-1", {"state": "completed"}))
        self.assertIn("what to do: Nothing to do: the run already ended (completed).", shown)
        self.assertIn("`backupremote status r-1`", shown)
        self.assertNotIn(REGISTRY[CONFLICT].action, shown)
        self.assertEqual((raised.code, raised.requestId), (CONFLICT, "req-1"))

    def test_otherConflictsUnchanged(self) -> None:
        raised, shown = self.cancel(BackupRemoteError(CONFLICT, "something else", "req-2"))
        self.assertIn(REGISTRY[CONFLICT].action, shown)
