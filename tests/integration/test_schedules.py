"""
A schedule fires through the real client daemon (its service, in this
process, on the real reactor) against the real server, with a real SQLite
database and a real PostgreSQL one: two slots each, each a job of the slot's
own runId that is commanded, downloaded, verified, delivered to a local
folder (read back) and released, the server's staging removed.

The SQLite case fires two slots of a 1-minute interval from their timers
(about 61 s of wall time). The PostgreSQL case takes the path of a daemon
that was down at a slot: the scheduler's persisted state says the slot 40 s
ago is still to be handled, so the daemon starts it at once as a catch-up,
and fires the next slot (20 s later) from its timer.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase

from backupremote.client.clientinit import createClientFolder
from backupremote.client.config import loadClientConfig
from backupremote.client.jobs import STATES, Job, JobStore, LocalFolder
from backupremote.client.schedules.model import Interval, Schedule
from backupremote.client.schedules.runids import slotRunId
from backupremote.client.schedules.store import STARTED, ScheduleState, ScheduleStore
from backupremote.client.service import makeService
from backupremote.client.store import SQLiteClientStore
from backupremote.protocol.databases import DatabaseConfigInput
from backupremote.protocol.options import BackupOptions
from tests.databases import servers
from tests.integration.servers import CLIENT_ID, RunningServer, startServer

UTC = timezone.utc
#: Seconds a test waits for both slots' jobs to be released.
DEADLINE = 150.0


async def clientFolder(testCase: TestCase, server: RunningServer) -> FilePath:
    """A client folder (client.toml, secret, licence) for C{server}."""
    folder = FilePath(testCase.mktemp())
    folder.makedirs()
    return createClientFolder(
        folder.child("client"), f"127.0.0.1:{server.port}", CLIENT_ID,
        server.secret.encode("ascii"), server.token, fingerprints=[server.fingerprint])


def sleep(seconds: float) -> Deferred[None]:
    return deferLater(reactor, seconds, lambda: None)


class DaemonScheduleTests(TestCase):
    timeout = 300

    async def firesTwice(self, server: RunningServer, database: DatabaseConfigInput,
                         anchor: datetime, missedSlot: bool = False) -> None:
        """
        A 1-minute interval schedule of C{database} anchored at C{anchor},
        stored as the CLI stores it, then the daemon started: the slots
        C{anchor} and C{anchor} + 1 min run to C{released}, verified and
        delivered. With C{missedSlot}, the scheduler's state says the daemon
        was down at C{anchor} (a catch-up run when it starts).
        """
        created = await server.client(self).createDatabaseConfig(database)
        config = loadClientConfig(await clientFolder(self, server))
        assert config.dataDir is not None
        nas = config.dataDir.sibling("nas")
        nas.makedirs()

        store = SQLiteClientStore.inFolder(config.dataDir, reactor)
        start = datetime.now(UTC)
        schedules = ScheduleStore(store)
        schedule = await schedules.add(Schedule(
            id=str(uuid.uuid4()), name="every-minute", rule=Interval(1, anchor),
            zone="Europe/Berlin", database=created.id, destinations=("nas",),
            options=BackupOptions(compression="zstd", verification="full")), start)
        if missedSlot:
            self.assertTrue(await schedules.save(
                ScheduleState(schedule.id, schedule.revision, nextFire=anchor), [], start))
        await store.close()

        async def localFolders(names: Any) -> tuple[LocalFolder, ...]:
            return tuple(LocalFolder(config.dataDir.sibling(name).path) for name in names)

        service = makeService(config, reactor, destinations=localFolders)
        service.startService()
        self.addCleanup(service.stopService)
        jobs: JobStore = service.getServiceNamed("client").jobs.jobs
        slots = [anchor, anchor + timedelta(minutes=1)]
        runIds = [slotRunId(schedule.id, slot) for slot in slots]
        done = await self.released(jobs, runIds)
        steps = {job.runId: [state for state, _, _ in await jobs.steps(job.runId)]
                 for job in done}
        await service.stopService()

        delivered = sorted(nas.children(), key=lambda f: f.basename())
        self.assertEqual(len(delivered), 2, [f.basename() for f in delivered])
        for job, slot in zip(done, slots):
            self.assertEqual(job.scheduleId, schedule.id)
            self.assertEqual(job.fireTime, slot)
            self.assertEqual(steps[job.runId], list(STATES))
            (receipt,) = job.receipts
            copy = nas.child(receipt.name)
            self.assertEqual(hashlib.sha256(copy.getContent()).hexdigest(), receipt.sha256)
            self.assertEqual(receipt.sha256, job.artifact.sha256)
            self.assertEqual(job.status.scheduleId, schedule.id)
            self.assertIn("verification", {t.stage for t in job.status.stageTimings})
            # never before its slot
            self.assertGreaterEqual(job.status.createdAt, slot)
            self.assertFalse(server.staging.runFolder(job.runId).exists())
            # the work copy is gone once delivered
            self.assertFalse(config.dataDir.descendant(["downloads", job.runId]).exists())

        store = SQLiteClientStore.inFolder(config.dataDir, reactor)
        self.addCleanup(store.close)
        records = list(reversed(await ScheduleStore(store).fires(schedule.id)))[:2]
        self.assertEqual([(r.fireTime, r.outcome) for r in records],
                         [(slot, STARTED) for slot in slots])
        # started by its timer (no detail), or recorded as the catch-up it was
        first, second = records
        if missedSlot:
            self.assertIn("catch-up", first.detail or "")
        else:
            self.assertIsNone(first.detail)
        self.assertIsNone(second.detail)

    async def released(self, jobs: JobStore, runIds: list[str]) -> list[Job]:
        """The jobs of C{runIds}, once they are all C{released} (polled in the store)."""
        deadline = reactor.seconds() + DEADLINE
        while reactor.seconds() < deadline:
            found = [await jobs.get(runId) for runId in runIds]
            if all(job is not None and job.state == "released" for job in found):
                return found
            await sleep(0.2)
        self.fail(f"not released within {DEADLINE} s: {[await jobs.get(r) for r in runIds]}")

    async def test_sqliteFiresTwice(self) -> None:
        db = await servers.startSQLite(self)
        server = await startServer(self, sqliteRoots=(FilePath(db.folder),))
        await self.firesTwice(server, DatabaseConfigInput(
            name="notes", engine="sqlite", path=db.path),
            datetime.now(UTC) + timedelta(seconds=3))

    async def test_postgresqlFiresTwice(self) -> None:
        db = await servers.startPostgreSQL(self)
        server = await startServer(self)
        anchor = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=40)
        await self.firesTwice(server, DatabaseConfigInput(
            name="shop", engine="postgresql", host=db.host, port=db.port,
            database=db.database, user=db.user, password=db.password), anchor,
            missedSlot=True)
