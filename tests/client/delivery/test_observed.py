"""
What the delivery queue tells others, on a Clock with the twins: its
breakers to the notifier (opened once, closed once), each attempt's end
and each breaker to the metrics, and its depths by state for the scrapes.
"""

from __future__ import annotations

from typing import Any

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from backupremote.client.delivery import DeliveryQueue, DeliveryStore
from backupremote.client.jobs.runner import now
from backupremote.client.notify.events import DestinationCircuitClosed, DestinationCircuitOpened
from backupremote.metrics.client import ClientMetrics
from backupremote.protocol.errors import DESTINATION_UNREACHABLE, BackupRemoteError
from tests.client.delivery.helpers import QueueHarness


def unreachable() -> BackupRemoteError:
    return BackupRemoteError(DESTINATION_UNREACHABLE, "connection refused")


class ObservedQueueTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = QueueHarness(FilePath(self.mktemp()))
        self.events: list[Any] = []
        self.metrics = ClientMetrics(self.h.clock)
        self.queue = DeliveryQueue(
            self.h.clock, DeliveryStore(self.h.store, now(self.h.clock)), self.h.open,
            lambda server: self.h.license, self.h.policy, random=lambda: 0.5,
            metrics=self.metrics, notify=self.events.append)
        self.successResultOf(self.queue.start())

    def enqueue(self, runId: str, *destinations: Any) -> None:
        job, path = self.h.artifact(runId)
        self.successResultOf(self.queue.enqueue(job, path, destinations))

    def sample(self, name: str, **labels: str) -> float | None:
        return self.metrics.registry.get_sample_value(name, labels)

    def test_breakerOpenedAndClosedAreToldOnce(self) -> None:
        nas = self.h.destination("nas")
        twin = self.h.destinations["nas"]
        for _ in range(4):
            twin.failNext("put", unreachable())
        for run in ("r1", "r2", "r3"):
            self.enqueue(run, nas)
        self.h.clock.advance(10)
        self.assertEqual(self.events, [DestinationCircuitOpened(
            "nas", DESTINATION_UNREACHABLE, "connection refused")])
        self.assertEqual(self.sample("backupremote_destination_circuit_open",
                                     destination="nas"), 1)
        # the half-open probe fails: still the same open circuit, not told again
        self.h.clock.advance(300)
        self.assertEqual(len(self.events), 1, self.events)
        # the next probe succeeds: closed, told once
        self.h.clock.advance(300)
        self.assertEqual(self.events[1:], [DestinationCircuitClosed("nas")])
        self.assertEqual(self.sample("backupremote_destination_circuit_open",
                                     destination="nas"), 0)
        self.assertEqual(self.sample("backupremote_deliveries_total", destination="nas",
                                     outcome="delivered"), 3)
        self.assertEqual(self.sample("backupremote_deliveries_total", destination="nas",
                                     outcome="retrying"), 4)
        self.assertEqual(self.sample("backupremote_delivery_duration_seconds_count",
                                     destination="nas"), 7)

    def test_failedAttemptsAreCountedAndDepthsSampled(self) -> None:
        nas, cloud = self.h.destination("nas"), self.h.destination("cloud", "sftp")
        self.h.license.features.discard("destination.sftp")
        self.h.destinations["nas"].held.add("put")
        self.metrics.sampleQueue(self.queue.depths)
        self.enqueue("r1", nas, cloud)
        self.assertEqual(self.queue.depths(), {"uploading": 1, "failed": 1})
        self.assertEqual(self.sample("backupremote_delivery_queue_items", state="uploading"), 1)
        self.assertEqual(self.sample("backupremote_delivery_queue_items", state="failed"), 1)
        self.assertEqual(self.sample("backupremote_delivery_queue_items", state="pending"), 0)
        self.assertEqual(self.sample("backupremote_deliveries_total", destination="cloud",
                                     outcome="failed"), 1)
        self.h.destinations["nas"].release("put")
        self.assertEqual(self.queue.depths(), {"failed": 1})
        self.assertEqual(self.sample("backupremote_deliveries_total", destination="nas",
                                     outcome="delivered"), 1)
        # a licence refusal opens no breaker: nothing told
        self.assertEqual(self.events, [])
