"""
The job runner on a C{Clock}: a real server core over the in-memory
connection twin, the in-memory store twin, real folders. Each step is one
transaction; a client "killed" at any transaction (its runner and its
connection gone, the store as committed) finishes the job when restarted,
with nothing done twice that a user would notice.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from backupremote.client.api import BackupRemoteClient
from backupremote.client.backoff import Backoff
from backupremote.client.connection import Credentials
from backupremote.client.jobs import (
    FAILED,
    STATES,
    JobLocks,
    JobRequest,
    JobRunner,
    JobStore,
    LocalFolder,
    LocalFolderDelivery,
    now,
    oneServer,
)
from backupremote.client.jobs import runner as runnerModule
from backupremote.client.jobs.delivery import DeliveryWhenNeeded
from backupremote.client.jobs.runner import JobObserver as _Observer
from backupremote.protocol import errors
from backupremote.protocol.errors import BackupRemoteError
from backupremote.protocol.transfers import CHUNK_SIZE
from backupremote.server.transfers.sender import ChunkSender
from backupremote.testing import LoopbackConnection, MemoryClientStore
from tests.fixtures import CLIENT_ID, SECRET, synchronously
from tests.server.transfers.helpers import RandomProducer, StagingMixin, folderNames

_sendBox = ChunkSender._sendBox


class Killed(Exception):
    """The client process died here."""


class KillableStore(MemoryClientStore):
    """The store twin, which dies at its C{dieAt}-th transaction (before committing it)."""

    dieAt: int | None = None
    transactions = 0

    def transact(self, work: Any) -> Deferred[Any]:
        self.transactions += 1
        if self.dieAt is not None and self.transactions >= self.dieAt:
            raise Killed(f"killed at transaction {self.transactions}")
        return super().transact(work)


class Recorder(_Observer):
    def __init__(self) -> None:
        self.events: list[Any] = []
        self.progress: list[Any] = []
        self.states: list[str] = []

    def runEvent(self, event: Any) -> None:
        self.events.append(event)

    def downloadProgress(self, progress: Any) -> None:
        self.progress.append(progress)

    def stepDone(self, job: Any) -> None:
        self.states.append(job.state)


class JobRunnerTests(StagingMixin, SynchronousTestCase):
    def setUp(self) -> None:
        self.setUpStaging()
        self.clock = self.harness.clock
        self.store = KillableStore()
        self.data = FilePath(self.mktemp())
        self.work = self.data.child("downloads")
        self.destination = FilePath(self.mktemp())
        self.sent: list[int] = []

        def counting(sender: ChunkSender, count: int) -> None:
            self.sent.append(count)
            _sendBox(sender, count)

        self.patch(ChunkSender, "_sendBox", counting)
        self.runner = self.newClient()

    def newClient(self, retry: Any = None) -> JobRunner:
        """A client process: its own connection and runner, the same store and folders."""
        self.connection = LoopbackConnection(
            self.clock, Credentials(CLIENT_ID, SECRET, self.harness.license()),
            self.harness.serverProtocol, keepaliveInterval=1e6, keepaliveTimeout=1e6,
            callTimeout=1e6)
        self.library = BackupRemoteClient(self.connection)
        return JobRunner(
            self.clock, JobStore(self.store, now(self.clock)), oneServer(self.library),
            LocalFolderDelivery(self.clock, runInThread=synchronously), self.work,
            locks=JobLocks(self.data.child("locks")), retry=retry, runInThread=synchronously,
            downloadOptions={"runInThread": synchronously, "threaded": False})

    def drive(self, deferred: Deferred[Any], idle: float = 1.0) -> Any:
        results: list[Any] = []
        deferred.addBoth(results.append)
        for _ in range(10_000):
            if results:
                break
            self.clock.advance(0)
            if not results:
                self.clock.advance(idle)
        else:
            raise AssertionError("the job did not end")
        if isinstance(results[0], Failure):
            results[0].raiseException()
        return results[0]

    def request(self, runId: str = "r1", size: int = 20 * CHUNK_SIZE + 3,
                **changes: Any) -> JobRequest:
        self.producer.sizes[runId] = size
        fields: dict[str, Any] = dict(
            runId=runId, databaseConfigId=self.configId,
            destinations=(LocalFolder(self.destination.path),))
        return JobRequest(**(fields | changes))

    def serverRuns(self) -> int:
        return len(self.harness.store.connection.execute("SELECT runId FROM runs").fetchall())

    def assertDelivered(self, job: Any, runId: str = "r1") -> None:
        data = self.producer.data[runId]
        self.assertEqual(job.state, "released")
        [name] = folderNames(self.destination)
        self.assertEqual(self.destination.child(name).getContent(), data)
        self.assertEqual(len(job.receipts), 1)
        receipt = job.receipts[0]
        self.assertEqual((receipt.name, receipt.size, receipt.sha256),
                         (name, len(data), job.artifact.sha256))
        self.assertEqual(receipt.destination, f"file://{self.destination.path}")
        self.assertFalse(self.work.child(runId).exists())  # the work copy is gone
        self.assertFalse(self.harness.staging.runFolder(runId).exists())  # released

    def history(self, runId: str = "r1") -> list[str]:
        return [state for state, _, _ in self.successResultOf(self.runner.jobs.steps(runId))]

    # The whole way

    def test_wholeJob(self) -> None:
        observer = Recorder()
        before = self.store.commits
        job = self.drive(self.runner.start(self.request(), observer))
        # one transaction a step (the first records the job), nothing else
        self.assertEqual(self.store.commits - before, len(STATES))
        self.assertDelivered(job)
        self.assertEqual(self.history(), list(STATES))
        self.assertEqual(observer.states, list(STATES[1:]))
        self.assertEqual(observer.events[-1].kind, "complete")
        self.assertEqual(observer.progress[-1].phase, "done")
        self.assertEqual(job.status.state, "completed")
        self.assertEqual(sum(self.sent), 21)
        status = self.library.getExecutionStatus("r1")
        self.clock.advance(0)
        self.assertFalse(self.successResultOf(status).artifact.staged)
        self.assertEqual(self.runner.active, [])
        self.assertFalse(self.data.child("locks").child("r1.lock").exists())

    def test_deliveryMadeWhenAJobHasADestination(self) -> None:
        """
        L{DeliveryWhenNeeded} (the CLI's): a job without a destination is
        delivered without making the delivery; the first with one makes it,
        once, goes through it, and L{IDelivery.stop} reaches it.
        """
        built: list[LocalFolderDelivery] = []
        stopped: list[bool] = []

        def build() -> LocalFolderDelivery:
            built.append(LocalFolderDelivery(self.clock, runInThread=synchronously))
            self.patch(built[-1], "stop", lambda: (stopped.append(True), succeed(None))[1])
            return built[-1]

        delivery = DeliveryWhenNeeded(build)
        self.successResultOf(delivery.stop())  # nothing made, nothing to stop
        self.assertEqual(built, [])
        self.patch(self.runner, "_delivery", delivery)
        bare = self.drive(self.runner.start(self.request("bare", destinations=())))
        self.assertEqual((bare.state, tuple(bare.receipts), built), ("released", (), []))
        self.assertDelivered(self.drive(self.runner.start(self.request())))
        self.drive(self.runner.start(self.request("r2")))
        self.assertEqual(len(built), 1)
        self.successResultOf(delivery.stop())
        self.assertEqual(stopped, [True])

    def test_scheduleFieldsAreKept(self) -> None:
        from datetime import datetime, timezone
        fire = datetime(2026, 11, 1, 2, 30, tzinfo=timezone.utc)
        job = self.drive(self.runner.start(self.request(scheduleId="s-1", fireTime=fire)))
        self.assertEqual((job.scheduleId, job.fireTime), ("s-1", fire))
        status = self.library.getExecutionStatus("r1")
        self.clock.advance(0)
        self.assertEqual(self.successResultOf(status).scheduleId, "s-1")

    def test_goalRunningOnlyCommands(self) -> None:
        job = self.drive(self.runner.start(self.request(goal="running")))
        self.assertEqual((job.state, job.finished), ("running", True))
        self.assertEqual(folderNames(self.destination), [])
        # asked again with more to do, the same job goes on: one backup only
        job = self.drive(self.runner.start(self.request()))
        self.assertDelivered(job)
        self.assertEqual(self.serverRuns(), 1)
        self.assertIn("requested again", [d for _, _, d in self.successResultOf(
            self.runner.jobs.steps("r1"))])

    def test_followOnly(self) -> None:
        job = self.drive(self.runner.start(self.request(goal="completed", destinations=())))
        self.assertEqual(job.state, "completed")
        self.assertTrue(job.status.artifact.staged)

    def test_downloadIntoAFolderWithoutDelivery(self) -> None:
        """``backupremote download RUNID DIR``: a run started elsewhere, kept in DIR."""
        self.stage("other", 5 * CHUNK_SIZE)
        folder = FilePath(self.mktemp())
        job = self.drive(self.runner.start(JobRequest(
            runId="other", goal="delivered", downloadFolder=folder.path)))
        self.assertEqual(job.state, "delivered")
        self.assertEqual(FilePath(job.artifactPath).getContent(), self.producer.data["other"])
        self.assertEqual(FilePath(job.artifactPath).parent(), folder)
        self.assertEqual(job.receipts, ())
        # then released, as ``download --release`` would: the file stays
        job = self.drive(self.runner.start(JobRequest(
            runId="other", goal="released", downloadFolder=folder.path)))
        self.assertEqual(job.state, "released")
        self.assertTrue(FilePath(job.artifactPath).exists())
        self.assertEqual(self.history("other"),
                         ["running", "completed", "downloaded", "verified", "delivered",
                          "delivered", "released"])

    def test_unknownRunIsNotRecorded(self) -> None:
        error = self.assertRaises(BackupRemoteError, self.drive, self.runner.start(
            JobRequest(runId="nope", goal="delivered", downloadFolder=self.mktemp())))
        self.assertEqual(error.code, errors.NOT_FOUND)
        self.assertIsNone(self.successResultOf(self.runner.jobs.get("nope")))

    def test_anotherFolderForADownloadedRunIsRefused(self) -> None:
        self.drive(self.runner.start(self.request(goal="delivered", destinations=(),
                                                  downloadFolder=self.mktemp())))
        error = self.assertRaises(BackupRemoteError, self.drive, self.runner.start(
            self.request(goal="delivered", destinations=(), downloadFolder=self.mktemp())))
        self.assertEqual(error.code, errors.CONFLICT)
        self.assertIn("is downloaded into", error.message)

    # Failures

    def test_runFailedOnTheServer(self) -> None:
        async def failing(*args: Any) -> Any:
            raise BackupRemoteError(errors.DUMP_FAILED, "the dump tool failed (test)")

        self.patch(RandomProducer, "__call__", failing)
        job = self.drive(self.runner.start(self.request()))
        self.assertEqual((job.state, job.failedStep, job.errorCode),
                         (FAILED, "follow", errors.DUMP_FAILED))
        self.assertEqual(folderNames(self.destination), [])
        # asked again: the run is over on the server; nothing is retried
        again = self.drive(self.runner.start(self.request()))
        self.assertEqual(again.state, FAILED)
        self.assertEqual(self.serverRuns(), 1)

    def test_refusedCommandFailsTheJob(self) -> None:
        job = self.drive(self.runner.start(self.request(databaseConfigId="no-such-config")))
        self.assertEqual((job.state, job.failedStep, job.errorCode),
                         (FAILED, "execute", errors.NOT_FOUND))

    def test_deliveryConflictIsTriedAgainWhenAsked(self) -> None:
        job = self.drive(self.runner.start(self.request(goal="completed")))
        name = job.status.artifact.name
        self.destination.makedirs()
        self.destination.child(name).setContent(b"somebody else's file")
        job = self.drive(self.runner.start(self.request()))
        self.assertEqual((job.state, job.failedStep, job.errorCode),
                         (FAILED, "deliver", errors.CONFLICT))
        self.assertEqual(self.destination.child(name).getContent(), b"somebody else's file")
        self.destination.child(name).remove()
        job = self.drive(self.runner.start(self.request()))
        self.assertDelivered(job)
        self.assertEqual(sum(self.sent), 21)  # not downloaded twice

    def test_unreachableServerLeavesTheJobWhereItIs(self) -> None:
        self.connection.refusals = 1_000
        error = self.assertRaises(BackupRemoteError, self.drive,
                                  self.runner.start(self.request()))
        self.assertEqual(error.code, errors.CONNECTION_FAILED)
        job = self.successResultOf(self.runner.jobs.get("r1"))
        self.assertEqual(job.state, "pending")
        self.connection.refusals = 0
        self.assertDelivered(self.drive(self.runner.resume("r1")))

    def test_daemonRetriesWithBackoff(self) -> None:
        runner = self.newClient(retry=lambda: Backoff(self.clock, random=lambda: 0.0,
                                                      first=10, maximum=60, maxFailures=None))
        self.connection.refusals = 5
        started = self.clock.seconds()
        job = self.drive(runner.start(self.request()), idle=5)
        self.assertDelivered(job)
        self.assertGreaterEqual(self.clock.seconds() - started, 10 + 20 + 40 + 60 + 60)

    def test_refusedClientLeavesTheJob(self) -> None:
        """A wrong secret is the configuration's fault, not the job's: it waits."""
        self.connection = LoopbackConnection(
            self.clock, Credentials(CLIENT_ID, "not-the-secret", self.harness.license()),
            self.harness.serverProtocol, keepaliveInterval=1e6, keepaliveTimeout=1e6)
        runner = JobRunner(
            self.clock, JobStore(self.store, now(self.clock)),
            oneServer(BackupRemoteClient(self.connection)),
            LocalFolderDelivery(self.clock, runInThread=synchronously), self.work,
            retry=lambda: Backoff(self.clock, maxFailures=None), runInThread=synchronously)
        error = self.assertRaises(BackupRemoteError, self.drive, runner.start(self.request()))
        self.assertEqual(error.code, errors.AUTH_FAILED)
        self.assertEqual(self.successResultOf(runner.jobs.get("r1")).state, "pending")
        self.assertDelivered(self.drive(self.runner.resume("r1")))  # fixed: it goes on

    def test_stopLeavesJobsToResume(self) -> None:
        self.connection.refusals = 1_000
        runner = self.newClient(retry=lambda: Backoff(self.clock, maxFailures=None))
        self.connection.refusals = 1_000
        started = runner.start(self.request())
        self.clock.advance(5)
        self.assertEqual(runner.active, ["r1"])
        self.successResultOf(runner.stop())
        self.clock.advance(0)
        self.failureResultOf(started)
        self.assertEqual(runner.active, [])
        self.assertEqual(self.successResultOf(runner.jobs.get("r1")).state, "pending")
        self.assertFalse(self.data.child("locks").child("r1.lock").exists())
        self.assertDelivered(self.drive(self.newClient().resumeAll())[0])

    def test_resumeAllLeavesAJobHeldElsewhere(self) -> None:
        self.store.dieAt = 3
        self.assertRaises(Killed, self.drive, self.runner.start(self.request()))
        self.store.dieAt = None
        release = JobLocks(self.data.child("locks")).acquire("r1")
        runner = self.newClient()
        self.assertEqual(self.drive(runner.resumeAll()), [])
        self.assertEqual(self.successResultOf(runner.jobs.get("r1")).state, "running")
        release()
        self.assertDelivered(self.drive(runner.resumeAll())[0])

    def test_submitFiresOnceRecorded(self) -> None:
        recorded = self.runner.submit(self.request(scheduleId="s-1"))
        job = self.drive(recorded)
        self.assertEqual(job.state, "pending")
        self.assertEqual(self.successResultOf(self.runner.busySchedules()), {"s-1"})
        for _ in range(50):
            self.clock.advance(0)
        self.assertEqual(self.successResultOf(self.runner.busySchedules()), set())
        self.assertDelivered(self.successResultOf(self.runner.jobs.get("r1")))

    def test_submitSendsTheCommandOnceRecordedAndBeforeFiring(self) -> None:
        """
        The job is on the disk before its command leaves (a kill -9 in
        between loses nothing: the restart resends the same runId), and the
        command leaves before the submitter hears of the record: the
        scheduler's own work for 200 jobs of one commit comes after their
        200 commands, not between them.
        """
        order: list[str] = []
        execute = self.library.executeBackup

        def executeBackup(runId: str, *args: Any) -> Any:
            stored = self.successResultOf(self.runner.jobs.get(runId))
            order.append(f"executeBackup {runId} (stored: {stored.state})")
            return execute(runId, *args)

        self.patch(self.library, "executeBackup", executeBackup)
        create, committed = self.runner.jobs.create, Deferred[None]()
        self.patch(self.runner.jobs, "create",
                   lambda *args: committed.addCallback(lambda _: create(*args)))
        recorded = self.runner.submit(self.request(scheduleId="s-1"))
        recorded.addCallback(lambda job: order.append(f"recorded {job.runId}"))
        self.assertEqual(order, [])
        committed.callback(None)
        self.drive(recorded)
        self.assertEqual(order, ["executeBackup r1 (stored: pending)", "recorded r1"])
        for _ in range(50):
            self.clock.advance(0)
        self.assertDelivered(self.successResultOf(self.runner.jobs.get("r1")))

    def test_changedDownloadIsFetchedAgain(self) -> None:
        self.store.dieAt = 5  # create, execute, follow, download; dies before verify
        self.assertRaises(Killed, self.drive, self.runner.start(self.request()))
        self.store.dieAt = None
        job = self.successResultOf(self.runner.jobs.get("r1"))
        self.assertEqual(job.state, "downloaded")
        path = FilePath(job.artifactPath)
        path.setContent(b"X" + path.getContent()[1:])
        self.store.dieAt = None
        runner = self.newClient()
        job = self.drive(runner.resume("r1"))
        self.assertEqual((job.state, job.failedStep, job.errorCode),
                         (FAILED, "verify", errors.VERIFICATION_FAILED))
        self.assertFalse(path.exists())
        job = self.drive(runner.start(self.request()))
        self.assertDelivered(job)

    def test_freshDownloadIsNotReadAgain(self) -> None:
        """
        The verify step right after the download step of the same drive does
        not read the file again: the download checked every byte as it wrote
        it. A job resumed at "downloaded" is read again (the test above).
        """
        hashed: list[str] = []
        self.patch(runnerModule, "fileSha256", lambda path: hashed.append(path.path))
        job = self.drive(self.runner.start(self.request()))
        self.assertDelivered(job)
        self.assertEqual(hashed, [])
        steps = self.successResultOf(self.runner.jobs.steps("r1"))
        self.assertEqual([detail for state, _, detail in steps if state == "verified"],
                         [f"sha256 {job.artifact.sha256}"])

    def test_replacedDownloadIsReadAgain(self) -> None:
        """A file replaced between the two steps (another inode) is read again, and refused."""
        verify = self.runner._verify

        async def replacing(job: Any, observer: Any) -> Any:
            path = FilePath(job.artifactPath)
            changed = FilePath(path.path + ".new")
            changed.setContent(b"X" + path.getContent()[1:])
            changed.moveTo(path)
            return await verify(job, observer)

        self.runner._verify = replacing  # type: ignore[method-assign]
        job = self.drive(self.runner.start(self.request()))
        self.assertEqual((job.state, job.failedStep, job.errorCode),
                         (FAILED, "verify", errors.VERIFICATION_FAILED))

    def test_twoProcessesCannotDriveOneJob(self) -> None:
        locks = JobLocks(self.data.child("locks"))
        release = locks.acquire("r1")  # the daemon drives it
        error = self.assertRaises(BackupRemoteError, self.drive,
                                  self.runner.start(self.request()))
        self.assertEqual(error.code, errors.CONFLICT)
        self.assertIn("another backupremote process", error.message)
        self.assertIn("Let that process finish the run", error.action)
        self.assertIsNone(self.successResultOf(self.runner.jobs.get("r1")))
        release()
        self.assertDelivered(self.drive(self.runner.start(self.request())))

    def test_oneProcessDrivesOneJobOnce(self) -> None:
        first = self.runner.start(self.request())
        second = self.runner.start(self.request())
        job = self.drive(first)
        self.assertDelivered(job)
        self.assertEqual(self.drive(second).state, "released")
        self.assertEqual(sum(self.sent), 21)

    # Crashes

    def test_killedAtAnyTransactionResumes(self) -> None:
        """
        The client dies at each transaction in turn (the step's work done,
        its record not committed): a new client process resumes the job to
        the same end, delivered once, downloaded once, one backup.
        """
        for dieAt in range(2, len(STATES) + 1):
            with self.subTest(dieAt=dieAt):
                self.setUp()
                runId = f"k{dieAt}"
                self.store.dieAt = dieAt
                self.assertRaises(Killed, self.drive, self.runner.start(self.request(runId)))
                self.connection.cut()  # the process and its connection are gone
                self.store.dieAt = None
                runner = self.newClient()
                [job] = self.drive(runner.resumeAll())
                self.assertDelivered(job, runId)
                self.runner = runner
                self.assertEqual(self.history(runId), list(STATES))
                self.assertEqual(self.serverRuns(), 1)
                self.assertEqual(sum(self.sent), 21)

    def test_killedDuringDownloadResumesThePart(self) -> None:
        received = [0]
        original = self.connection.transfers.chunk

        def chunk(transferId: str, index: int, chunks: list[bytes]) -> Any:
            received[0] += len(chunks)
            original(transferId, index, chunks)
            if received[0] >= 10:
                return Deferred()  # the box is never acknowledged: the process is dying
            return {}

        self.patch(self.connection.transfers, "chunk", chunk)
        first = self.runner.start(self.request(size=40 * CHUNK_SIZE))
        for _ in range(100):
            self.clock.advance(0)
            if received[0] >= 10:
                break
        first.cancel()  # the process dies
        self.connection.cut()
        self.failureResultOf(first)
        job = self.successResultOf(self.runner.jobs.get("r1"))
        self.assertEqual(job.state, "completed")
        part = [n for n in folderNames(self.work.child("r1")) if n.endswith(".part")]
        self.assertEqual(len(part), 1)
        observer = Recorder()
        runner = self.newClient()
        job = self.drive(runner.start(self.request(size=40 * CHUNK_SIZE), observer))
        self.assertDelivered(job)
        resumed = [p.resumedFrom for p in observer.progress]
        self.assertGreaterEqual(max(resumed), 8)
        self.assertLess(sum(self.sent), 40 * 2)


class JobStoreTests(SynchronousTestCase):
    """The job store over the store twin: compare-and-set steps, receipts, history."""

    def setUp(self) -> None:
        from twisted.internet.task import Clock
        self.clock = Clock()
        self.jobs = JobStore(MemoryClientStore(), now(self.clock))

    def test_advanceIsCompareAndSet(self) -> None:
        from backupremote.client.jobs import JobMoved
        job, created = self.successResultOf(self.jobs.create(
            JobRequest("r", "db"), "/work"))
        self.assertTrue(created)
        self.assertEqual((job.state, job.downloadFolder, job.keepDownload),
                         ("pending", "/work/r", False))
        moved = self.successResultOf(self.jobs.advance(job, "running"))
        self.assertEqual(moved.state, "running")
        failure = self.failureResultOf(self.jobs.advance(job, "running"), JobMoved)
        self.assertEqual(failure.value.code, errors.CONFLICT)
        again, created = self.successResultOf(self.jobs.create(JobRequest("r", "db"), "/w"))
        self.assertFalse(created)
        self.assertEqual(again.state, "running")

    def test_unfinished(self) -> None:
        for runId, goal in (("a", "released"), ("b", "running"), ("c", "completed")):
            job, _ = self.successResultOf(self.jobs.create(JobRequest(runId, "db", goal=goal),
                                                           "/w"))
            self.successResultOf(self.jobs.advance(job, "running"))
        self.assertEqual([j.runId for j in self.successResultOf(self.jobs.unfinished())],
                         ["a", "c"])

    def test_unfinishedReadsOnlyOpenJobs(self) -> None:
        """
        Jobs at their goal are not read at all (the scheduler and the pickup
        ask often, and a long history is mostly released jobs).
        """
        for runId, goal, state in (("a", "running", "running"), ("b", "released", "running"),
                                   ("c", "completed", "running")):
            job, _ = self.successResultOf(self.jobs.create(JobRequest(runId, "db", goal=goal),
                                                           "/w"))
            self.successResultOf(self.jobs.advance(job, state))
        read: list[str] = []

        def trace(db: sqlite3.Connection) -> None:
            db.set_trace_callback(read.append)

        self.successResultOf(self.jobs.store.transact(trace))
        self.assertEqual([j.runId for j in self.successResultOf(self.jobs.unfinished())],
                         ["b", "c"])
        receiptsRead = [s for s in read if "FROM receipts" in s]
        self.assertEqual(len(receiptsRead), 2)  # b and c; a (at its goal) is not read

    def test_openJobsFoundThroughTheStateIndex(self) -> None:
        """The look for open jobs searches the state index, not every job ever recorded."""
        from backupremote.client.jobs.store import _OPEN, _OPEN_STATES

        plan = self.successResultOf(self.jobs.store.transact(lambda db: db.execute(
            f"EXPLAIN QUERY PLAN SELECT runId FROM jobs WHERE {_OPEN}", _OPEN_STATES
        ).fetchall()))
        self.assertIn("USING INDEX jobs_state", " ".join(str(row[-1]) for row in plan))

    def test_failedStepRollsBackWhole(self) -> None:
        job, _ = self.successResultOf(self.jobs.create(JobRequest("r", "db"), "/w"))
        self.assertRaises(ValueError, self.jobs.advance, job, "nonsense")
        self.assertEqual(self.successResultOf(self.jobs.get("r")).state, "pending")
        self.failureResultOf(self.jobs.store.transact(
            lambda db: db.execute("SELECT nope FROM jobs")), sqlite3.Error)
