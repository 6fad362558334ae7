"""
The client daemon (``twistd backupremote-client``) killed with SIGKILL in the
middle of a schedule's delivery to a named local-folder destination, then
started again: the upload is started over, the slot's artifact arrives
exactly once under its final name, verified (its SHA-256 is the server
manifest's), nothing partial is left under a final name, the slot is not
commanded twice, and the server's staging is released.

The kill is not timed: the slot's date folder is made beforehand and
watched with inotify, and the daemon is killed at the first write into its
temporary file, when the queue item is ``uploading`` in the client store.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

from twisted.internet import inotify, reactor
from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase

from backupremote.client.delivery.model import DELIVERED, UPLOADING
from backupremote.client.destinations.names import isTemporary
from backupremote.client.destinations.registry import DestinationRegistry
from backupremote.client.destinations.stored import StoredDestination
from backupremote.client.jobs import STATES
from backupremote.client.schedules.model import Interval, Schedule
from backupremote.client.schedules.runids import slotRunId
from backupremote.client.schedules.store import STARTED, ScheduleStore
from backupremote.client.store import SQLiteClientStore
from tests.integration import test_jobs, test_killed_daemon
from tests.integration.test_jobs import SIZE

UTC = timezone.utc


class KilledDuringDeliveryTests(TestCase):
    timeout = 300
    # the producing server and the waits of test_jobs, the daemon of test_killed_daemon
    setUpServer = test_jobs.KilledClientTests.setUpServer
    waitFor = test_jobs.KilledClientTests.waitFor
    daemon = test_killed_daemon.KilledDaemonTests.daemon
    slotJob = test_killed_daemon.KilledDaemonTests.slotJob

    def deliveries(self) -> list[dict[str, Any]]:
        """The slot's queue items as the client's store has them (read as another process)."""
        db = sqlite3.connect(self.folder.descendant(["client", "client.sqlite3"]).path)
        try:
            db.row_factory = sqlite3.Row
            return [dict(row) for row in db.execute(
                "SELECT * FROM deliveries WHERE runId = ?", (self.runId,))]
        finally:
            db.close()

    async def test_killedDuringDelivery(self) -> None:
        await self.setUpServer()
        usb = self.folder.child("usb")
        usb.makedirs()
        usb.chmod(0o700)
        store = SQLiteClientStore.inFolder(self.config.parent(), reactor)
        now = datetime.now(UTC)
        anchor = now + timedelta(seconds=20)
        registry = DestinationRegistry.inFolder(reactor, store, self.config.parent())
        await registry.store.add(
            StoredDestination(str(uuid.uuid4()), "usb", "local", f"file://{usb.path}"), None, now)
        schedule = await ScheduleStore(store).add(Schedule(
            id=str(uuid.uuid4()), name="hourly", rule=Interval(60, anchor), zone="UTC",
            database=self.running.configId, destinations=("usb",)), now)
        await store.close()
        self.runId = slotRunId(schedule.id, schedule.rule.anchor)
        self.running.producer.sizes[self.runId] = SIZE

        # the slot's date folder (deliveries go in YYYY-MM-DD/ of the fire time)
        dated = usb.child(anchor.strftime("%Y-%m-%d"))
        dated.makedirs()
        dated.chmod(0o700)
        written: list[str] = []

        def kill(ignored: object, path: FilePath, mask: int) -> None:
            if not written:
                os.kill(first.pid, signal.SIGKILL)
                written.append(path.asTextMode().basename())

        notifier = inotify.INotify()
        notifier.startReading()
        self.addCleanup(notifier.loseConnection)
        notifier.watch(dated, mask=inotify.IN_MODIFY, callbacks=[kill])

        first = self.daemon()
        await self.waitFor(lambda: first.poll() is not None, "the daemon to be killed", 120)
        self.assertEqual(first.returncode, -signal.SIGKILL)
        # killed in the upload: the item uploading, its temporary file written to
        self.assertTrue(isTemporary(written[0]), written)
        [item] = self.deliveries()
        self.assertEqual((item["state"], item["attempts"], item["destination"]),
                         (UPLOADING, 1, "usb"))
        self.assertEqual(self.slotJob()["state"], "verified")  # the deliver step not recorded
        self.assertEqual([p.basename() for p in dated.children()], written)
        # the manifest of the staged artifact, from the server (not yet released)
        client = self.running.server.client(self)
        [entry] = (await client.listFiles(self.runId)).files
        await client.close()

        self.daemon()
        await self.waitFor(lambda: self.slotJob().get("state") == "released",
                           "the restarted daemon to finish the job", 120)
        job = self.slotJob()
        self.assertEqual(job["history"], list(STATES))
        self.assertEqual(job["fires"], [(STARTED, self.runId)])  # fired once, not again
        [item] = self.deliveries()
        self.assertEqual((item["state"], item["attempts"], item["sha256"], item["size"]),
                         (DELIVERED, 2, entry.sha256, entry.sizeBytes))
        # exactly one copy under a final name, the whole artifact; the killed
        # attempt's temporary file is all else (dest prune removes it once stale)
        finals = [p for p in usb.walk() if p.isfile() and not isTemporary(p.basename())]
        self.assertEqual([p.path for p in finals], [dated.child(entry.name).path])
        self.assertEqual(item["name"], f"{dated.basename()}/{entry.name}")
        data = finals[0].getContent()
        self.assertEqual((len(data), hashlib.sha256(data).hexdigest()),
                         (entry.sizeBytes, entry.sha256))
        self.assertEqual(data, self.running.producer.data[self.runId])
        leftovers = sorted(p.basename() for p in dated.children() if p not in finals)
        self.assertEqual(leftovers, written)
        # one backup on the server for the slot, its staging released
        self.assertEqual(list(self.running.producer.data), [self.runId])
        self.assertFalse(self.running.server.staging.runFolder(self.runId).exists())
        log = [json.loads(line.strip(b"\x1e")) for line in self.folder.descendant(
            ["client", "logs", "client.jsonl"]).getContent().splitlines()]
        restarted = [e for e in log if e.get("log_namespace") == "backupremote.client.delivery"
                     and "upload restarted" in e.get("log_format", "")]
        self.assertEqual([e["id"] for e in restarted], [item["id"]])
