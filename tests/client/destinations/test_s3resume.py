"""
An S3 multipart upload resumed after a crash, against real servers
(C{rclone serve s3}, which checks signatures, and moto), through the
delivery queue and its journal in a real SQLite client store: a queue is
stopped midway (the process ending), a new queue over the same store with a
fresh destination object takes the upload up, sending only the parts the
server had not confirmed, and the read-back verifies the whole.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, succeed
from twisted.logger import globalLogPublisher
from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase

from backupremote.client.delivery import DeliveryPolicy, DeliveryQueue, DeliveryStore, FeatureSet
from backupremote.client.delivery.model import DELIVERED, FAILED, UPLOADING
from backupremote.client.destinations.interface import UploadState
from backupremote.client.destinations.registry import DestinationRegistry
from backupremote.client.destinations.s3 import MiB, S3Destination
from backupremote.client.destinations.stored import StoredDestination
from backupremote.client.jobs.model import NamedDestination
from backupremote.client.jobs.runner import now
from backupremote.client.store import SQLiteClientStore
from backupremote.protocol.errors import VERIFICATION_FAILED
from backupremote.protocol.features import ALL_FEATURES
from tests.client.delivery.helpers import START, QueueHarness
from tests.client.destinations.httpservers import S3Server, shared
from tests.client.destinations.test_s3 import destinationOn

DESTINATION = NamedDestination("s3-id", "bucket", "s3")


class PartCounter:
    """
    Counts the parts a destination sends (wrapping its bucket's
    C{uploadPart}); with C{hangAt}, the part after that many never gets an
    answer (and C{reached} fires): the process is about to end.
    """

    def __init__(self, destination: S3Destination, hangAt: int | None = None,
                 reached: Deferred[None] | None = None) -> None:
        self.sent: list[int] = []
        self.reached: Deferred[None] = reached if reached is not None else Deferred()
        bucket = destination._bucket
        original = bucket.uploadPart

        async def uploadPart(*args: Any, **kwargs: Any) -> str:
            if hangAt is not None and len(self.sent) >= hangAt:
                if not self.reached.called:
                    reactor.callLater(0, self.reached.callback, None)
                await Deferred()  # cancelled when the queue stops
            etag = await original(*args, **kwargs)
            self.sent.append(args[2])
            return etag

        bucket.uploadPart = uploadPart  # type: ignore[method-assign]


def makeResumeTests(kind: str, partSize: int, size: int, hangAt: int) -> type[TestCase]:
    """The resume tests on one kind of server: C{size} bytes in parts of C{partSize}."""
    count = -(-size // partSize)
    assert hangAt + 1 < count

    class ResumeTests(TestCase):
        timeout = 120

        async def setUp(self) -> None:
            self.server: S3Server = shared(kind)
            self.bucket = self.server.newBucket()
            self.client = self.server.client()
            self.store = SQLiteClientStore(FilePath(self.mktemp()), reactor)
            self.addCleanup(self.store.close)
            await self.store.opened()
            self.deliveries = DeliveryStore(self.store, now(reactor))
            harness = QueueHarness(FilePath(self.mktemp()))
            self.job, self.source = harness.artifact("run-1", size)
            self.counters: list[PartCounter] = []
            self.events: list[dict[str, Any]] = []
            globalLogPublisher.addObserver(self.events.append)
            self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

        def queue(self, hangAt: int | None = None) -> DeliveryQueue:
            """The queue of a new process, opening fresh destination objects."""

            self.reached: Deferred[None] = Deferred()

            def open(destinationId: str) -> Deferred[Any]:
                destination = destinationOn(
                    self, self.server, self.bucket, "db", partSize=partSize, partsInFlight=1,
                    recorded=lambda: self.deliveries.recordedUploads(destinationId))
                self.counters.append(PartCounter(destination, hangAt, self.reached))
                return succeed(destination)

            queue = DeliveryQueue(reactor, self.deliveries, open,
                                  lambda server: FeatureSet(set(ALL_FEATURES)),
                                  DeliveryPolicy(maxAttempts=2, first=0.01, maximum=0.02))
            self.addCleanup(queue.stop)
            return queue

        async def crash(self) -> str:
            """Deliver until C{hangAt} parts are confirmed, then end the process; the upload id."""
            queue = self.queue(hangAt)
            await queue.start()
            await queue.enqueue(self.job, self.source, [DESTINATION])
            await self.reached
            await queue.stop()
            [item] = await self.deliveries.forRun("run-1")
            self.assertEqual(item.state, UPLOADING)
            state = await self.deliveries.uploadState(item.id)
            assert state is not None
            self.assertEqual([p.number for p in state.parts], list(range(1, hangAt + 1)))
            self.assertEqual(self.counters[0].sent, list(range(1, hangAt + 1)))
            self.assertIn(state.uploadId, self.uploadIds())
            return state.uploadId

        async def restart(self) -> Any:
            queue = self.queue()
            await queue.start()
            [item] = await queue.whenSettled("run-1")
            await queue.stop()
            return item

        def uploadIds(self) -> set[str]:
            return {u["UploadId"] for u in
                    self.client.list_multipart_uploads(Bucket=self.bucket).get("Uploads", [])}

        def keys(self) -> set[str]:
            listed = self.client.list_objects_v2(Bucket=self.bucket).get("Contents", [])
            return {item["Key"] for item in listed}

        def logged(self, text: str) -> bool:
            return any(text in str(event.get("why", "")) for event in self.events)

        async def test_resumedAfterRestart(self) -> None:
            """The parts confirmed before the crash are not sent again; the copy verifies."""
            await self.crash()
            item = await self.restart()
            self.assertEqual(item.state, DELIVERED, item.reason)
            self.assertEqual(self.counters[1].sent, list(range(hangAt + 1, count + 1)))
            self.assertEqual(item.receipt().sha256, self.job.artifact.sha256)
            body = self.client.get_object(Bucket=self.bucket, Key="db/" + item.name)["Body"]
            self.assertEqual(hashlib.sha256(body.read()).hexdigest(), self.job.artifact.sha256)
            self.assertEqual(self.keys(), {"db/" + item.name})
            self.assertEqual(self.uploadIds(), set())
            self.assertIsNone(await self.deliveries.uploadState(item.id))
            self.assertTrue(any("resuming the upload" in str(e.get("log_format", ""))
                                for e in self.events))

        async def test_uploadGone(self) -> None:
            """An upload aborted (or expired) meanwhile: a clean start over, said in the log."""
            uploadId = await self.crash()
            [item] = await self.deliveries.forRun("run-1")
            assert item.resume is not None
            self.client.abort_multipart_upload(
                Bucket=self.bucket, Key="db/" + item.resume.temporaryName, UploadId=uploadId)
            item = await self.restart()
            self.assertEqual(item.state, DELIVERED, item.reason)
            self.assertEqual(self.counters[1].sent, list(range(1, count + 1)))
            self.assertTrue(self.logged("no longer has the upload"))
            self.assertEqual(self.keys(), {"db/" + item.name})
            self.assertEqual(self.uploadIds(), set())

        async def test_localFileChanged(self) -> None:
            """
            The local file changed after the crash: the upload is started
            over (the old one aborted), the file no longer being the
            artifact fails the delivery, and nothing is left on the server.
            """
            await self.crash()
            self.source.setContent(os.urandom(size))
            stat = os.stat(self.source.path)
            os.utime(self.source.path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
            item = await self.restart()
            self.assertEqual((item.state, item.errorCode), (FAILED, VERIFICATION_FAILED))
            self.assertTrue(self.logged("the local file changed"))
            self.assertEqual(self.keys(), set())
            self.assertEqual(self.uploadIds(), set())
            self.assertIsNone(item.resume)

        async def test_staleAbortSparesRecorded(self) -> None:
            """
            The abort of stale uploads never aborts one the store means to
            resume, and still aborts our abandoned ones.
            """
            uploadId = await self.crash()
            abandoned = self.client.create_multipart_upload(
                Bucket=self.bucket, Key="db/.x.zst.0123456789abcdef.partial")["UploadId"]
            sweeper = destinationOn(
                self, self.server, self.bucket, "db", staleAfter=0.0,
                recorded=lambda: self.deliveries.recordedUploads(DESTINATION.id))
            self.assertEqual(await sweeper.abortStaleUploads(), 1)
            self.assertEqual(self.uploadIds(), {uploadId})
            self.assertNotIn(abandoned, self.uploadIds())
            item = await self.restart()
            self.assertEqual(item.state, DELIVERED, item.reason)
            self.assertEqual(self.counters[1].sent, list(range(hangAt + 1, count + 1)))

    return ResumeTests


class RcloneS3ResumeTests(makeResumeTests("rclone-s3", 1 * MiB, 5 * MiB + 4093, 3)):  # type: ignore[misc]
    """rclone serve s3 (signatures checked): 6 parts of 1 MiB, a crash after 3."""


class MotoResumeTests(makeResumeTests("moto", 5 * MiB, 11 * MiB + 17, 1)):  # type: ignore[misc]
    """moto with S3's smallest parts (5 MiB): 3 parts, a crash after 1."""


class RegistryRecordedTests(TestCase):
    """The registry's S3 destinations know which uploads the store means to resume."""

    timeout = 120

    async def test_registryKeepsRecorded(self) -> None:
        server = shared("rclone-s3")
        bucket = server.newBucket()
        client = server.client()
        data = FilePath(self.mktemp())
        store = SQLiteClientStore.inFolder(data, reactor)
        self.addCleanup(store.close)
        registry = DestinationRegistry.inFolder(reactor, store, data)
        stored = StoredDestination("s3-id", "bucket", "s3", server.url(bucket, "db"))
        await registry.store.add(stored, registry.seal("s3-id", server.secretKey),
                                 START)
        key = "db/.a.zst.0123456789abcdef.partial"
        ours = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
        other = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
        deliveries = DeliveryStore(store, now(reactor))
        job, source = QueueHarness(FilePath(self.mktemp())).artifact("run-1")
        queue = DeliveryQueue(reactor, deliveries, lambda id: Deferred(),
                              lambda server: FeatureSet(set(ALL_FEATURES)))
        [item] = await queue.enqueue(job, source, [DESTINATION])
        item = await deliveries.move(item, UPLOADING)
        await deliveries.beginUpload(item.id, UploadState(
            "a.zst", ".a.zst.0123456789abcdef.partial", ours, 1, 1, MiB))
        made = await registry.openByName("bucket")
        assert isinstance(made, S3Destination)
        self.addCleanup(made.close)
        made.staleAfter = 0.0
        self.assertEqual(await made.abortStaleUploads(), 1)
        left = {u["UploadId"] for u in client.list_multipart_uploads(Bucket=bucket)["Uploads"]}
        self.assertEqual(left, {ours})
        self.assertNotIn(other, left)
        client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=ours)
