"""
A schedule fires on the real reactor against the real server: two slots of a
1-minute interval (about 61 s of wall time), each a verified artifact on the
server under the slot's own runId.

The scheduler starts runs through a L{JobStarter}; until the client daemon
owns the job runner of C{backupremote/client/jobs/}, this test's starter
commands each run and follows it to its end (the server verifies the
artifact fully: C{verification=full}), which is what the scheduler needs
of a runner: record, start, say whether a run of the schedule is active.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, succeed
from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase

from backupremote.client.api import BackupRemoteClient
from backupremote.client.schedules.model import Interval, Schedule
from backupremote.client.schedules.runids import slotRunId
from backupremote.client.schedules.scheduler import RunRequest, Scheduler
from backupremote.client.schedules.store import STARTED, ScheduleStore
from backupremote.client.store import STATE_FILE, SQLiteClientStore
from backupremote.protocol.databases import DatabaseConfigInput
from backupremote.protocol.options import BackupOptions
from backupremote.protocol.runs import RunStatus
from tests.databases import servers
from tests.integration.servers import startServer

UTC = timezone.utc


class CommandingStarter:
    """Commands each run on the server and follows it to its end."""

    def __init__(self, client: BackupRemoteClient) -> None:
        self.client = client
        self.finals: dict[str, Deferred[RunStatus]] = {}
        self.activeRuns: dict[str, str] = {}

    def start(self, request: RunRequest) -> Deferred[Any]:
        async def commandAndFollow() -> RunStatus:
            await self.client.executeBackup(request.runId, request.databaseConfigId,
                                            request.options, request.scheduleId)
            try:
                return await self.client.followRun(request.runId)
            finally:
                self.activeRuns.pop(request.scheduleId, None)

        self.activeRuns[request.scheduleId] = request.runId
        self.finals[request.runId] = Deferred.fromCoroutine(commandAndFollow())
        return succeed(None)

    def active(self, scheduleId: str) -> Deferred[bool]:
        return succeed(scheduleId in self.activeRuns)


class ScheduleFiresTests(TestCase):
    timeout = 240

    async def test_firesTwiceOnTheRealReactor(self) -> None:
        db = await servers.startSQLite(self)
        server = await startServer(self, sqliteRoots=(FilePath(db.folder),))
        client = server.client(self)
        config = await client.createDatabaseConfig(DatabaseConfigInput(
            name="notes", engine="sqlite", path=db.path))

        folder = FilePath(self.mktemp())
        folder.makedirs()
        store = SQLiteClientStore(folder.child(STATE_FILE), reactor)
        self.addCleanup(store.close)
        schedules = ScheduleStore(store)
        now = datetime.now(UTC)
        # every minute, the first slot 2 s from now
        schedule = await schedules.add(Schedule(
            id=str(uuid.uuid4()), name="every-minute",
            rule=Interval(1, now + timedelta(seconds=2)), zone="Europe/Berlin",
            database=config.id, options=BackupOptions(compression="zstd",
                                                      verification="full")), now)
        starter = CommandingStarter(client)
        scheduler = Scheduler(schedules, starter, reactor)
        scheduler.startService()
        self.addCleanup(scheduler.stopService)

        while len(starter.finals) < 2:
            await _sleep(0.5)
        await scheduler.stopService()
        finals = [await final for final in list(starter.finals.values())[:2]]

        slots = [schedule.rule.anchor, schedule.rule.anchor + timedelta(minutes=1)]
        self.assertEqual(list(starter.finals)[:2],
                         [slotRunId(schedule.id, slot) for slot in slots])
        for final in finals:
            self.assertEqual(final.state, "completed", final)
            self.assertEqual(final.scheduleId, schedule.id)
            self.assertIsNotNone(final.artifact)
            self.assertTrue(final.artifact.staged)
            self.assertIn("verification", {t.stage for t in final.stageTimings})
        self.assertNotEqual(finals[0].artifact.fileId, finals[1].artifact.fileId)
        records = await schedules.fires(schedule.id)
        self.assertEqual([(r.fireTime, r.outcome) for r in reversed(records)][:2],
                         [(slot, STARTED) for slot in slots])
        state = (await schedules.states())[schedule.id]
        self.assertEqual(state.nextFire, slots[1] + timedelta(minutes=1))
        # each started on time: within a second of its slot
        for final, slot in zip(finals, slots):
            self.assertLess(abs((final.createdAt - slot).total_seconds()), 1.0)


def _sleep(seconds: float) -> Deferred[None]:
    from twisted.internet.task import deferLater
    return deferLater(reactor, seconds, lambda: None)
