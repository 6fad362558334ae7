"""
The delivery queue on a Clock with the twins: retries with backoff, the
breaker, the caps, a restart mid-upload and mid-verification, a licence
withdrawn, a corrupt read-back.
"""

from __future__ import annotations

from datetime import timedelta

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from backupremote.client.delivery import (
    DELIVERED,
    FAILED,
    PENDING,
    RETRYING,
    UPLOADING,
    VERIFYING,
    DeliveryPolicy,
)
from backupremote.client.destinations import KnownDigest
from backupremote.client.destinations.names import isTemporary
from backupremote.protocol.errors import (
    CONFLICT,
    DESTINATION_AUTH_FAILED,
    DESTINATION_IDENTITY_MISMATCH,
    DESTINATION_UNREACHABLE,
    DESTINATION_VERIFY_FAILED,
    LICENSE_FEATURE_MISSING,
    VERIFICATION_FAILED,
    BackupRemoteError,
)
from tests.client.delivery.helpers import START, QueueHarness


def unreachable() -> BackupRemoteError:
    return BackupRemoteError(DESTINATION_UNREACHABLE, "connection refused")


class DeliveryQueueTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = QueueHarness(FilePath(self.mktemp()))
        self.successResultOf(self.h.queue.start())

    def items(self, runId: str = "run1") -> dict[str, object]:
        return {item.destination: item for item in
                self.successResultOf(self.h.queue.deliveries.forRun(runId))}

    def enqueue(self, runId: str, *destinations):
        job, path = self.h.artifact(runId)
        self.successResultOf(self.h.queue.enqueue(job, path, destinations))
        return job

    def test_deliversToEachDestination(self) -> None:
        nas, cloud = self.h.destination("nas"), self.h.destination("cloud", "sftp")
        job = self.enqueue("run1", nas, cloud)
        settled = self.successResultOf(self.h.queue.whenSettled("run1"))
        self.assertEqual({i.destination: i.state for i in settled},
                         {"nas": DELIVERED, "cloud": DELIVERED})
        name = "2026-11-03/shop-run1.sql.zst"
        for twin in self.h.destinations.values():
            self.assertEqual(list(twin.files), [name])
        receipts = sorted((i.receipt() for i in settled), key=lambda r: r.destination)
        self.assertEqual([(r.destination, r.name, r.size, r.sha256, r.method) for r in receipts],
                         [(d, name, job.artifact.sizeBytes, job.artifact.sha256,
                           "streamed-sha256") for d in ("cloud", "nas")])
        # the same run queued again is the same items
        self.enqueue("run1", nas)
        self.assertEqual(self.h.destinations["nas"].calls["put"], 1)

    def test_retriesWithBackoffAndFullJitter(self) -> None:
        nas = self.h.destination("nas")
        twin = self.h.destinations["nas"]
        twin.failNext("put", unreachable())
        twin.failNext("put", unreachable())
        self.enqueue("run1", nas)
        item = self.items()["nas"]
        self.assertEqual((item.state, item.attempts, item.errorCode),
                         (RETRYING, 1, DESTINATION_UNREACHABLE))
        self.assertIn("connection refused", item.reason)
        # full jitter with random() = 0.5: half of first * 2 ** (n - 1)
        self.assertEqual(item.nextAttemptAt, START + timedelta(seconds=5))
        self.h.clock.advance(4.9)
        self.assertEqual(twin.calls["put"], 1)
        self.h.clock.advance(0.1)
        item = self.items()["nas"]
        self.assertEqual((item.state, item.attempts), (RETRYING, 2))
        self.assertEqual(item.nextAttemptAt, START + timedelta(seconds=5 + 10))
        self.h.clock.advance(10)
        item = self.items()["nas"]
        self.assertEqual((item.state, item.attempts, item.reason), (DELIVERED, 3, None))

    def test_givesUpAfterMaxAttempts(self) -> None:
        nas = self.h.destination("nas")
        for _ in range(4):
            self.h.destinations["nas"].failNext("put", BackupRemoteError(
                DESTINATION_AUTH_FAILED, "bad password"))
        self.enqueue("run1", nas)
        self.h.clock.pump([1000] * 5)
        item = self.items()["nas"]
        self.assertEqual((item.state, item.attempts, item.errorCode),
                         (FAILED, 4, DESTINATION_AUTH_FAILED))
        self.assertIn("gave up after 4 attempts", item.reason)
        self.assertEqual([i.state for i in self.successResultOf(
            self.h.queue.whenSettled("run1"))], [FAILED])
        # queue retry: due now, attempts counted anew
        self.successResultOf(self.h.queue.retry(item.id[:8]))
        self.h.clock.advance(300)  # past the breaker's delay, if it is still open
        self.assertEqual(self.items()["nas"].state, DELIVERED)

    def test_permanentRefusalFailsAtOnce(self) -> None:
        nas = self.h.destination("nas", "sftp")
        self.h.destinations["nas"].failNext("put", BackupRemoteError(
            DESTINATION_IDENTITY_MISMATCH, "host key changed"))
        self.enqueue("run1", nas)
        item = self.items()["nas"]
        self.assertEqual((item.state, item.attempts, item.errorCode),
                         (FAILED, 1, DESTINATION_IDENTITY_MISMATCH))

    def test_breakerOpensThenProbes(self) -> None:
        nas = self.h.destination("nas")
        twin = self.h.destinations["nas"]
        for _ in range(3):
            twin.failNext("put", unreachable())
        for run in ("r1", "r2", "r3"):
            self.enqueue(run, nas)
        # r1 and r2 (two at a time to one destination) fail, then r1 again: open
        self.h.clock.advance(10)
        self.assertEqual(twin.calls["put"], 3)
        states = {run: self.items(run)["nas"] for run in ("r1", "r2", "r3")}
        self.assertTrue(any("circuit breaker open" in (i.reason or "")
                            for i in states.values()), states)
        self.assertEqual(self.h.queue.breakers.state("nas-id", self.h.clock.seconds()), "open")
        # nothing goes to it while it is open, although retries are due
        self.h.clock.advance(200)
        self.assertEqual(twin.calls["put"], 3)
        # half-open after the delay: one probe, which succeeds and closes it
        self.h.clock.advance(300)
        self.assertEqual({run: self.items(run)["nas"].state for run in ("r1", "r2", "r3")},
                         {"r1": DELIVERED, "r2": DELIVERED, "r3": DELIVERED})
        self.assertEqual(self.h.queue.breakers.state("nas-id", self.h.clock.seconds()),
                         "closed")

    def test_breakerIsPerDestination(self) -> None:
        nas, other = self.h.destination("nas"), self.h.destination("other")
        for _ in range(3):
            self.h.destinations["nas"].failNext("put", unreachable())
        for run in ("r1", "r2", "r3"):
            self.enqueue(run, nas)
        self.h.clock.advance(10)
        self.enqueue("r4", other)
        self.assertEqual(self.items("r4")["other"].state, DELIVERED)

    def test_caps(self) -> None:
        self.h.queue.policy = DeliveryPolicy(parallel=3, parallelPerDestination=2)
        a, b = self.h.destination("a"), self.h.destination("b")
        for twin in self.h.destinations.values():
            twin.held.add("put")
        for run in ("r1", "r2", "r3"):
            self.enqueue(run, a)
        for run in ("r4", "r5"):
            self.enqueue(run, b)
        self.assertEqual(len(self.h.queue.active), 3)
        self.assertEqual((len(self.h.destinations["a"].waiting),
                          len(self.h.destinations["b"].waiting)), (2, 1))
        self.assertEqual(self.items("r3")["a"].state, PENDING)
        self.h.destinations["a"].held.clear()
        self.h.destinations["a"].release("put")
        # a's two done: r3 (a) and r5 (b) start; b's held ones still wait
        self.assertEqual(self.items("r3")["a"].state, DELIVERED)
        self.assertEqual(len(self.h.destinations["b"].waiting), 2)
        self.h.destinations["b"].held.clear()
        self.h.destinations["b"].release("put")
        self.assertEqual([self.items(r)["b"].state for r in ("r4", "r5")], [DELIVERED] * 2)

    def test_restartMidUpload(self) -> None:
        nas = self.h.destination("nas")
        twin = self.h.destinations["nas"]
        twin.held.add("put")
        self.enqueue("run1", nas)
        self.assertEqual(self.items()["nas"].state, UPLOADING)
        # the process ends (kill -9): its queue is gone, the store is as committed
        self.h.queue = self.h.newQueue()
        twin.held.clear()
        twin.waiting.clear()
        self.successResultOf(self.h.queue.start())
        item = self.items()["nas"]
        self.assertEqual((item.state, item.attempts), (DELIVERED, 2))
        # the killed upload's temporary file stays until `dest prune` (its name was not recorded)
        self.assertEqual([n for n in twin.files if not isTemporary(n)], [item.name])

    def test_restartMidVerification(self) -> None:
        nas = self.h.destination("nas")
        twin = self.h.destinations["nas"]
        twin.held.add("readBack")
        self.enqueue("run1", nas)
        item = self.items()["nas"]
        self.assertEqual(item.state, VERIFYING)
        self.assertTrue(isTemporary(item.upload.temporaryName))
        self.h.queue = self.h.newQueue()
        twin.held.clear()
        twin.waiting.clear()
        self.successResultOf(self.h.queue.start())
        # resumed at the read-back: one upload only
        item = self.items()["nas"]
        self.assertEqual((item.state, twin.calls["put"]), (DELIVERED, 1))
        self.assertEqual(list(twin.files), [item.name])

    def test_restartAfterCompleteBeforeRecorded(self) -> None:
        """Completed at the destination, but the process died before recording it."""
        nas = self.h.destination("nas")
        twin = self.h.destinations["nas"]
        twin.held.add("readBack")
        self.enqueue("run1", nas)
        item = self.items()["nas"]
        twin.held.clear()
        twin.waiting.clear()
        self.successResultOf(twin.complete(item.upload))
        self.h.queue = self.h.newQueue()
        self.successResultOf(self.h.queue.start())
        item = self.items()["nas"]
        self.assertEqual((item.state, twin.calls["put"]), (DELIVERED, 1))

    def test_licenseWithdrawnFailsClosed(self) -> None:
        nas = self.h.destination("nas", "sftp")
        self.h.license.features.discard("destination.sftp")
        self.enqueue("run1", nas)
        item = self.items()["nas"]
        self.assertEqual((item.state, item.errorCode), (FAILED, LICENSE_FEATURE_MISSING))
        self.assertIn("destination.sftp", item.reason)
        self.assertNotIn("put", self.h.destinations["nas"].calls)
        # it is no fault of the destination's: the breaker stays closed
        self.assertEqual(self.h.queue.breakers.state("nas-id", self.h.clock.seconds()),
                         "closed")

    def test_licenseWithdrawnBetweenAttempts(self) -> None:
        nas = self.h.destination("nas", "s3")
        self.h.destinations["nas"].failNext("put", unreachable())
        self.enqueue("run1", nas)
        self.assertEqual(self.items()["nas"].state, RETRYING)
        self.h.license.features.discard("destination.s3")
        self.h.clock.advance(100)
        item = self.items()["nas"]
        self.assertEqual((item.state, item.errorCode), (FAILED, LICENSE_FEATURE_MISSING))
        self.assertEqual(self.h.destinations["nas"].calls["put"], 1)

    def test_corruptReadBackRetries(self) -> None:
        nas = self.h.destination("nas")
        twin = self.h.destinations["nas"]
        twin.corruptNextPut = True
        self.enqueue("run1", nas)
        item = self.items()["nas"]
        self.assertEqual((item.state, item.errorCode), (RETRYING, DESTINATION_VERIFY_FAILED))
        self.assertEqual(twin.files, {}, "the corrupt copy is removed, never completed")
        self.h.clock.advance(10)
        item = self.items()["nas"]
        self.assertEqual(item.state, DELIVERED)
        self.assertEqual(list(twin.files), [item.name])

    def test_putIsHandedTheArtifactsDigest(self) -> None:
        """
        The put is handed the artifact's size and SHA-256 (the manifest's,
        checked at the download), so the destination does not hash the
        local file again.
        """
        nas = self.h.destination("nas")
        job = self.enqueue("run1", nas)
        self.assertEqual(self.h.destinations["nas"].known,
                         [KnownDigest(job.artifact.sizeBytes, job.artifact.sha256)])
        self.assertEqual(self.items()["nas"].state, DELIVERED)

    def test_localFileChangedSameSizeFailsAtReadBack(self) -> None:
        """
        A local file changed after its download but of the same size: the
        put (trusting the known SHA-256) sends it, the read-back differs,
        and the local file, hashed then, is what changed: the item fails
        for good (not retried, the destination's breaker untouched) and
        nothing is left at the destination.
        """
        nas = self.h.destination("nas")
        twin = self.h.destinations["nas"]
        job, path = self.h.artifact("run1")
        path.setContent(b"\0" * job.artifact.sizeBytes)
        self.successResultOf(self.h.queue.enqueue(job, path, [nas]))
        item = self.items()["nas"]
        self.assertEqual((item.state, item.errorCode), (FAILED, VERIFICATION_FAILED))
        self.assertIn("changed after its download", item.reason)
        self.assertEqual((twin.files, twin.calls["put"], twin.calls["readBack"]), ({}, 1, 1))
        self.assertFalse(self.h.queue.breakers.isOpen(nas.id))

    def test_destinationRemovedFails(self) -> None:
        nas = self.h.destination("nas")
        del self.h.destinations["nas"]
        self.enqueue("run1", nas)
        self.assertEqual(self.items()["nas"].state, FAILED)

    def test_retryRefusedWhileDelivered(self) -> None:
        self.enqueue("run1", self.h.destination("nas"))
        item = self.items()["nas"]
        error = self.failureResultOf(self.h.queue.retry(item.id), BackupRemoteError).value
        self.assertEqual(error.code, CONFLICT)

    def test_localFileChangedFails(self) -> None:
        nas = self.h.destination("nas")
        twin = self.h.destinations["nas"]
        twin.held.add("put")
        job, path = self.h.artifact("run1")
        self.successResultOf(self.h.queue.enqueue(job, path, [nas]))
        path.setContent(b"something else")
        twin.held.clear()
        # the put read the file before it changed: the next attempt reads it anew
        twin.release("put")
        self.assertEqual(self.items()["nas"].state, DELIVERED)
        job2, path2 = self.h.artifact("run2")
        path2.setContent(b"changed after its download")
        self.successResultOf(self.h.queue.enqueue(job2, path2, [nas]))
        item = self.items("run2")["nas"]
        self.assertEqual((item.state, item.errorCode), (FAILED, "VERIFICATION_FAILED"))
        self.assertEqual([n for n in twin.files if isTemporary(n)], [])



