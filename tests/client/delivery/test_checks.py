"""The schedule hook: destinations named by a schedule exist and are licensed."""

from __future__ import annotations

from datetime import time

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from backupremote.client.delivery import FeatureSet
from backupremote.client.delivery.checks import checkScheduleDestinations
from backupremote.client.destinations.registry import DestinationRegistry
from backupremote.client.destinations.stored import StoredDestination
from backupremote.client.schedules.model import Daily, Schedule
from backupremote.protocol.errors import LICENSE_FEATURE_MISSING, NOT_FOUND, BackupRemoteError
from backupremote.testing import MemoryClientStore
from tests.client.destinations.test_registry import NOW


class ScheduleCheckTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.registry = DestinationRegistry.inFolder(Clock(), MemoryClientStore(),
                                                     FilePath(self.mktemp()))
        for id, name, type, url in (("i1", "nas", "local", "file:///srv"),
                                    ("i2", "box", "webdav", "webdav+https://h/dav")):
            self.successResultOf(self.registry.store.add(
                StoredDestination(id, name, type, url), None, NOW))
        self.licenses = {"default": FeatureSet({"destination.local"})}

    def check(self, *destinations: str) -> Deferred:
        schedule = Schedule("s", "nightly", Daily((time(2, 0),)), "UTC", "db",
                            destinations=destinations)
        return Deferred.fromCoroutine(checkScheduleDestinations(
            self.registry, self.licenses.__getitem__, schedule))

    def test_idsBecomeNames(self) -> None:
        self.assertEqual(self.successResultOf(self.check("i1")).destinations, ("nas",))

    def test_unknown(self) -> None:
        error = self.failureResultOf(self.check("nsa"), BackupRemoteError).value
        self.assertEqual((error.code, error.details["didYouMean"]), (NOT_FOUND, "nas"))

    def test_unlicensedTypeRefused(self) -> None:
        error = self.failureResultOf(self.check("nas", "box"), BackupRemoteError).value
        self.assertEqual((error.code, error.details["feature"]),
                         (LICENSE_FEATURE_MISSING, "destination.webdav"))
