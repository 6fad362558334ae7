"""
How the client daemon joins its parts (on a Clock, with the twins): the
delivery queue starts with the daemon (an upload an earlier process left
is started again, with no job to drive it), each connection gets a
ServerWatch that tells the daemon's one notify callable, and that callable
tells both the notifier and the metrics.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from backupremote.client.api import BackupRemoteClient
from backupremote.client.connection import Credentials
from backupremote.client.connection.watch import ServerWatch
from backupremote.client.delivery import DELIVERED, UPLOADING
from backupremote.client.notify import Notifier
from backupremote.client.notify.events import DestinationCircuitOpened
from backupremote.client.service import ClientDaemon, tellBoth
from backupremote.metrics.client import ClientMetrics
from backupremote.protocol.errors import CONNECTION_FAILED
from backupremote.testing import LoopbackConnection
from tests.client.delivery.helpers import QueueHarness
from tests.fixtures import CLIENT_ID, SECRET


class DaemonWiringTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = QueueHarness(FilePath(self.mktemp()))
        self.connection = LoopbackConnection(
            self.h.clock, Credentials(CLIENT_ID, SECRET, "licence"), lambda: None,  # type: ignore
            keepaliveInterval=1e6, keepaliveTimeout=1e6, callTimeout=1e6)
        self.connection.service = Service()  # type: ignore[attr-defined]
        self.connection.refusals = 10
        self.told: list[Any] = []

    def daemon(self, **parts: Any) -> ClientDaemon:
        notifier = Notifier(self.h.clock)
        daemon = ClientDaemon(BackupRemoteClient(self.connection), notifier=notifier, **parts)
        self.addCleanup(lambda: daemon.running and self.successResultOf(daemon.stopService()))
        return daemon

    def test_theQueueStartsWithTheDaemon(self) -> None:
        nas = self.h.destination("nas")
        self.h.destinations["nas"].held.add("put")
        self.successResultOf(self.h.queue.start())
        job, path = self.h.artifact("r1")
        self.successResultOf(self.h.queue.enqueue(job, path, [nas]))
        [item] = self.successResultOf(self.h.queue.deliveries.forRun("r1"))
        self.assertEqual(item.state, UPLOADING)
        # the process ends mid-upload; a new one's daemon starts its own queue
        self.h.queue.stop()
        self.h.destinations["nas"].held.clear()
        queue = self.h.newQueue()
        daemon = self.daemon(queue=queue)
        self.assertEqual(self.successResultOf(queue.deliveries.forRun("r1"))[0].state,
                         UPLOADING, "nothing moves before the daemon starts")
        daemon.startService()
        self.h.clock.advance(0)
        [item] = self.successResultOf(queue.deliveries.forRun("r1"))
        self.assertEqual((item.state, item.attempts), (DELIVERED, 2))
        self.successResultOf(daemon.stopService())
        self.assertEqual(queue.active, [])

    def test_eachConnectionTellsTheDaemonsNotify(self) -> None:
        metrics = ClientMetrics(self.h.clock)
        daemon = self.daemon(notify=tellBoth(self.told.append, metrics.event))
        watch = self.connection.watch
        self.assertIsInstance(watch, ServerWatch)
        assert watch is not None
        self.assertEqual(watch.server, "default")
        daemon.startService()
        for _ in range(5):
            self.h.clock.advance(0)
        self.assertEqual([(type(e).__name__, e.errorCode) for e in self.told],
                         [("ServerUnreachable", CONNECTION_FAILED)])
        self.assertIsNotNone(watch.downSince)
        # the one callable tells the metrics too
        daemon.notify(DestinationCircuitOpened("nas", CONNECTION_FAILED, "refused"))
        self.assertEqual(metrics.registry.get_sample_value(
            "backupremote_destination_circuit_open", {"destination": "nas"}), 1)
