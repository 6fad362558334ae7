"""
The delivery queue in the client's store (the C{deliveries} table of
migration 3, and migration 5's record of resumable uploads: the C{resume}
column and C{delivery_parts}). Every method is one transaction; L{DeliveryStore.move} moves
an item from the states it was read in and no other (compare and set), so
two processes cannot both record the same step.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Callable, Collection, Iterable
from datetime import datetime
from typing import Any

from attrs import evolve
from twisted.internet.defer import Deferred

from backupremote.client.delivery.model import (
    DELIVERED,
    FAILED,
    PENDING,
    SETTLED,
    UPLOADING,
    VERIFYING,
    WAITING,
    QueueItem,
)
from backupremote.client.destinations.interface import PendingUpload, UploadedPart, UploadState
from backupremote.client.store import IClientStore
from backupremote.client.store.instants import instantOf, storedInstant
from backupremote.protocol.errors import CONFLICT, NOT_FOUND, BackupRemoteError
from backupremote.protocol.structured import converter

_COLUMNS = ("id, runId, server, destinationId, destination, scheduleId, name, source, size, sha256, "
            "state, attempts, upload, errorCode, reason, nextAttemptAt, method, verifiedAt, "
            "prunedAt, createdAt, updatedAt, resume")
#: fields L{DeliveryStore.move} may change
_CHANGEABLE = ("attempts", "upload", "errorCode", "reason", "nextAttemptAt", "method",
               "verifiedAt", "prunedAt", "resume")


def _item(row: tuple[Any, ...]) -> QueueItem:
    (id, runId, server, destinationId, destination, scheduleId, name, source, size, sha256, state,
     attempts, upload, errorCode, reason, nextAttemptAt, method, verifiedAt, prunedAt,
     createdAt, updatedAt, resume) = row
    return QueueItem(
        id=id, runId=runId, server=server, destinationId=destinationId, destination=destination,
        scheduleId=scheduleId, name=name, source=source, size=size, sha256=sha256,
        state=state, attempts=attempts,
        upload=None if upload is None else converter.structure(json.loads(upload),
                                                               PendingUpload),
        errorCode=errorCode, reason=reason, nextAttemptAt=instantOf(nextAttemptAt),
        method=method, verifiedAt=instantOf(verifiedAt), prunedAt=instantOf(prunedAt),
        createdAt=instantOf(createdAt), updatedAt=instantOf(updatedAt),  # type: ignore[arg-type]
        resume=_resumeOf(resume))


def _resumeOf(text: str | None) -> UploadState | None:
    """The C{resume} column's upload (without its parts)."""
    return None if text is None else converter.structure(json.loads(text), UploadState)


def _resumeText(state: UploadState | None) -> str | None:
    if state is None:
        return None
    return json.dumps(converter.unstructure(evolve(state, parts=())))


def _values(item: QueueItem) -> tuple[Any, ...]:
    return (item.id, item.runId, item.server, item.destinationId, item.destination, item.scheduleId,
            item.name, item.source, item.size, item.sha256, item.state, item.attempts,
            None if item.upload is None else json.dumps(converter.unstructure(item.upload)),
            item.errorCode, item.reason, storedInstant(item.nextAttemptAt), item.method,
            storedInstant(item.verifiedAt), storedInstant(item.prunedAt), storedInstant(item.createdAt),
            storedInstant(item.updatedAt), _resumeText(item.resume))


class ItemMoved(BackupRemoteError):
    """The item was not in a state it was expected in: another process moved it."""


def newItemId() -> str:
    return str(uuid.uuid4())


class DeliveryStore:
    """Typed access to the C{deliveries} table."""

    def __init__(self, store: IClientStore, now: Callable[[], datetime]) -> None:
        self.store = store
        self.now = now

    def enqueue(self, items: Iterable[QueueItem]) -> Deferred[list[QueueItem]]:
        """
        Record C{items} (each C{pending}), except for a run and destination
        that has one already; fires with the items of those runs and
        destinations as stored (the old ones as they are).
        """
        items = list(items)

        def work(db: sqlite3.Connection) -> list[QueueItem]:
            found = []
            for item in items:
                db.execute(f"INSERT OR IGNORE INTO deliveries ({_COLUMNS}) VALUES "
                           f"({', '.join('?' * 22)})", _values(item))
                found.append(_item(db.execute(
                    f"SELECT {_COLUMNS} FROM deliveries WHERE runId = ? AND destinationId = ?",
                    (item.runId, item.destinationId)).fetchone()))
            return found

        return self.store.transact(work)

    def move(self, item: QueueItem, state: str, expected: Collection[str] | None = None,
             **changes: Any) -> Deferred[QueueItem]:
        """
        Move C{item} to C{state} with C{changes}, if it is still in one of
        C{expected} (default: the state it was read in).

        @raise ItemMoved: (C{CONFLICT}) if it is not.
        """
        unknown = set(changes) - set(_CHANGEABLE)
        if unknown:
            raise ValueError(f"cannot change {sorted(unknown)}")
        states = tuple(expected) if expected is not None else (item.state,)
        updated = evolve(item, state=state, updatedAt=self.now(), **changes)
        # the recorded upload changes only when asked: an attempt records its own meanwhile
        resumes = ", resume = ?" if "resume" in changes else ""
        resume = (_resumeText(updated.resume),) if "resume" in changes else ()

        def work(db: sqlite3.Connection) -> QueueItem:
            values = _values(updated)
            changed = db.execute(
                "UPDATE deliveries SET state = ?, attempts = ?, upload = ?, errorCode = ?, "
                "reason = ?, nextAttemptAt = ?, method = ?, verifiedAt = ?, prunedAt = ?, "
                f"updatedAt = ?{resumes} WHERE id = ? AND state IN "
                f"({', '.join('?' * len(states))})",
                (state, *values[11:19], values[20], *resume, item.id, *states)).rowcount
            if not changed:
                raise ItemMoved(CONFLICT, (
                    f"delivery {item.id} of run {item.runId} to {item.destination} is no "
                    f"longer {' or '.join(states)}: another process moved it"))
            if resume:
                db.execute("DELETE FROM delivery_parts WHERE deliveryId = ? AND uploadId != ?",
                           (item.id, "" if updated.resume is None else updated.resume.uploadId))
            return _get(db, item.id)

        return self.store.transact(work)

    def get(self, id: str) -> Deferred[QueueItem]:
        """The item whose id is (or uniquely starts with, 8 characters or more) C{id}."""
        return self.store.transact(lambda db: _find(db, id))

    def forRun(self, runId: str) -> Deferred[list[QueueItem]]:
        return self.store.transact(lambda db: [_item(row) for row in db.execute(
            f"SELECT {_COLUMNS} FROM deliveries WHERE runId = ? ORDER BY destination",
            (runId,))])

    def list(self, states: Collection[str] | None = None,
             destinationId: str | None = None) -> Deferred[list[QueueItem]]:
        """Items (in C{states}, of one destination), oldest first."""
        where, values = ["1"], []
        if states is not None:
            where.append(f"state IN ({', '.join('?' * len(states))})")
            values += list(states)
        if destinationId is not None:
            where.append("destinationId = ?")
            values.append(destinationId)
        return self.store.transact(lambda db: [_item(row) for row in db.execute(
            f"SELECT {_COLUMNS} FROM deliveries WHERE {' AND '.join(where)} "
            "ORDER BY createdAt, id", values)])

    def counts(self, exclude: Collection[str] = ()) -> Deferred[dict[str, int]]:
        """How many items are in each state (but those in C{exclude})."""

        def work(db: sqlite3.Connection) -> dict[str, int]:
            return {state: count for state, count in db.execute(
                "SELECT state, count(*) FROM deliveries GROUP BY state")
                if state not in exclude}

        transact: Callable[..., Deferred[dict[str, int]]] = self.store.transact
        return transact(work)

    def waiting(self) -> Deferred[list[QueueItem]]:
        """
        Items waiting for an attempt (due or not), the earliest due first,
        and those left C{verifying} (by a process that ended, unless they
        are being verified now).
        """
        return self.store.transact(lambda db: [_item(row) for row in db.execute(
            f"SELECT {_COLUMNS} FROM deliveries WHERE state IN (?, ?, ?) "
            "ORDER BY coalesce(nextAttemptAt, ''), createdAt, id", (*WAITING, VERIFYING))])

    def retry(self, id: str) -> Deferred[QueueItem]:
        """
        Put a failed (or waiting) item back in the queue, due now, with its
        attempts counted anew; C{CONFLICT} for one in flight or delivered.
        """

        def work(db: sqlite3.Connection) -> QueueItem:
            item = _find(db, id)
            if item.state not in (FAILED,) + WAITING:
                raise BackupRemoteError(CONFLICT, (
                    f"delivery {item.id} is {item.state}: "
                    + ("it was delivered already" if item.state == DELIVERED else
                       "it is being attempted now")))
            db.execute("UPDATE deliveries SET state = ?, attempts = 0, nextAttemptAt = NULL, "
                       "reason = ?, updatedAt = ? WHERE id = ?",
                       (PENDING, f"retry asked (was {item.state}: {item.reason or '-'})",
                        storedInstant(self.now()), item.id))
            return _get(db, item.id)

        return self.store.transact(work)

    def delivered(self, destinationId: str) -> Deferred[list[QueueItem]]:
        """The delivered, not pruned, items of a destination (for retention)."""
        return self.store.transact(lambda db: [_item(row) for row in db.execute(
            f"SELECT {_COLUMNS} FROM deliveries WHERE destinationId = ? AND state = ? "
            "AND prunedAt IS NULL ORDER BY verifiedAt", (destinationId, DELIVERED))])

    # Resumable uploads (an attempt's IUploadJournal)

    def beginUpload(self, id: str, state: UploadState) -> Deferred[None]:
        """
        Record the upload an attempt of item C{id} (C{uploading}) began,
        instead of any recorded before and its parts.

        @raise ItemMoved: if the item is no longer C{uploading}.
        """

        def work(db: sqlite3.Connection) -> None:
            changed = db.execute(
                "UPDATE deliveries SET resume = ? WHERE id = ? AND state = ?",
                (_resumeText(state), id, UPLOADING)).rowcount
            if not changed:
                raise ItemMoved(CONFLICT, (
                    f"delivery {id} is no longer {UPLOADING}: another process moved it"))
            db.execute("DELETE FROM delivery_parts WHERE deliveryId = ?", (id,))

        return self.store.transact(work)

    def partConfirmed(self, id: str, uploadId: str, part: UploadedPart) -> Deferred[None]:
        """Record C{part} of the upload C{uploadId} of item C{id} (if it is still the recorded one)."""

        def work(db: sqlite3.Connection) -> None:
            row = db.execute("SELECT resume FROM deliveries WHERE id = ?", (id,)).fetchone()
            recorded = _resumeOf(row[0]) if row is not None else None
            if recorded is None or recorded.uploadId != uploadId:
                return
            db.execute(
                "INSERT OR REPLACE INTO delivery_parts (deliveryId, uploadId, number, start, "
                "length, etag, sha256) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (id, uploadId, part.number, part.start, part.length, part.etag, part.sha256))

        return self.store.transact(work)

    def uploadState(self, id: str) -> Deferred[UploadState | None]:
        """The upload recorded for item C{id}, with the parts confirmed, or C{None}."""

        def work(db: sqlite3.Connection) -> UploadState | None:
            row = db.execute("SELECT resume FROM deliveries WHERE id = ?", (id,)).fetchone()
            state = _resumeOf(row[0]) if row is not None else None
            if state is None:
                return None
            parts = tuple(UploadedPart(number, start, length, etag, sha256)
                          for number, start, length, etag, sha256 in db.execute(
                              "SELECT number, start, length, etag, sha256 FROM delivery_parts "
                              "WHERE deliveryId = ? AND uploadId = ? ORDER BY number",
                              (id, state.uploadId)))
            return evolve(state, parts=parts)

        return self.store.transact(work)

    def recordedUploads(self, destinationId: str) -> Deferred[set[str]]:
        return recordedUploads(self.store, destinationId)

    def markPruned(self, ids: Iterable[str]) -> Deferred[None]:
        ids = list(ids)
        at = storedInstant(self.now())

        def work(db: sqlite3.Connection) -> None:
            for id in ids:
                db.execute("UPDATE deliveries SET prunedAt = ?, updatedAt = ? WHERE id = ?",
                           (at, at, id))

        return self.store.transact(work)


def recordedUploads(store: IClientStore, destinationId: str) -> Deferred[set[str]]:
    """
    The ids of the uploads to C{destinationId} that deliveries recorded to
    resume: never to be aborted as stale.
    """

    def work(db: sqlite3.Connection) -> set[str]:
        found = set()
        for (text,) in db.execute("SELECT resume FROM deliveries WHERE destinationId = ? AND "
                                  "resume IS NOT NULL", (destinationId,)):
            state = _resumeOf(text)
            if state is not None:
                found.add(state.uploadId)
        return found

    return store.transact(work)


def isSettled(items: Iterable[QueueItem]) -> bool:
    return all(item.state in SETTLED for item in items)


def _get(db: sqlite3.Connection, id: str) -> QueueItem:
    return _item(db.execute(f"SELECT {_COLUMNS} FROM deliveries WHERE id = ?",
                            (id,)).fetchone())


def _find(db: sqlite3.Connection, id: str) -> QueueItem:
    row = db.execute(f"SELECT {_COLUMNS} FROM deliveries WHERE id = ?", (id,)).fetchone()
    if row is None and len(id) >= 8 and id.replace("-", "").isalnum():
        rows = db.execute(f"SELECT {_COLUMNS} FROM deliveries WHERE id LIKE ? LIMIT 2",
                          (id + "%",)).fetchall()
        row = rows[0] if len(rows) == 1 else None
    if row is None:
        raise BackupRemoteError(NOT_FOUND, (
            f"the queue has no delivery {id!r} (`backupremote queue` lists them)"))
    return _item(row)
