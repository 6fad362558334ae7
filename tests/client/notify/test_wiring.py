"""
The notifier where the daemon's parts call it: the job runner (how a job
ends), the scheduler (slots missed or skipped) and the daemon (the
licence's expiry at login), each on a Clock with the in-memory twins.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import succeed
from twisted.trial.unittest import SynchronousTestCase

from backupremote.client.api import BackupRemoteClient
from backupremote.client.connection import Credentials
from backupremote.client.jobs import (
    JobLocks,
    JobRunner,
    JobStore,
    LocalFolderDelivery,
    now,
    oneServer,
)
from backupremote.client.notify import (
    LicenseExpiring,
    Notifier,
    Route,
    Rules,
    RunFailed,
    RunSucceeded,
    ScheduleMissed,
    ScheduleSkipped,
)
from backupremote.client.schedules.scheduler import Scheduler
from backupremote.client.schedules.store import ScheduleStore
from backupremote.client.service import ClientDaemon
from backupremote.protocol import errors
from backupremote.protocol.errors import BackupRemoteError
from backupremote.testing import LoopbackConnection, MemoryClientStore, MemoryNotificationChannel
from tests.client import test_jobs
from tests.client.schedules import test_scheduler
from tests.fixtures import CLIENT_ID, SECRET, ServerHarness, synchronously
from tests.server.transfers.helpers import RandomProducer, StagingMixin

UTC = timezone.utc


class JobRunnerNotifyTests(StagingMixin, SynchronousTestCase):
    """The runner tells how each job it drives ends: failed, or delivered; once."""

    drive = test_jobs.JobRunnerTests.drive
    request = test_jobs.JobRunnerTests.request

    def setUp(self) -> None:
        self.told: list[Any] = []
        test_jobs.JobRunnerTests.setUp(self)  # type: ignore[arg-type]

    def newClient(self, retry: Any = None) -> JobRunner:
        self.connection = LoopbackConnection(
            self.clock, Credentials(CLIENT_ID, SECRET, self.harness.license()),
            self.harness.serverProtocol, keepaliveInterval=1e6, keepaliveTimeout=1e6,
            callTimeout=1e6)
        self.library = BackupRemoteClient(self.connection)
        return JobRunner(
            self.clock, JobStore(self.store, now(self.clock)), oneServer(self.library),
            LocalFolderDelivery(self.clock, runInThread=synchronously), self.work,
            locks=JobLocks(self.data.child("locks")), retry=retry, runInThread=synchronously,
            downloadOptions={"runInThread": synchronously, "threaded": False},
            notify=self.told.append)

    def test_delivered(self) -> None:
        job = self.drive(self.runner.start(self.request(scheduleId="s-1")))
        self.assertEqual(self.told, [RunSucceeded(
            "r1", "s-1", "default", self.configId, (f"file://{self.destination.path}",),
            job.artifact.sizeBytes)])

    def test_deliveredThenReleased(self) -> None:
        """Delivered, then released by a later drive: one success."""
        self.drive(self.runner.start(self.request(goal="delivered")))
        self.drive(self.runner.start(self.request()))
        self.assertEqual([type(e) for e in self.told], [RunSucceeded])

    def test_notDeliveredIsNoSuccess(self) -> None:
        """Commanded only (the CLI's run without --wait): nothing to tell yet."""
        self.drive(self.runner.start(self.request(goal="running")))
        self.assertEqual(self.told, [])
        self.drive(self.runner.start(self.request()))
        self.assertEqual([type(e) for e in self.told], [RunSucceeded])

    def test_failedOnTheServer(self) -> None:
        async def failing(*args: Any) -> Any:
            raise BackupRemoteError(errors.DUMP_FAILED, "the dump tool failed (test)")

        self.patch(RandomProducer, "__call__", failing)
        self.drive(self.runner.start(self.request(scheduleId="s-1")))
        self.assertEqual(self.told, [RunFailed(
            "r1", "s-1", "default", self.configId, errors.DUMP_FAILED,
            "the dump tool failed (test)", step="follow")])
        self.drive(self.runner.start(self.request()))  # asked again: it stays failed
        self.assertEqual(len(self.told), 1)

    def test_failedHere(self) -> None:
        self.drive(self.runner.start(self.request(databaseConfigId="no-such-config")))
        [event] = self.told
        self.assertEqual((type(event), event.step, event.errorCode, event.database),
                         (RunFailed, "execute", errors.NOT_FOUND, "no-such-config"))


class SchedulerNotifyTests(SynchronousTestCase):
    """The scheduler tells of each slot it records missed or skipped, by name."""

    add = test_scheduler.SchedulerTests.add
    now = test_scheduler.SchedulerTests.now
    start = test_scheduler.SchedulerTests.start
    stop = test_scheduler.SchedulerTests.stop

    def setUp(self) -> None:
        self.told: list[Any] = []
        test_scheduler.SchedulerTests.setUp(self)  # type: ignore[arg-type]

    def makeScheduler(self) -> Scheduler:
        return Scheduler(self.schedules, self.starter, self.clock, notify=self.told.append)

    def test_missed(self) -> None:
        self.add(test_scheduler.every(60 * 24, misfireGraceSeconds=600))
        self.start()
        self.stop()
        self.clock.advance(24 * 3600 + 11 * 60)
        self.scheduler = self.makeScheduler()
        self.start()
        [event] = self.told
        self.assertEqual((type(event), event.scheduleId, event.scheduleName, event.fireTime),
                         (ScheduleMissed, "sched-1", "often",
                          test_scheduler.T0 + timedelta(days=1)))
        self.assertIn("beyond the misfire grace", event.reason)

    def test_skipped(self) -> None:
        sched = self.add(test_scheduler.every(15))
        self.start()
        self.starter.activeSchedules.add(sched.id)
        self.clock.advance(15 * 60)
        [event] = self.told
        self.assertEqual((type(event), event.scheduleName, event.reason),
                         (ScheduleSkipped, "often", "the previous run is still active"))
        self.starter.activeSchedules.clear()
        self.clock.advance(15 * 60)
        self.assertEqual(len(self.told), 1, "a slot that starts tells nothing")


class NotifierScheduleNamesTests(SynchronousTestCase):
    """A run's event names its schedule through the store, so rules by name apply."""

    def test_named(self) -> None:
        clock = test_scheduler.Clock()
        clock.advance(test_scheduler.T0.timestamp())
        schedules = ScheduleStore(MemoryClientStore())
        sched = self.successResultOf(schedules.add(test_scheduler.every(15), test_scheduler.T0))
        channel = MemoryNotificationChannel()
        notifier = Notifier(clock, [Route(channel, Rules(on=set(),
                                                         schedules={"often": {"failure"}}))],
                            digestAfter=0,
                            scheduleNames=lambda i: schedules.get(i).addCallback(
                                lambda s: s.name))
        notifier.notify(RunFailed("r1", sched.id, "default", "db", "DUMP_FAILED", "x"))
        notifier.notify(RunFailed("r2", "removed-schedule", "default", "db", "DUMP_FAILED",
                                  "x"))
        self.assertEqual([(e.runId, e.scheduleName) for e in channel.events],
                         [("r1", "often")])


class DaemonLicenseTests(SynchronousTestCase):
    """The daemon tells the licence watch the expiry its server granted."""

    def test_expiryAtLogin(self) -> None:
        harness = ServerHarness(self)
        clock = harness.clock
        expiresAt = (datetime.fromtimestamp(clock.seconds(), UTC)
                     + timedelta(days=5)).replace(microsecond=0)
        connection = LoopbackConnection(
            clock, Credentials(CLIENT_ID, SECRET, harness.license(expiresAt=expiresAt)),
            harness.serverProtocol, keepaliveInterval=1e6, keepaliveTimeout=1e6,
            callTimeout=1e6)
        # the daemon starts its connection's service; the twin connects by itself
        connection.service = Service()  # type: ignore[attr-defined]
        channel = MemoryNotificationChannel()
        notifier = Notifier(clock, [Route(channel, Rules(on={"license"}))], digestAfter=0)
        daemon = ClientDaemon(BackupRemoteClient(connection), notifier=notifier)
        daemon.startService()
        for _ in range(20):
            clock.advance(0)
        self.successResultOf(daemon.connected)
        self.assertEqual(channel.events, [LicenseExpiring("default", expiresAt, 5)])
        self.assertEqual(len([c for c in clock.getDelayedCalls() if "_check" in repr(c)]), 1)
        self.successResultOf(daemon.stopService() or succeed(None))
        self.assertEqual([c for c in clock.getDelayedCalls() if "_check" in repr(c)], [],
                         "the licence watch stopped with the daemon")
