"""
A schedule fires through the real client daemon (its service, in this
process, on the real reactor) against the real server: two slots of a
1-minute interval (about 61 s of wall time), each a job of the slot's own
runId that is commanded, downloaded, verified, delivered to a local folder
(read back) and released, the server's staging removed.
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
from backupremote.client.jobs import STATES, JobStore, LocalFolder
from backupremote.client.schedules.model import Interval, Schedule
from backupremote.client.schedules.runids import slotRunId
from backupremote.client.schedules.store import STARTED, ScheduleStore
from backupremote.client.service import makeService
from backupremote.client.store import SQLiteClientStore
from backupremote.protocol.databases import DatabaseConfigInput
from backupremote.protocol.options import BackupOptions
from tests.databases import servers
from tests.integration.servers import CLIENT_ID, RunningServer, startServer

UTC = timezone.utc


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

    async def test_firesTwiceThroughTheDaemon(self) -> None:
        db = await servers.startSQLite(self)
        server = await startServer(self, sqliteRoots=(FilePath(db.folder),))
        client = server.client(self)
        database = await client.createDatabaseConfig(DatabaseConfigInput(
            name="notes", engine="sqlite", path=db.path))
        config = loadClientConfig(await clientFolder(self, server))
        assert config.dataDir is not None
        nas = config.dataDir.sibling("nas")
        nas.makedirs()

        # the schedule is stored as the CLI stores it, before the daemon starts
        store = SQLiteClientStore.inFolder(config.dataDir, reactor)
        start = datetime.now(UTC)
        schedule = await ScheduleStore(store).add(Schedule(
            id=str(uuid.uuid4()), name="every-minute",
            rule=Interval(1, start + timedelta(seconds=3)), zone="Europe/Berlin",
            database=database.id, destinations=("nas",),
            options=BackupOptions(compression="zstd", verification="full")), start)
        await store.close()

        async def localFolders(names: Any) -> tuple[LocalFolder, ...]:
            return tuple(LocalFolder(config.dataDir.sibling(name).path) for name in names)

        service = makeService(config, reactor, destinations=localFolders)
        service.startService()
        self.addCleanup(service.stopService)
        daemon = service.getServiceNamed("client")
        jobs: JobStore = daemon.jobs.jobs
        slots = [schedule.rule.anchor, schedule.rule.anchor + timedelta(minutes=1)]
        runIds = [slotRunId(schedule.id, slot) for slot in slots]

        async def released() -> list[Any]:
            found = [await jobs.get(runId) for runId in runIds]
            return found if all(j is not None and j.state == "released" for j in found) \
                else []

        for _ in range(int(150 / 0.5)):
            if done := await released():
                break
            await sleep(0.5)
        else:
            self.fail(f"not released: {[await jobs.get(r) for r in runIds]}")
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
            # started on time: the server recorded it within a second of its slot
            self.assertLess(abs((job.status.createdAt - slot).total_seconds()), 1.0)
            self.assertFalse(server.staging.runFolder(job.runId).exists())
            # the work copy is gone once delivered
            self.assertFalse(config.dataDir.descendant(["downloads", job.runId]).exists())

        store = SQLiteClientStore.inFolder(config.dataDir, reactor)
        self.addCleanup(store.close)
        schedules = ScheduleStore(store)
        records = await schedules.fires(schedule.id)
        self.assertEqual([(r.fireTime, r.outcome) for r in reversed(records)][:2],
                         [(slot, STARTED) for slot in slots])
