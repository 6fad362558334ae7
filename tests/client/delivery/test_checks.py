"""The schedule hook: destinations named by a schedule exist and are licensed."""

from __future__ import annotations

from datetime import datetime, time, timedelta, timezone

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from backupremote.client.config import ClientConfig, ServerAddress, ServerEntry
from backupremote.client.delivery import FeatureSet, licensesOf
from backupremote.client.delivery.checks import checkScheduleDestinations
from backupremote.client.destinations.registry import DestinationRegistry
from backupremote.client.destinations.stored import StoredDestination
from backupremote.client.schedules.model import Daily, Schedule
from backupremote.license import License, signLicense
from backupremote.protocol.errors import (
    CONFIG_INVALID,
    LICENSE_FEATURE_MISSING,
    NOT_FOUND,
    BackupRemoteError,
)
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


class LicensesOfTests(SynchronousTestCase):
    """
    Each server of client.toml delivers under its own licence file; a server
    client.toml no longer names delivers under none.
    """

    NOW = datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc)

    def token(self, *features: str) -> str:
        return signLicense(License("l", "Alice", "alice", features,
                                   self.NOW - timedelta(days=1), self.NOW + timedelta(days=9)),
                           Ed25519PrivateKey.generate())

    def entry(self, name: str, *features: str) -> ServerEntry:
        licence = FilePath(self.mktemp())
        licence.setContent(self.token(*features).encode())
        return ServerEntry(name, ServerAddress("127.0.0.1", 7443), "alice",
                           FilePath("secret"), licence)

    def setUp(self) -> None:
        nas, cloud = self.entry("nas", "destination.local"), self.entry("cloud", "destination.s3")
        config = ClientConfig("alice", FilePath("secret"), nas.licenseFile, nas.address,
                              servers=(nas, cloud))
        self.licenses = licensesOf(config, lambda: self.NOW)

    def test_eachServerItsOwnLicence(self) -> None:
        self.licenses("nas").check("local")
        self.licenses("cloud").check("s3")
        refused = self.assertRaises(BackupRemoteError, self.licenses("nas").check, "s3")
        self.assertEqual(refused.code, LICENSE_FEATURE_MISSING)
        refused = self.assertRaises(BackupRemoteError, self.licenses("cloud").check, "local")
        self.assertEqual(refused.code, LICENSE_FEATURE_MISSING)

    def test_unknownServerHasNoLicence(self) -> None:
        refused = self.assertRaises(BackupRemoteError, self.licenses("gone").check, "local")
        self.assertEqual((refused.code, refused.details["server"]), (CONFIG_INVALID, "gone"))
        self.assertIn("cloud, nas", refused.message)
