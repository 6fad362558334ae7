"""
The delivery queue through real destinations: a local folder and OpenSSH's
sshd on 127.0.0.1, opened by the registry from stored destinations (the
SFTP password sealed in the store), on the real reactor.
"""

from __future__ import annotations

import hashlib
import os
from datetime import datetime, timezone

from twisted.internet import reactor
from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase

from backupremote.client.delivery import (
    DELIVERED,
    FAILED,
    DeliveryPolicy,
    DeliveryQueue,
    DeliveryStore,
    FeatureSet,
)
from backupremote.client.destinations.registry import DestinationRegistry
from backupremote.client.destinations.stored import StoredDestination
from backupremote.client.jobs.model import Job
from backupremote.client.jobs.runner import now
from backupremote.client.store import SQLiteClientStore
from backupremote.protocol.errors import DESTINATION_AUTH_FAILED
from backupremote.protocol.features import ALL_FEATURES
from backupremote.protocol.transfers import FileEntry
from tests.client.destinations.servers import shared, startSSH
from tests.databases.servers import HOST

WHEN = datetime(2026, 11, 3, 2, 0, tzinfo=timezone.utc)


class RealDestinationTests(TestCase):
    timeout = 120

    async def setUp(self) -> None:
        self.data = FilePath(self.mktemp())
        self.store = SQLiteClientStore.inFolder(self.data, reactor)
        self.addCleanup(self.store.close)
        await self.store.opened()
        self.registry = DestinationRegistry.inFolder(reactor, self.store, self.data)
        self.queue = DeliveryQueue(
            reactor, DeliveryStore(self.store, now(reactor)), self.registry.openByName,
            lambda server: FeatureSet(set(ALL_FEATURES)),
            DeliveryPolicy(maxAttempts=2, first=0.01, maximum=0.02))
        self.addCleanup(self.queue.stop)
        await self.queue.start()
        self.artifact = self.data.child("shop-run1.sql.zst")
        content = os.urandom(300_000)
        self.artifact.setContent(content)
        self.job = Job(
            runId="run1", server="default", databaseConfigId="db", options=None,
            scheduleId=None, fireTime=WHEN, goal="released", state="verified",
            downloadFolder=self.data.path, keepDownload=False, destinations=(),
            createdAt=WHEN, updatedAt=WHEN, artifactPath=self.artifact.path,
            artifact=FileEntry("f", self.artifact.basename(), len(content),
                               hashlib.sha256(content).hexdigest(), 65536, 5))

    async def add(self, destination: StoredDestination, secret: str | None = None):
        sealed = self.registry.seal(destination.id, secret) if secret else None
        return (await self.registry.store.add(destination, sealed, WHEN)).reference()

    async def test_localAndSFTP(self) -> None:
        folder = FilePath(self.mktemp())
        folder.makedirs()
        server = await shared(self, startSSH)
        root = server.newFolder()
        local = await self.add(StoredDestination("l", "usb", "local", f"file://{folder.path}"))
        sftp = await self.add(StoredDestination(
            "s", "nas", "sftp", f"sftp://{server.user}@{HOST}:{server.port}{root.path}",
            hostKeys=(server.extra["hostKeyFingerprint"],)), server.password)
        bad = await self.add(StoredDestination(
            "b", "wrong", "sftp", f"sftp://{server.user}@{HOST}:{server.port}{root.path}",
            hostKeys=(server.extra["hostKeyFingerprint"],)), "not the password")
        await self.queue.enqueue(self.job, self.artifact, [local, sftp, bad])
        items = {i.destination: i for i in await self.queue.whenSettled("run1")}
        self.assertEqual(items["usb"].state, DELIVERED)
        self.assertEqual(items["nas"].state, DELIVERED)
        self.assertEqual((items["wrong"].state, items["wrong"].errorCode, items["wrong"].attempts),
                         (FAILED, DESTINATION_AUTH_FAILED, 2))
        name = "2026-11-03/shop-run1.sql.zst"
        for copy in (folder.preauthChild(name), root.preauthChild(name)):
            self.assertEqual(copy.getContent(), self.artifact.getContent())
        self.assertEqual(items["nas"].receipt().sha256, self.job.artifact.sha256)
        # nothing but the final files, and the secret is not in the store's text
        self.assertEqual(sorted(os.listdir(root.child("2026-11-03").path)),
                         ["shop-run1.sql.zst"])
        raw = self.data.child("client.sqlite3").getContent()
        self.assertNotIn(server.password.encode(), raw)
