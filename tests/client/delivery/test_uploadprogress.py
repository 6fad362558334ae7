"""
How the uploads of a run are shown: the queue tells a run's watchers
(L{DeliveryQueue.watch}, through L{QueueDelivery.deliver}'s C{progress}) a
bounded number of L{UploadProgress} updates, and the CLI's L{JobView} draws
them as bars per destination, or JSON lines with C{--json}.
"""

from __future__ import annotations

import io
import json

from attrs import evolve
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from backupremote.cli.jobs import JobView
from backupremote.cli.output import Output
from backupremote.cli.progress import UploadView
from backupremote.client.delivery.jobdelivery import QueueDelivery
from backupremote.client.jobs.delivery import LocalFolderDelivery
from backupremote.client.jobs.model import UploadProgress
from tests.client.delivery.helpers import QueueHarness

MiB = 1 << 20


def update(sent: int, destination: str = "nas", size: int = 10 * MiB,
           attempt: int = 1) -> UploadProgress:
    return UploadProgress("run1", "id-" + destination, destination, "2026-11-03/f.zst", sent,
                          size, attempt)


class QueueWatchTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = QueueHarness(FilePath(self.mktemp()))
        self.successResultOf(self.h.queue.start())

    def test_deliverTellsProgress(self) -> None:
        """Start, every 1 MiB (or 1/200), the end: per destination; nothing after the step."""
        seen: list[UploadProgress] = []
        delivery = QueueDelivery(self.h.queue, LocalFolderDelivery(self.h.clock))
        job, path = self.h.artifact("run1", size=5 * MiB + 123)
        job = evolve(job, destinations=(self.h.destination("nas"),
                                        self.h.destination("cloud", "sftp")))
        receipts = self.successResultOf(delivery.deliver(job, path, seen.append))
        self.assertEqual(len(receipts), 2)
        for name in ("nas", "cloud"):
            sent = [p.bytesSent for p in seen if p.destination == name]
            self.assertEqual(sent[0], 0)
            self.assertEqual(sent[-1], 5 * MiB + 123)
            self.assertEqual(sent, sorted(sent))
            self.assertTrue(all(b - a >= MiB for a, b in zip(sent[1:-2], sent[2:-1])), sent)
            self.assertLessEqual(len(sent), 8)
            self.assertEqual({(p.sizeBytes, p.attempt, p.runId) for p in seen
                              if p.destination == name}, {(5 * MiB + 123, 1, "run1")})
        self.assertEqual(self.h.queue._watchers, {})

    def test_noWatcherNoWork(self) -> None:
        """Without a watcher nothing is built, but the bytes sent are still kept."""
        job, path = self.h.artifact("run2")
        self.successResultOf(self.h.queue.enqueue(job, path, [self.h.destination("nas")]))
        self.assertEqual([i.state for i in self.successResultOf(
            self.h.queue.whenSettled("run2"))], ["delivered"])


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class UploadViewTests(SynchronousTestCase):
    def test_terminal(self) -> None:
        """One redrawn line with each upload in flight; a finished one stays, as sent."""
        out, clock = io.StringIO(), FakeClock()
        view = UploadView(out, interactive=True, clock=clock)
        view(update(0))
        view(update(0, "s3"))
        clock.now += 2
        view(update(4 * MiB))
        screen = out.getvalue().split("\r\x1b[K")[-1]
        self.assertIn("upload nas", screen)
        self.assertIn("upload s3", screen)
        self.assertIn(" 40%", screen)
        self.assertIn("2.1 MB/s", screen)
        self.assertIn("ETA 0:00:03", screen)
        view(update(10 * MiB))
        lines = out.getvalue().split("\r\x1b[K")[-1].split("\n")
        self.assertEqual(lines[0], "upload nas           sent  10.5 MB  as "
                         "2026-11-03/f.zst; verifying")
        self.assertNotIn("upload nas", lines[1])
        self.assertIn("upload s3", lines[1])

    def test_plain(self) -> None:
        """Not a terminal: a line at the start and end, at most one every 5 s between."""
        out, clock = io.StringIO(), FakeClock()
        view = UploadView(out, interactive=False, clock=clock)
        view(update(0))
        for step in range(1, 10):
            clock.now += 1
            view(update(step * MiB))
        view(update(10 * MiB))
        lines = out.getvalue().splitlines()
        self.assertNotIn("\r", out.getvalue())
        self.assertEqual(len(lines), 3, lines)  # the start, 5 s later, sent (9 s)
        self.assertIn("  0%", lines[0])
        self.assertIn("sent  10.5 MB", lines[-1])
        # a new attempt is a new start
        view(update(0, attempt=2))
        self.assertIn("attempt 2", out.getvalue().splitlines()[-1])


class JobViewTests(SynchronousTestCase):
    def test_humanAndJSON(self) -> None:
        out = io.StringIO()
        JobView(Output(False, out, io.StringIO())).uploadProgress(update(MiB))
        self.assertIn("upload nas", out.getvalue())
        quiet = io.StringIO()
        JobView(Output(False, quiet, io.StringIO(), quiet=True)).uploadProgress(update(MiB))
        self.assertEqual(quiet.getvalue(), "")
        lines = io.StringIO()
        output = Output(True, lines, io.StringIO())
        output.jsonLines = True
        JobView(output).uploadProgress(update(MiB))
        self.assertEqual(json.loads(lines.getvalue()), {
            "type": "uploadProgress", "runId": "run1", "deliveryId": "id-nas",
            "destination": "nas", "name": "2026-11-03/f.zst", "bytesSent": MiB,
            "sizeBytes": 10 * MiB, "attempt": 1})
        plain = io.StringIO()
        JobView(Output(True, plain, io.StringIO())).uploadProgress(update(MiB))
        self.assertEqual(plain.getvalue(), "")  # --json without lines: only the result
