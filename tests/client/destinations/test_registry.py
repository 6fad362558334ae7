"""Named destinations: the store, validation, sealed secrets and the registry."""

from __future__ import annotations

import os
from datetime import datetime, timezone

from twisted.internet.task import Clock
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from backupremote.client.destinations.local import LocalFolderDestination
from backupremote.client.destinations.registry import DestinationRegistry, build
from backupremote.client.destinations.sftp import SFTPDestination
from backupremote.client.destinations.stored import (
    KEEP,
    DestinationStore,
    Retention,
    StoredDestination,
    parseGFS,
    validateDestination,
)
from backupremote.client.jobs.model import NamedDestination
from backupremote.client.schedules.model import Daily, Schedule
from backupremote.client.schedules.store import ScheduleStore
from backupremote.protocol.errors import (
    CONFIG_INVALID,
    CONFLICT,
    NOT_FOUND,
    VALIDATION_FAILED,
    BackupRemoteError,
)
from backupremote.testing import MemoryClientStore

NOW = datetime(2026, 11, 3, 2, 0, tzinfo=timezone.utc)
FINGERPRINT = "SHA256:" + "A" * 43


def local(name: str = "nas", **kwargs) -> StoredDestination:
    return StoredDestination(kwargs.pop("id", name + "-id"), name, "local", "file:///srv/backups",
                             **kwargs)


class RegistryTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.store = MemoryClientStore()
        self.destinations = DestinationStore(self.store)
        self.folder = FilePath(self.mktemp())
        self.folder.makedirs()
        self.registry = DestinationRegistry.inFolder(Clock(), self.store, self.folder)

    def code(self, deferred) -> str:
        return self.failureResultOf(deferred, BackupRemoteError).value.code

    def test_byNameOrId(self) -> None:
        self.successResultOf(self.destinations.add(local(), None, NOW))
        self.assertEqual(self.successResultOf(self.registry.byName("nas")).id, "nas-id")
        self.assertEqual(self.successResultOf(self.registry.byName("nas-id")).name, "nas")
        self.assertEqual(self.successResultOf(self.registry.references(["nas"])),
                         (NamedDestination("nas-id", "nas", "local"),))
        error = self.failureResultOf(self.registry.byName("nsa"), BackupRemoteError).value
        self.assertEqual((error.code, error.details), (NOT_FOUND, {"didYouMean": "nas"}))

    def test_nameTaken(self) -> None:
        self.successResultOf(self.destinations.add(local(), None, NOW))
        self.assertEqual(self.code(self.destinations.add(local(id="other"), None, NOW)),
                         CONFLICT)

    def test_secretSealedNotStored(self) -> None:
        stored = StoredDestination("f1", "ftp1", "ftp", "ftp://u@127.0.0.1/x")
        sealed = self.registry.seal("f1", "hunter2")
        added = self.successResultOf(self.destinations.add(stored, sealed, NOW))
        self.assertTrue(added.hasSecret)
        raw = self.successResultOf(self.store.transact(
            lambda db: db.execute("SELECT definition || secret FROM destinations").fetchone()[0]))
        self.assertNotIn("hunter2", raw)
        self.assertEqual(self.successResultOf(self.registry.secretOf(added)), "hunter2")
        self.assertEqual(self.folder.child("secrets.key").getPermissions().shorthand(),
                         "rw-------")
        # sealed for one row: it does not open on another
        self.successResultOf(self.store.transact(lambda db: db.execute(
            "INSERT INTO destinations SELECT 'f2', 'ftp2', type, revision, definition, "
            "secret, createdAt, updatedAt FROM destinations")))
        other = self.successResultOf(self.registry.byName("ftp2"))
        self.assertEqual(self.failureResultOf(self.registry.secretOf(other),
                                              BackupRemoteError).value.code, CONFIG_INVALID)

    def test_passwordFile(self) -> None:
        secret = self.folder.child("pw")
        secret.setContent(b"s3cret\n")
        secret.chmod(0o600)
        stored = self.successResultOf(self.destinations.add(StoredDestination(
            "f1", "ftp1", "ftp", "ftp://u@127.0.0.1/x", passwordFile=secret.path), None, NOW))
        self.assertEqual(self.successResultOf(self.registry.secretOf(stored)), "s3cret")
        secret.chmod(0o644)
        self.assertEqual(self.failureResultOf(self.registry.secretOf(stored),
                                              BackupRemoteError).value.code, CONFIG_INVALID)

    def test_updateKeepsSecretAndChecksRevision(self) -> None:
        added = self.successResultOf(self.destinations.add(StoredDestination(
            "f1", "ftp1", "ftp", "ftp://u@127.0.0.1/x"), self.registry.seal("f1", "pw"), NOW))
        changed = self.successResultOf(self.destinations.update(
            StoredDestination("f1", "ftp1", "ftp", "ftp://u@127.0.0.1/y", revision=1), KEEP,
            NOW))
        self.assertEqual((changed.revision, changed.hasSecret, changed.url),
                         (2, True, "ftp://u@127.0.0.1/y"))
        self.assertEqual(self.successResultOf(self.registry.secretOf(changed)), "pw")
        self.assertEqual(self.code(self.destinations.update(added, KEEP, NOW)), CONFLICT)

    def test_renameFollowsSchedulesAndRemoveRefused(self) -> None:
        self.successResultOf(self.destinations.add(local(), None, NOW))
        schedules = ScheduleStore(self.store)
        from datetime import time

        self.successResultOf(schedules.add(Schedule(
            "s1", "nightly", Daily((time(2, 0),)), "UTC", "db", destinations=("nas",)), NOW))
        self.assertEqual(self.code(self.destinations.remove("nas")), CONFLICT)
        current = self.successResultOf(self.destinations.get("nas"))
        from attrs import evolve

        self.successResultOf(self.destinations.update(evolve(current, name="vault"), KEEP, NOW))
        schedule = self.successResultOf(schedules.get("nightly"))
        self.assertEqual((schedule.destinations, schedule.revision), (("vault",), 2))

    def test_validation(self) -> None:
        cases = [
            (StoredDestination("i", "bad name!", "local", "file:///x"), "name"),
            (StoredDestination("i", "a", "sftp", "file:///x"), "type"),
            (StoredDestination("i", "a", "ftp", "ftp://u@h/x"), "password"),
            (StoredDestination("i", "a", "sftp", "sftp://u@h/x"), "password"),
            (StoredDestination("i", "a", "local", "file:///x", hostKeys=(FINGERPRINT,)),
             "hostKeys"),
            (StoredDestination("i", "a", "local", "file:///x", retention=Retention(keepLast=0)),
             "retention.keepLast"),
            (StoredDestination("i", "a", "local", "file:///x",
                               retention=Retention(gfs=(0, 0, 0, 0))), "retention.gfs"),
            (StoredDestination("i", "a", "local", "ftp://x"), "url"),
        ]
        for destination, field in cases:
            with self.assertRaises(BackupRemoteError) as caught:
                validateDestination(destination)
            self.assertEqual(caught.exception.code, VALIDATION_FAILED)
            self.assertIn(field, caught.exception.details["fields"], destination)
        self.assertEqual(parseGFS("7,4,12,3"), (7, 4, 12, 3))
        self.assertRaises(BackupRemoteError, parseGFS, "7,4")

    def test_build(self) -> None:
        destination = build(Clock(), local(), None)
        self.assertIsInstance(destination, LocalFolderDestination)
        key = self.folder.child("id")
        key.setContent(b"x")
        key.chmod(0o600)
        sftp = build(Clock(), StoredDestination("i", "a", "sftp", "sftp://u@127.0.0.1/x",
                                                hostKeys=(FINGERPRINT,)), "pw")
        self.assertIsInstance(sftp, SFTPDestination)
        self.assertNotIn("pw", sftp.location)
        os.chmod(key.path, 0o644)
        with self.assertRaises(BackupRemoteError):
            build(Clock(), StoredDestination("i", "a", "sftp", "sftp://u@127.0.0.1/x",
                                             keyFile=key.path, hostKeys=(FINGERPRINT,)), None)
