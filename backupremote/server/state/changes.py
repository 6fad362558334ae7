"""
Reads of the server database kept while it has not changed.

The control plane answers the same questions again and again (is this
client still enabled with the same secret, which configurations does it
have, how did that run end): 200 clients asking ten times a second spent a
third of the server's reactor time on those queries and on encoding their
answers (issue 16 item 4, py-spy). A L{StampedCache} answers from memory
as long as L{StoreChanges.stamp} is the same, and the stamp changes with
every write, so a cached answer is as fresh as a query:

  - a commit of another connection (the operator's C{backupremote server
    clients disable}, from another process) changes SQLite's
    C{PRAGMA data_version} on ours, read at every look-up: a revoked client
    is still refused on its very next command;
  - a write of our own connection changes its C{total_changes}.

A stamp costs one C{PRAGMA} (no table read, no JSON), a fraction of the
queries it saves.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")

#: Entries a L{StampedCache} keeps at most before it starts over.
MAX_ENTRIES = 1024


class StoreChanges:
    """What changes whenever the data of one SQLite connection's database may have."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def stamp(self) -> tuple[int, int]:
        """Equal to an earlier stamp only if nobody wrote to the database in between."""
        db = self._db
        return db.execute("PRAGMA data_version").fetchone()[0], db.total_changes


class StampedCache(Generic[T]):
    """Values read from the store, by key, dropped all at once when the store changes."""

    def __init__(self, changes: StoreChanges, maxEntries: int = MAX_ENTRIES) -> None:
        self._changes = changes
        self._maxEntries = maxEntries
        self._stamp: tuple[int, int] | None = None
        self._entries: dict[Hashable, T] = {}

    def get(self, key: Hashable, read: Callable[[], T]) -> T:
        """The value of C{key}: C{read()} once, then from memory until the store changes."""
        stamp = self._changes.stamp()
        entries = self._entries
        if stamp != self._stamp:
            entries.clear()
            self._stamp = stamp
        try:
            return entries[key]
        except KeyError:
            pass
        value = read()
        if len(entries) >= self._maxEntries:
            entries.clear()
        entries[key] = value
        return value
