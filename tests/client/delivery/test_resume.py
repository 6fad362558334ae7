"""
The queue takes an unfinished upload up again (on a Clock, with the twins:
a destination that sends in parts and the store twin): after a restart
and after a failed attempt only the parts not yet confirmed are sent; an
upload gone or a local file changed starts over; an item that fails for
good drops its upload and its record.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from backupremote.client.delivery import DELIVERED, FAILED, RETRYING, UPLOADING
from backupremote.protocol.errors import (
    DESTINATION_IDENTITY_MISMATCH,
    DESTINATION_UNREACHABLE,
    VERIFICATION_FAILED,
    BackupRemoteError,
)
from tests.client.delivery.helpers import QueueHarness

#: 5 parts of 64 KiB (the last one shorter)
SIZE = 300_000
PART = 64 * 1024


class QueueResumeTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = QueueHarness(FilePath(self.mktemp()))
        self.successResultOf(self.h.queue.start())
        self.nas = self.h.destination("nas", "s3")
        self.twin = self.h.destinations["nas"]
        self.twin.partSize = PART
        self.job, self.path = self.h.artifact("run1", SIZE)
        self.name = "2026-11-03/shop-run1.sql.zst"

    def item(self) -> Any:
        [item] = self.successResultOf(self.h.queue.deliveries.forRun("run1"))
        return item

    def recordedParts(self) -> list[int]:
        state = self.successResultOf(self.h.queue.deliveries.uploadState(self.item().id))
        return [] if state is None else [part.number for part in state.parts]

    def partRows(self) -> int:
        return self.successResultOf(self.h.store.transact(
            lambda db: db.execute("SELECT count(*) FROM delivery_parts").fetchone()[0]))

    def startThenCrash(self) -> None:
        """Deliver until part 3 is about to go, then end the process."""
        self.twin.holdPart(3)
        self.successResultOf(self.h.queue.enqueue(self.job, self.path, [self.nas]))
        self.assertEqual(self.item().state, UPLOADING)
        self.assertEqual(self.twin.calls["part"], 2)
        self.successResultOf(self.h.queue.stop())
        self.assertEqual(self.item().state, UPLOADING)
        self.assertEqual(self.recordedParts(), [1, 2])
        self.assertEqual(len(self.twin.uploads), 1, "the upload is kept to be resumed")

    def restart(self) -> Any:
        queue = self.h.newQueue()
        self.successResultOf(queue.start())
        [item] = self.successResultOf(queue.whenSettled("run1"))
        return item

    def assertDelivered(self, item: Any) -> None:
        self.assertEqual(item.state, DELIVERED, item.reason)
        self.assertEqual(self.twin.files, {self.name: self.path.getContent()})
        self.assertEqual(self.twin.uploads, {})
        self.assertIsNone(item.resume)
        self.assertEqual(self.partRows(), 0)

    def test_resumedAfterRestart(self) -> None:
        """A new process sends only parts 3 to 5, and the copy is verified."""
        self.startThenCrash()
        item = self.restart()
        self.assertDelivered(item)
        self.assertEqual(self.twin.calls["part"], 2 + 3)
        self.assertEqual(item.receipt().sha256, self.job.artifact.sha256)

    def test_resumedAfterFailedAttempt(self) -> None:
        """A part that failed: the next attempt (after the backoff) sends the rest only."""
        held = self.twin.holdPart(3)
        self.successResultOf(self.h.queue.enqueue(self.job, self.path, [self.nas]))
        held.errback(BackupRemoteError(DESTINATION_UNREACHABLE, "connection lost"))
        item = self.item()
        self.assertEqual((item.state, item.errorCode), (RETRYING, DESTINATION_UNREACHABLE))
        self.assertIsNotNone(item.resume)
        self.assertEqual(self.recordedParts(), [1, 2])
        self.h.clock.advance(3600)
        self.assertDelivered(self.item())
        self.assertEqual(self.twin.calls["part"], 2 + 3)

    def test_uploadGoneStartsOver(self) -> None:
        """The destination no longer has the upload (expired): every part is sent anew."""
        self.startThenCrash()
        self.twin.uploads.clear()
        item = self.restart()
        self.assertDelivered(item)
        self.assertEqual(self.twin.calls["part"], 2 + 5)

    def test_localFileChangedStartsOverAndFails(self) -> None:
        """
        The artifact changed after the crash: the upload starts over with
        the file as it is, which is not the artifact: the item fails and
        nothing is left at the destination.
        """
        self.startThenCrash()
        self.path.setContent(os.urandom(SIZE))
        stat = os.stat(self.path.path)
        os.utime(self.path.path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
        item = self.restart()
        self.assertEqual((item.state, item.errorCode), (FAILED, VERIFICATION_FAILED))
        self.assertEqual(self.twin.calls["part"], 2 + 5)
        self.assertEqual((self.twin.files, self.twin.uploads), ({}, {}))
        self.assertIsNone(item.resume)
        self.assertEqual(self.partRows(), 0)

    def test_failedForGoodDropsTheUpload(self) -> None:
        """An item that fails for good removes its unfinished upload and its record."""
        held = self.twin.holdPart(3)
        self.successResultOf(self.h.queue.enqueue(self.job, self.path, [self.nas]))
        held.errback(BackupRemoteError(DESTINATION_IDENTITY_MISMATCH, "another host key"))
        item = self.item()
        self.assertEqual((item.state, item.errorCode), (FAILED, DESTINATION_IDENTITY_MISMATCH))
        self.assertEqual((self.twin.files, self.twin.uploads), ({}, {}))
        self.assertIsNone(item.resume)
        self.assertEqual(self.partRows(), 0)

    def test_notResumableRestarts(self) -> None:
        """A destination that records nothing (no parts) simply sends it all again."""
        self.twin.partSize = None
        self.twin.held.add("put")
        self.successResultOf(self.h.queue.enqueue(self.job, self.path, [self.nas]))
        self.successResultOf(self.h.queue.stop())
        self.assertIsNone(self.item().resume)
        self.twin.held.clear()
        item = self.restart()
        self.assertEqual(item.state, DELIVERED)
        self.assertEqual(self.twin.calls["put"], 2)
        self.assertEqual(self.twin.files[self.name], self.path.getContent())
