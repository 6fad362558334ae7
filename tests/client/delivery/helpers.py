"""What the delivery tests share: a queue over the twins, on a Clock."""

from __future__ import annotations

import hashlib
import os
from datetime import datetime, timezone
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.filepath import FilePath

from backupremote.client.delivery import (
    DeliveryPolicy,
    DeliveryQueue,
    DeliveryStore,
    FeatureSet,
)
from backupremote.client.jobs.model import Job, NamedDestination
from backupremote.client.jobs.runner import now
from backupremote.protocol.features import ALL_FEATURES
from backupremote.protocol.transfers import FileEntry
from backupremote.testing import MemoryClientStore, MemoryDestination
from tests.fixtures import synchronously

START = datetime(2026, 11, 3, 2, 0, tzinfo=timezone.utc)


class HeldDestination(MemoryDestination):
    """The twin, whose operations named in C{held} wait until C{release(operation)}."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.held: set[str] = set()
        self.waiting: list[tuple[str, Deferred[Any], Deferred[Any]]] = []
        self.corruptNextPut = False

    def _held(self, operation: str, result: Deferred[Any]) -> Deferred[Any]:
        if operation not in self.held:
            return result
        outer: Deferred[Any] = Deferred()
        self.waiting.append((operation, result, outer))
        return outer

    def release(self, operation: str) -> None:
        for entry in [w for w in self.waiting if w[0] == operation]:
            self.waiting.remove(entry)
            entry[1].chainDeferred(entry[2])

    def put(self, source: FilePath, name: str, progress: Any = None,
            journal: Any = None, known: Any = None) -> Deferred[Any]:
        result = super().put(source, name, progress, journal, known)
        if self.corruptNextPut:
            self.corruptNextPut = False
            result.addCallback(lambda upload: (self.corrupt(upload.temporaryName), upload)[1])
        return self._held("put", result)

    def readBack(self, name: str) -> Deferred[Any]:
        return self._held("readBack", super().readBack(name))


class QueueHarness:
    """A queue over the store twin and twins of destinations, on a Clock."""

    def __init__(self, folder: FilePath, policy: DeliveryPolicy | None = None,
                 store: MemoryClientStore | None = None) -> None:
        self.clock = Clock()
        self.clock.advance(START.timestamp())
        self.store = store or MemoryClientStore()
        self.folder = folder
        folder.makedirs(ignoreExistingDirectory=True)
        self.destinations: dict[str, HeldDestination] = {}
        self.license = FeatureSet(set(ALL_FEATURES))
        self.policy = policy or DeliveryPolicy(maxAttempts=4, first=10.0, maximum=100.0,
                                               breakerFailures=3, breakerDelay=300.0,
                                               parallel=4, parallelPerDestination=2)
        self.queue = self.newQueue()

    def newQueue(self) -> DeliveryQueue:
        """A queue of a new process over the same store and destinations."""
        return DeliveryQueue(self.clock, DeliveryStore(self.store, now(self.clock)),
                             self.open, lambda server: self.license, self.policy,
                             random=lambda: 0.5, runInThread=synchronously)

    def destination(self, name: str, type: str = "local") -> NamedDestination:
        self.destinations[name] = HeldDestination(type, name, self.clock)
        return NamedDestination(name + "-id", name, type)

    def open(self, destinationId: str) -> Deferred[Any]:
        from twisted.internet.defer import fail, succeed

        from backupremote.protocol.errors import NOT_FOUND, BackupRemoteError

        name = destinationId.removesuffix("-id")
        if name not in self.destinations:
            return fail(BackupRemoteError(NOT_FOUND, f"no destination {destinationId}"))
        return succeed(self.destinations[name])

    def artifact(self, runId: str, size: int = 100_000) -> tuple[Job, FilePath]:
        path = self.folder.child(f"{runId}.sql.zst")
        data = os.urandom(size)
        path.setContent(data)
        entry = FileEntry("f1", f"shop-{runId}.sql.zst", size, hashlib.sha256(data).hexdigest(),
                          65536, -(-size // 65536))
        job = Job(runId=runId, server="default", databaseConfigId="db", options=None,
                  scheduleId="nightly-id", fireTime=START, goal="released", state="verified",
                  downloadFolder=self.folder.path, keepDownload=False, destinations=(),
                  createdAt=START, updatedAt=START, artifact=entry, artifactPath=path.path)
        return job, path
