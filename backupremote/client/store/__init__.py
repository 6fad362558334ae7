"""
The client's own state: one SQLite database in its data folder.

    store = SQLiteClientStore.inFolder(config.dataDir, reactor)
    jobs = JobStore(store)                 # a typed store of one area
    job = await jobs.get(runId)

L{IClientStore} is the database: L{IClientStore.transact} runs a function
in one transaction, off the reactor, and fires with its result. Each area
of the client (jobs, schedules, deliveries) keeps its own typed store class
over it, and its tables in L{MIGRATIONS} (append a migration, never edit
one that shipped). L{SQLiteClientStore} is the real one (WAL,
C{synchronous=FULL}, file 0600, one worker thread);
L{backupremote.testing.MemoryClientStore} is its in-memory twin, and
C{tests/client/test_store.py} holds the contract both keep.
"""

from backupremote.client.store.interfaces import IClientStore, Work
from backupremote.client.store.migrations import MIGRATIONS
from backupremote.client.store.sqlite import STATE_FILE, SQLiteClientStore, migrate

__all__ = ["IClientStore", "MIGRATIONS", "STATE_FILE", "SQLiteClientStore", "Work", "migrate"]
