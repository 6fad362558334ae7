"""
The licence's expiry the server grants at login, shown by ``capabilities``,
``status`` and the client daemon's start-up line (twins: a real server core
through L{LoopbackConnection} on a C{Clock}).
"""

from __future__ import annotations

import io
from argparse import Namespace
from datetime import datetime, timedelta, timezone
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.logger import formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from backupremote.cli.output import Output
from backupremote.cli.remote import capabilitiesCommand
from backupremote.cli.runs import statusCommand
from backupremote.client.api import BackupRemoteClient
from backupremote.client.connection import Credentials
from backupremote.client.expiry import describeExpiry, expiryJSON, expiryOf
from backupremote.client.service import ClientDaemon
from backupremote.testing import LoopbackConnection
from tests.fixtures import CLIENT_ID, SECRET
from tests.server.transfers.helpers import StagingMixin

UTC = timezone.utc
T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


class DescribeExpiryTests(SynchronousTestCase):
    def test_daysLeft(self) -> None:
        self.assertEqual(describeExpiry(T0 + timedelta(days=90), T0),
                         "expires 2027-02-27 12:00 UTC (90 days left)")
        self.assertEqual(describeExpiry(T0 + timedelta(hours=3), T0),
                         "expires 2026-11-29 15:00 UTC (1 day left)")
        self.assertEqual(describeExpiry(T0, T0), "EXPIRED 2026-11-29 12:00 UTC")
        self.assertEqual(describeExpiry(None, T0), "no expiry given by the server")

    def test_json(self) -> None:
        self.assertEqual(expiryJSON(T0 + timedelta(days=2), T0),
                         {"licenseExpiresAt": "2026-12-01T12:00:00Z", "licenseDaysLeft": 2})
        self.assertEqual(expiryJSON(None, T0),
                         {"licenseExpiresAt": None, "licenseDaysLeft": None})

    def test_fromTheAuthAnswer(self) -> None:
        self.assertEqual(expiryOf({"licenseExpiresAt": "2026-12-01T12:00:00Z"}),
                         T0 + timedelta(days=2))
        self.assertIsNone(expiryOf({"licenseExpiresAt": ""}))


class ShownTests(StagingMixin, SynchronousTestCase):
    def setUp(self) -> None:
        self.setUpStaging()
        self.clock = self.harness.clock
        self.expiresAt = (datetime.fromtimestamp(self.clock.seconds(), UTC)
                          + timedelta(days=12, hours=1)).replace(microsecond=0)
        self.connection = LoopbackConnection(
            self.clock, Credentials(CLIENT_ID, SECRET,
                                    self.harness.license(expiresAt=self.expiresAt)),
            self.harness.serverProtocol, keepaliveInterval=1e6, keepaliveTimeout=1e6,
            callTimeout=1e6)
        self.addCleanup(self.connection.stop)
        self.client = BackupRemoteClient(self.connection)
        self.when = f"{self.expiresAt:%Y-%m-%d %H:%M} UTC (13 days left)"

    def drive(self, deferred: Deferred[Any]) -> Any:
        results: list[Any] = []
        deferred.addBoth(results.append)
        for _ in range(100):
            if results:
                break
            self.clock.advance(0)
        self.assertEqual(len(results), 1)
        if isinstance(results[0], Failure):
            results[0].raiseException()
        return results[0]

    def command(self, command: Any, asJSON: bool, **args: Any) -> str:
        out = io.StringIO()
        self.drive(Deferred.fromCoroutine(command(
            self.client, Namespace(**args), Output(asJSON, out=out, err=io.StringIO()))))
        return out.getvalue()

    def test_capabilities(self) -> None:
        self.assertIn("licence:        expires " + self.when,
                      self.command(capabilitiesCommand, False))
        shown = self.command(capabilitiesCommand, True)
        self.assertIn(f'"licenseExpiresAt": "{self.expiresAt:%Y-%m-%dT%H:%M:%S}Z"', shown)
        self.assertIn('"licenseDaysLeft": 13', shown)
        self.assertIn('"serverVersion"', shown, "the Capabilities fields are all there")

    def test_status(self) -> None:
        runId = "6b0c1a52-7f43-4a8e-9d0e-3f5d8f0e2c11"
        self.drive(self.client.executeBackup(runId, self.configId))
        shown = self.command(statusCommand, False, run_id=runId)
        self.assertTrue(shown.startswith(f"run {runId}: "), shown)
        self.assertIn("\n  licence: expires " + self.when, shown)
        shown = self.command(statusCommand, True, run_id=runId)
        self.assertIn('"licenseDaysLeft": 13', shown)
        self.assertIn(f'"runId": "{runId}"', shown)

    def test_daemonStartUpLine(self) -> None:
        said: list[str] = []

        def observe(event: dict[str, Any]) -> None:
            if event.get("log_namespace") == "backupremote.client":
                said.append(formatEvent(event))

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        self.connection.service = Service()  # type: ignore[attr-defined]
        daemon = ClientDaemon(self.client)
        daemon.startService()
        self.addCleanup(daemon.stopService)
        self.drive(daemon.connected)
        [line] = [line for line in said if line.startswith("connected")]
        self.assertTrue(line.startswith("connected to the server, which grants: remote."), line)
        self.assertTrue(line.endswith(f"; licence expires {self.when}"), line)
