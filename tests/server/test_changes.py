"""
L{StampedCache}: reads of the server database kept only while nobody wrote
to it, by this connection or by another one (the operator's CLI).
"""

from __future__ import annotations

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from backupremote.server.state.changes import StampedCache, StoreChanges
from backupremote.server.state.store import ServerStore


class StampedCacheTests(SynchronousTestCase):
    def setUp(self) -> None:
        path = FilePath(self.mktemp())
        path.makedirs()
        self.store = ServerStore.inDataDir(path)
        self.addCleanup(self.store.close)
        # another process's connection to the same database, as the CLI opens it
        self.other = ServerStore.inDataDir(path)
        self.addCleanup(self.other.close)
        self.store.addClient("alice", "hash-1")
        self.reads: list[str] = []
        self.cache: StampedCache[str | None] = StampedCache(self.store.changes)

    def secretHash(self, clientId: str = "alice") -> str | None:
        def read() -> str | None:
            self.reads.append(clientId)
            return self.store.secretHashOf(clientId)

        return self.cache.get(clientId, read)

    def test_readOnceWhileUnchanged(self) -> None:
        self.assertEqual([self.secretHash() for _ in range(3)], ["hash-1"] * 3)
        self.assertEqual(self.reads, ["alice"])

    def test_otherConnectionsCommitReadsAgain(self) -> None:
        """A change another process commits is seen by the very next look-up."""
        self.secretHash()
        self.other.connection.execute("UPDATE clients SET disabled = 1 WHERE clientId = 'alice'")
        self.assertIsNone(self.secretHash())
        self.other.connection.execute(
            "UPDATE clients SET disabled = 0, secretHash = 'hash-2' WHERE clientId = 'alice'")
        self.assertEqual(self.secretHash(), "hash-2")
        self.assertEqual(self.reads, ["alice"] * 3)

    def test_ownWriteReadsAgain(self) -> None:
        """A write of the same connection (no other commit) also drops what was kept."""
        self.secretHash()
        self.store.connection.execute("DELETE FROM clients WHERE clientId = 'alice'")
        self.assertIsNone(self.secretHash())
        self.assertEqual(self.reads, ["alice"] * 2)

    def test_anyWriteDropsEverything(self) -> None:
        """Any table's change drops every key: the stamp says nothing about which rows."""
        self.store.addClient("bob", "hash-b")
        self.secretHash("alice")
        self.secretHash("bob")
        self.store.audit("auth", "ok", "bob")
        self.secretHash("alice")
        self.secretHash("bob")
        self.assertEqual(self.reads, ["alice", "bob", "alice", "bob"])

    def test_readersErrorNotKept(self) -> None:
        """A read that raises keeps nothing: the next look-up reads again."""
        def failing() -> str:
            raise RuntimeError("database is locked")

        self.assertRaises(RuntimeError, self.cache.get, "alice", failing)
        self.assertEqual(self.secretHash(), "hash-1")
        self.assertEqual(self.reads, ["alice"])

    def test_bounded(self) -> None:
        """Past its size the cache starts over rather than grow."""
        cache: StampedCache[int] = StampedCache(self.store.changes, maxEntries=2)
        reads: list[int] = []

        def reader(key: int) -> int:
            reads.append(key)
            return key

        for key in (1, 2, 3, 1):
            self.assertEqual(cache.get(key, lambda key=key: reader(key)), key)
        self.assertEqual(reads, [1, 2, 3, 1])
        self.assertEqual(len(cache._entries), 2)


class StoreChangesTests(SynchronousTestCase):
    def test_stampMovesWithEveryCommit(self) -> None:
        path = FilePath(self.mktemp())
        path.makedirs()
        store = ServerStore.inDataDir(path)
        self.addCleanup(store.close)
        other = ServerStore.inDataDir(path)
        self.addCleanup(other.close)
        changes = StoreChanges(store.connection)
        stamps = [changes.stamp(), changes.stamp()]
        other.addClient("carol", "h")
        stamps.append(changes.stamp())
        store.audit("auth", "ok", "carol")
        stamps.append(changes.stamp())
        self.assertEqual(stamps[0], stamps[1])
        self.assertEqual(len(set(stamps[1:])), 3)
