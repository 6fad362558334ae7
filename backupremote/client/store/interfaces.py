"""The client store's one Interface."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

from twisted.internet.defer import Deferred
from zope.interface import Attribute, Interface

T = TypeVar("T")

#: What runs in a transaction: it gets the connection (SQLite's C{?}
#: parameters) and must not block on anything but the database.
Work = Callable[[sqlite3.Connection], T]


class IClientStore(Interface):
    """
    The client's database. Every read and write goes through L{transact}:
    one call, one transaction, so a step of a job is written whole or not
    at all, whatever instant the process is killed at.
    """

    schemaVersion: int = Attribute(
        "The number of migrations applied; known once L{opened} has fired.")

    def opened() -> Deferred[None]:
        """Fires once the database is open and migrated (or fails saying why not)."""

    def transact(work: Callable[[sqlite3.Connection], Any]) -> Deferred[Any]:
        """
        Run C{work(connection)} in one transaction, after every transaction
        asked for before it: committed if it returns (the Deferred fires
        with its result), rolled back if it raises (the Deferred fails with
        that exception).
        """

    def close() -> Deferred[None]:
        """Finish the transactions already asked for, then close; later ones fail."""
