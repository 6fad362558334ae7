"""
The client daemon (``twistd backupremote-client``) killed with SIGKILL while
it downloads the artifact of a schedule's slot, then started again: the
slot's run is not commanded twice, its download resumes from the ``.part``,
the artifact arrives once and verified, and the server's staging is
released. (test_killed_delivery kills it during a delivery to a named
destination.)
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

from twisted.internet import reactor
from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase

from backupremote.client.jobs import STATES
from backupremote.client.schedules.model import Interval, Schedule
from backupremote.client.schedules.runids import slotRunId
from backupremote.client.schedules.store import STARTED, ScheduleStore
from backupremote.client.store import SQLiteClientStore
from backupremote.protocol.transfers import CHUNK_SIZE, CHUNKS_PER_BOX, WINDOW_BOXES
from tests.integration.test_daemons import program
from tests.integration import test_jobs
from tests.integration.test_jobs import SIZE

UTC = timezone.utc


class KilledDaemonTests(TestCase):
    timeout = 300
    # the producing server, slowed down, and the waits of test_jobs
    setUpServer = test_jobs.KilledClientTests.setUpServer
    waitFor = test_jobs.KilledClientTests.waitFor

    def daemon(self) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [program("twistd"), "-n", "--pidfile=", "backupremote-client", "--config",
             self.config.path], cwd=self.folder.path, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True)

        async def stop() -> None:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                await self.waitFor(lambda: process.poll() is not None, "the daemon to stop")
            assert process.stdout is not None
            process.stdout.close()

        self.addCleanup(stop)
        return process

    def slotJob(self) -> dict[str, Any]:
        db = sqlite3.connect(self.folder.descendant(["client", "client.sqlite3"]).path)
        try:
            db.row_factory = sqlite3.Row
            row = db.execute("SELECT * FROM jobs WHERE runId = ?", (self.runId,)).fetchone()
            job = dict(row) if row else {}
            job["history"] = [r[0] for r in db.execute(
                "SELECT state FROM job_steps WHERE runId = ? ORDER BY seq", (self.runId,))]
            job["fires"] = [tuple(r) for r in db.execute(
                "SELECT outcome, runId FROM schedule_fires")]
            return job
        finally:
            db.close()

    def downloadPart(self) -> FilePath | None:
        folder = self.folder.descendant(["client", "downloads", self.runId])
        if not folder.exists():
            return None
        parts = [c for c in folder.children() if c.basename().endswith(".part")]
        return parts[0] if parts else None

    async def test_killedDuringDownload(self) -> None:
        await self.setUpServer()
        store = SQLiteClientStore.inFolder(self.config.parent(), reactor)
        now = datetime.now(UTC)
        # hourly, the first slot 20 s from now (the daemon is up by then: a
        # schedule's slots before the daemon first sees it are not caught up)
        schedule = await ScheduleStore(store).add(Schedule(
            id=str(uuid.uuid4()), name="hourly", rule=Interval(60, now + timedelta(seconds=20)),
            zone="UTC", database=self.running.configId), now)
        await store.close()
        self.runId = slotRunId(schedule.id, schedule.rule.anchor)
        self.running.producer.sizes[self.runId] = SIZE

        first = self.daemon()
        part = await self.waitFor(
            lambda: (p := self.downloadPart()) is not None and p.getsize() >= SIZE // 3 and p,
            "a third of the download", 90)
        os.kill(first.pid, signal.SIGKILL)
        await self.waitFor(lambda: first.poll() is not None, "the daemon to die")
        job = self.slotJob()
        self.assertEqual(job["state"], "completed")  # the download step was not recorded
        self.assertLess(part.getsize(), SIZE)
        sentBefore = self.sent[0]

        self.daemon()
        await self.waitFor(lambda: self.slotJob().get("state") == "released",
                           "the restarted daemon to finish the job", 120)
        job = self.slotJob()
        self.assertEqual(job["history"], list(STATES))
        self.assertEqual(job["fires"], [(STARTED, self.runId)])  # fired once, not again
        data = self.running.producer.data[self.runId]
        folder = self.folder.descendant(["client", "downloads", self.runId])
        files = folder.children()
        self.assertEqual(len(files), 1, [f.basename() for f in files])  # no .part left
        self.assertEqual(files[0].getContent(), data)
        self.assertFalse(self.running.server.staging.runFolder(self.runId).exists())
        # one backup on the server for the slot, and the download resumed
        self.assertEqual(list(self.running.producer.data), [self.runId])
        chunks = -(-len(data) // CHUNK_SIZE)
        self.assertLess(self.sent[0], chunks + 2 * WINDOW_BOXES * CHUNKS_PER_BOX)
        self.assertGreater(sentBefore, 0)

