"""
L{ScheduleStore}: one contract, over the SQLite client store and over its
in-memory twin (L{backupremote.testing.MemoryClientStore}).
"""

from __future__ import annotations

from datetime import datetime, time, timedelta, timezone
from typing import Any

from twisted.internet import reactor
from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase

from backupremote.client.schedules.model import Cron, Daily, Schedule
from backupremote.client.schedules.store import (
    MISSED,
    STARTED,
    FireRecord,
    ScheduleState,
    ScheduleStore,
)
from backupremote.client.store import STATE_FILE, SQLiteClientStore
from backupremote.protocol.errors import (
    CONFLICT,
    NOT_FOUND,
    VALIDATION_FAILED,
    BackupRemoteError,
)
from backupremote.protocol.options import BackupOptions
from backupremote.testing import MemoryClientStore

NOW = datetime(2026, 11, 29, 10, 0, tzinfo=timezone.utc)


def nightly(**kwargs: Any) -> Schedule:
    values: dict[str, Any] = dict(id="9d3c2a1b-0000-4000-8000-000000000001", name="nightly",
                                  rule=Daily((time(3, 0),)), zone="Europe/Berlin",
                                  database="6f1c", destinations=("nas",),
                                  options=BackupOptions(compression="xz"))
    values.update(kwargs)
    return Schedule(**values)


class ScheduleStoreContract:
    """What L{ScheduleStore} does over any L{IClientStore}."""

    def makeStore(self) -> Any:
        raise NotImplementedError

    def schedules(self) -> ScheduleStore:
        return ScheduleStore(self.makeStore())

    async def assertFails(self, deferred: Any, code: str) -> BackupRemoteError:
        with self.assertRaises(BackupRemoteError) as caught:  # type: ignore[attr-defined]
            await deferred
        self.assertEqual(caught.exception.code, code)  # type: ignore[attr-defined]
        return caught.exception

    async def test_addGetList(self) -> None:
        store = self.schedules()
        added = await store.add(nightly(revision=7), NOW)
        self.assertEqual(added.revision, 1)
        self.assertEqual(await store.get("nightly"), added)
        self.assertEqual(await store.get(added.id), added)
        other = await store.add(nightly(id="a-second", name="hourly",
                                        rule=Cron("0 * * * *")), NOW)
        self.assertEqual(await store.list(), [other, added])

    async def test_nameAndIdAreUnique(self) -> None:
        store = self.schedules()
        await store.add(nightly(), NOW)
        await self.assertFails(store.add(nightly(id="another"), NOW), CONFLICT)
        await self.assertFails(store.add(nightly(name="other"), NOW), CONFLICT)
        self.assertEqual(len(await store.list()), 1)

    async def test_invalidIsNeverStored(self) -> None:
        store = self.schedules()
        await self.assertFails(store.add(nightly(rule=Cron("99 * * * *")), NOW),
                               VALIDATION_FAILED)
        await self.assertFails(store.add(nightly(zone="Nowhere/Land"), NOW), VALIDATION_FAILED)
        self.assertEqual(await store.list(), [])
        added = await store.add(nightly(), NOW)
        await self.assertFails(store.update(nightly(zone="Nowhere/Land"), NOW),
                               VALIDATION_FAILED)
        self.assertEqual(await store.get("nightly"), added)

    async def test_unknownIsNotFound(self) -> None:
        store = self.schedules()
        error = await self.assertFails(store.get("nope"), NOT_FOUND)
        self.assertIn("schedule list", error.message)
        await self.assertFails(store.remove("nope"), NOT_FOUND)
        await self.assertFails(store.update(nightly(), NOW), NOT_FOUND)

    async def test_updateBumpsRevisionAndChecksIt(self) -> None:
        store = self.schedules()
        added = await store.add(nightly(), NOW)
        changed = await store.update(nightly(name="renamed", enabled=False), NOW)
        self.assertEqual((changed.revision, changed.name, changed.enabled),
                         (2, "renamed", False))
        self.assertEqual(await store.get(added.id), changed)
        await self.assertFails(store.update(added, NOW), CONFLICT)  # stale revision 1
        await store.add(nightly(id="b", name="taken"), NOW)
        await self.assertFails(store.update(nightly(name="taken", revision=2), NOW), CONFLICT)

    async def test_stateAndRecords(self) -> None:
        store = self.schedules()
        added = await store.add(nightly(), NOW)
        fire = datetime(2026, 11, 29, 2, 0, tzinfo=timezone.utc)
        state = ScheduleState(added.id, 1, fire + timedelta(days=1), None, fire, "r1")
        records = [FireRecord(added.id, fire - timedelta(days=1), "r0", MISSED, "late"),
                   FireRecord(added.id, fire, "r1", STARTED)]
        self.assertTrue(await store.save(state, records, NOW))
        self.assertEqual(await store.states(), {added.id: state})
        found = await store.fires(added.id)
        self.assertEqual([(r.runId, r.outcome, r.detail, r.recordedAt) for r in found],
                         [("r1", STARTED, None, NOW), ("r0", MISSED, "late", NOW)])
        self.assertEqual(found[0].fireTime, fire)
        self.assertEqual(len(await store.fires(limit=1)), 1)

    async def test_staleStateIsNotSaved(self) -> None:
        """The scheduler's save loses to an edit made meanwhile (another revision)."""
        store = self.schedules()
        added = await store.add(nightly(), NOW)
        await store.update(added, NOW)
        self.assertFalse(await store.save(ScheduleState(added.id, 1, NOW), [], NOW))
        self.assertEqual(await store.states(), {})
        self.assertEqual(await store.fires(), [])

    async def test_removeDropsStateKeepsRecords(self) -> None:
        store = self.schedules()
        added = await store.add(nightly(), NOW)
        await store.save(ScheduleState(added.id, 1, NOW),
                         [FireRecord(added.id, NOW, "r", STARTED)], NOW)
        self.assertEqual(await store.remove("nightly"), added)
        self.assertEqual(await store.list(), [])
        self.assertEqual(await store.states(), {})
        self.assertEqual([r.runId for r in await store.fires(added.id)], ["r"])
        self.assertFalse(await store.save(ScheduleState(added.id, 1, NOW), [], NOW))


class MemoryScheduleStoreTests(ScheduleStoreContract, TestCase):
    def makeStore(self) -> MemoryClientStore:
        store = MemoryClientStore()
        self.addCleanup(store.close)
        return store


class SQLiteScheduleStoreTests(ScheduleStoreContract, TestCase):
    def makeStore(self) -> SQLiteClientStore:
        folder = FilePath(self.mktemp())
        folder.makedirs()
        store = SQLiteClientStore(folder.child(STATE_FILE), reactor)
        self.addCleanup(store.close)
        return store
