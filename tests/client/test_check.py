"""
``backupremote check`` on twins: the checker against a real server core
through L{LoopbackConnection} on a C{Clock}, destinations as
L{MemoryDestination}s behind the real registry and store; the pure clock
and licence findings; the table and the exit codes.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from backupremote.cli.check import describeReport, exitCodeOf
from backupremote.cli.output import EXIT_AUTH, EXIT_CONFIG, EXIT_CONNECTION, EXIT_OK, EXIT_REFUSED
from backupremote.client.api import BackupRemoteClient
from backupremote.client.check import (
    BLOCKER,
    OK,
    WARNING,
    Checker,
    CheckReport,
    Finding,
    clockFinding,
    licenceFinding,
)
from backupremote.client.config import ServerAddress, ServerEntry
from backupremote.client.connection import Credentials
from backupremote.client.destinations.interface import IDestination
from backupremote.client.destinations.registry import DestinationRegistry
from backupremote.client.destinations.stored import DestinationStore, StoredDestination
from backupremote.protocol.databases import ConnectionTestResult
from backupremote.protocol.databases import Finding as PreflightFinding
from backupremote.protocol.databases import PreflightReport
from backupremote.protocol.errors import (
    AUTH_FAILED,
    CLOCK_SKEW,
    CONFIG_INVALID,
    DB_AUTH_FAILED,
    DESTINATION_UNREACHABLE,
    LICENSE_EXPIRING,
    LICENSE_FEATURE_MISSING,
    REGISTRY,
    TLS_FINGERPRINT_MISMATCH,
    TOOL_MISSING,
    BackupRemoteError,
)
from backupremote.protocol.features import REMOTE_CONTROL
from backupremote.testing import LoopbackConnection, MemoryClientStore, MemoryDestination
from tests.fixtures import CLIENT_ID, SECRET
from tests.server.transfers.helpers import StagingMixin

UTC = timezone.utc
FINGERPRINT = ":".join(["AB"] * 32)
T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


class ClockFindingTests(SynchronousTestCase):
    """The skew is the server's instant against the middle of the round trip."""

    def at(self, seconds: float) -> datetime:
        return datetime.fromtimestamp(T0.timestamp() + seconds, UTC)

    def test_inStep(self) -> None:
        finding = clockFinding("east", T0.timestamp(), T0.timestamp() + 0.2, self.at(0.1))
        self.assertEqual((finding.status, finding.code), (OK, None))
        self.assertIn("0.000 s ahead", finding.detail)

    def test_aheadIsAWarning(self) -> None:
        finding = clockFinding("east", T0.timestamp(), T0.timestamp(), self.at(10))
        self.assertEqual((finding.status, finding.code), (WARNING, CLOCK_SKEW))
        self.assertIn("10.000 s ahead of", finding.detail)
        self.assertEqual(finding.action, REGISTRY[CLOCK_SKEW].action)

    def test_farBehindIsABlocker(self) -> None:
        finding = clockFinding("east", T0.timestamp(), T0.timestamp(), self.at(-600))
        self.assertEqual((finding.status, finding.code), (BLOCKER, CLOCK_SKEW))
        self.assertIn("600.000 s behind", finding.detail)

    def test_roundTripIsTheUncertainty(self) -> None:
        """3 s off, measured over a 4 s round trip: it may be 1 s: no warning."""
        finding = clockFinding("east", T0.timestamp(), T0.timestamp() + 4, self.at(5))
        self.assertEqual(finding.status, OK)
        self.assertIn("+/- 2.000 s", finding.detail)

    def test_olderServerTellsNoTime(self) -> None:
        finding = clockFinding("east", 0.0, 0.0, None)
        self.assertEqual((finding.status, finding.code), (WARNING, None))
        self.assertIn("not known", finding.detail)


class LicenceFindingTests(SynchronousTestCase):
    def test_farAway(self) -> None:
        finding = licenceFinding("east", T0 + timedelta(days=90), T0)
        self.assertEqual(finding.status, OK)
        self.assertEqual(finding.detail, "valid, expires 2027-02-27 12:00 UTC (90 days left)")

    def test_within30Days(self) -> None:
        finding = licenceFinding("east", T0 + timedelta(days=5, hours=1), T0)
        self.assertEqual((finding.status, finding.code), (WARNING, LICENSE_EXPIRING))
        self.assertIn("(6 days left)", finding.detail)
        self.assertEqual(finding.action, REGISTRY[LICENSE_EXPIRING].action)

    def test_thresholdsFromTheConfiguration(self) -> None:
        self.assertEqual(licenceFinding("east", T0 + timedelta(days=20), T0, (14, 1)).status, OK)


class MemoryDestinations(DestinationRegistry):
    """The real registry and store; each destination opens as its L{MemoryDestination}."""

    def __init__(self, clock: Any) -> None:
        super().__init__(clock, DestinationStore(MemoryClientStore()))
        self.memory: dict[str, MemoryDestination] = {}

    def add(self, name: str) -> MemoryDestination:
        stored = StoredDestination(str(uuid.uuid4()), name, "local", f"file:///srv/{name}")
        self.store.add(stored, None, T0)
        self.memory[name] = MemoryDestination(name=name)
        return self.memory[name]

    def open(self, destination: StoredDestination) -> Deferred[IDestination]:
        return succeed(self.memory[destination.name])  # type: ignore[arg-type]


class CheckerTests(StagingMixin, SynchronousTestCase):
    """The checker against a real server core (a SQLite configuration named db)."""

    def setUp(self) -> None:
        self.setUpStaging()
        self.clock = self.harness.clock
        # the probe runs in the reactor's thread pool, which a Clock has not:
        # the integration test runs the real one
        self.tested = ConnectionTestResult(ok=True, reason=None, message="ok",
                                           serverVersion="3.40.1", latencyMs=2.0)

        async def test(clientId: str, configId: Any, given: Any) -> ConnectionTestResult:
            return self.tested

        self.patch(self.harness.databases, "test", test)
        self.registry = MemoryDestinations(self.clock)
        self.nas = self.registry.add("nas")

    def checker(self, secret: str = SECRET, **license: Any) -> Checker:
        now = datetime.fromtimestamp(self.clock.seconds(), UTC)
        license.setdefault("expiresAt", now + timedelta(days=90))
        connection = LoopbackConnection(
            self.clock, Credentials(CLIENT_ID, secret, self.harness.license(**license)),
            self.harness.serverProtocol, keepaliveInterval=1e6, keepaliveTimeout=1e6,
            callTimeout=1e6)
        self.addCleanup(connection.stop)
        client = BackupRemoteClient(connection)
        entry = ServerEntry("default", ServerAddress("db1.example", 7443), CLIENT_ID,
                            FilePath("client.secret"), FilePath("client.license"),
                            (FINGERPRINT,))
        return Checker(self.clock, {"default": client}.__getitem__, {"default": entry},
                       self.registry)

    def checked(self, checker: Checker) -> CheckReport:
        results: list[Any] = []
        checker.run().addBoth(results.append)
        for _ in range(1000):
            if results:
                break
            self.clock.advance(0)
        self.assertEqual(len(results), 1, "the checks did not end")
        if isinstance(results[0], Failure):
            results[0].raiseException()
        report: CheckReport = results[0]
        return report

    def summary(self, report: CheckReport) -> list[tuple[str, str, str, str | None]]:
        return [(f.check, f.subject, f.status, f.code) for f in report.findings]

    def test_healthy(self) -> None:
        report = self.checked(self.checker())
        self.assertEqual(self.summary(report), [
            ("server", "default", OK, None),
            ("licence", "default", OK, None),
            ("clock", "default", OK, None),
            ("database", "default/db", OK, None),
            ("preflight", "default/db", OK, None),
            ("destination", "nas", OK, None),
        ])
        self.assertTrue(report.ok)
        self.assertEqual(exitCodeOf(report), EXIT_OK)
        server = report.findings[0].detail
        self.assertIn("db1.example:7443: connected (TLS, certificate pinned AB:AB:AB:AB...AB:AB)",
                      server)
        self.assertIn(f"logged in as {CLIENT_ID}", server)
        self.assertIn("(90 days left)", report.findings[1].detail)
        self.assertIn("0.000 s ahead", report.findings[2].detail)
        self.assertEqual(self.nas.calls, {"testConnection": 1})
        self.assertTrue(self.nas.closed, "each destination is closed after its test")

    def test_blockersAndWarningsCarryTheTablesAction(self) -> None:
        self.preflightReport = PreflightReport(
            ok=False, blockers=[PreflightFinding(TOOL_MISSING, "no pg_dump on the server")],
            warnings=[])
        self.nas.failNext("testConnection", BackupRemoteError(
            DESTINATION_UNREACHABLE, "cannot connect to nas.example:22: connection refused"))
        report = self.checked(self.checker(expiresAt=datetime.fromtimestamp(
            self.clock.seconds(), UTC) + timedelta(days=3)))
        self.assertEqual([(f.check, f.status, f.code) for f in report.findings if f.status != OK], [
            ("licence", WARNING, LICENSE_EXPIRING),
            ("preflight", BLOCKER, TOOL_MISSING),
            ("destination", BLOCKER, DESTINATION_UNREACHABLE),
        ])
        for finding in report.findings:
            if finding.status != OK:
                self.assertEqual(finding.action, REGISTRY[str(finding.code)].action)
        self.assertEqual(exitCodeOf(report), EXIT_REFUSED)
        table = describeReport(report)
        self.assertIn("BLOCKER  TOOL_MISSING: no pg_dump on the server", table)
        self.assertIn("what to do: " + REGISTRY[DESTINATION_UNREACHABLE].action, table)
        self.assertIn("NOT ready: 2 blockers, 1 warning (exit code 6)", table)

    def test_refusedLoginStopsThatServersChecks(self) -> None:
        report = self.checked(self.checker(secret="not-the-secret-at-all-" * 2))
        self.assertEqual(self.summary(report), [
            ("server", "default", BLOCKER, AUTH_FAILED),
            ("destination", "nas", OK, None),
        ])
        self.assertTrue(report.findings[0].detail.startswith("db1.example:7443: "))
        self.assertEqual(exitCodeOf(report), EXIT_AUTH)

    def test_licenceWithoutTheFeatureCannotCheckDatabases(self) -> None:
        """A licence without remote.db_config: the databases are not checked (a warning)."""
        report = self.checked(self.checker(features=(REMOTE_CONTROL,)))
        self.assertIn(("database", "default", WARNING, LICENSE_FEATURE_MISSING),
                      self.summary(report))
        self.assertTrue(report.ok)

    def test_failedConnectionTestSkipsThePreflight(self) -> None:
        self.tested = ConnectionTestResult(ok=False, reason=DB_AUTH_FAILED,
                                           message="password authentication failed")
        report = self.checked(self.checker())
        self.assertEqual([(f.check, f.status, f.code, f.detail) for f in report.findings
                          if f.subject == "default/db"],
                         [("database", BLOCKER, DB_AUTH_FAILED,
                           "sqlite: password authentication failed")])

    def test_noDatabases(self) -> None:
        checker = self.checker()
        checker.databases = False
        self.assertNotIn("database", [f.check for f in self.checked(checker).findings])


class ReportTests(SynchronousTestCase):
    def test_exitCodeOfTheFirstBlocker(self) -> None:
        def report(*codes: str) -> CheckReport:
            return CheckReport(tuple(Finding("server", "s", BLOCKER, "x", code)
                                     for code in codes))

        self.assertEqual(exitCodeOf(report(TLS_FINGERPRINT_MISMATCH, AUTH_FAILED)),
                         EXIT_CONNECTION)
        self.assertEqual(exitCodeOf(report(CONFIG_INVALID)), EXIT_CONFIG)
        self.assertEqual(exitCodeOf(report(CLOCK_SKEW)), EXIT_REFUSED)
        self.assertEqual(exitCodeOf(CheckReport((Finding("clock", "s", WARNING, "x"),))),
                         EXIT_OK)

    def test_json(self) -> None:
        finding = Finding("destination", "nas", BLOCKER, "refused", DESTINATION_UNREACHABLE)
        self.assertEqual(CheckReport((finding,)).asJSON(), {
            "ok": False, "blockers": 1, "warnings": 0, "checks": [{
                "check": "destination", "subject": "nas", "status": "blocker",
                "detail": "refused", "errorCode": DESTINATION_UNREACHABLE,
                "action": REGISTRY[DESTINATION_UNREACHABLE].action}]})
