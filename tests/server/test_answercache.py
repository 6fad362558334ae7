"""
The answers the server keeps encoded (L{ServerComponents.answers}): a
client's page of configurations and a finished run's status are read and
encoded once per change of the store, and every change shows at the next
request, whoever made it.
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from backupremote.protocol.databases import (
    CreateDatabaseConfig,
    DatabaseConfigInput,
    DeleteDatabaseConfig,
    ListDatabaseConfigs,
)
from backupremote.protocol.runs import ExecuteBackup, GetExecutionStatus
from backupremote.protocol.transfers import ReleaseArtifact
from backupremote.server.state.store import ServerStore
from tests.server.transfers.helpers import StagingMixin


class AnswerCacheTests(StagingMixin, SynchronousTestCase):
    """alice (C{self.client}) owns the configuration C{db}; bob has his own."""

    def setUp(self) -> None:
        self.setUpStaging()
        self.bob = self.addClient("bob")
        self.reads = 0
        original = self.harness.databases.page

        def counting(*arguments: Any) -> Any:
            self.reads += 1
            return original(*arguments)

        self.patch(self.harness.databases, "page", counting)

    def names(self, loopback: Any, **arguments: Any) -> list[str]:
        return [item.name for item in loopback.call(ListDatabaseConfigs, **arguments)["page"].items]

    def otherConnection(self) -> ServerStore:
        """The same database through a connection of its own (another process's)."""
        store = ServerStore.inDataDir(self.harness.config.dataDir)
        self.addCleanup(store.close)
        return store

    def test_pageReadOncePerChange(self) -> None:
        """Asked again and again, the page is read once; each change shows at once."""
        for _ in range(3):
            self.assertEqual(self.names(self.client), ["db"])
        self.assertEqual(self.reads, 1)
        created = self.client.call(CreateDatabaseConfig, config=DatabaseConfigInput(
            name="another", engine="sqlite",
            path=self.harness.databases.stored(self.configId).path))["config"]
        self.assertEqual(self.names(self.client), ["another", "db"])
        self.client.call(DeleteDatabaseConfig, id=created.id)
        self.assertEqual(self.names(self.client), ["db"])
        self.assertEqual(self.reads, 3)

    def test_pageChangedByAnotherConnection(self) -> None:
        self.assertEqual(self.names(self.client), ["db"])
        self.otherConnection().connection.execute(
            "UPDATE database_configs SET name = 'renamed' WHERE id = ?", (self.configId,))
        self.assertEqual(self.names(self.client), ["renamed"])

    def test_pagesPerClientAndArguments(self) -> None:
        """A page kept for alice is never bob's, nor another offset's."""
        self.assertEqual(self.names(self.client), ["db"])
        self.assertEqual(self.names(self.bob), [])
        self.assertEqual(self.names(self.client, offset=1), [])
        self.assertEqual(self.names(self.client), ["db"])
        self.assertEqual(self.reads, 3)

    def test_invalidPagingStillRefused(self) -> None:
        """A refusal is not kept: every bad request is judged again."""
        for _ in range(2):
            self.assertEqual(self.client.error(ListDatabaseConfigs, limit=0).code,
                             "VALIDATION_FAILED")

    def test_finishedRunsStatusFollowsTheStore(self) -> None:
        """A finished run's status changes only with the store: its release shows at once."""
        self.stage("done")
        statuses = [self.client.call(GetExecutionStatus, runId="done")["status"]
                    for _ in range(2)]
        self.assertEqual(statuses[0], statuses[1])
        self.assertTrue(statuses[0].artifact.staged)
        self.client.call(ReleaseArtifact, runId="done")
        self.assertFalse(
            self.client.call(GetExecutionStatus, runId="done")["status"].artifact.staged)
        self.assertEqual(self.bob.error(GetExecutionStatus, runId="done").code, "NOT_FOUND")

    def test_activeRunsStatusIsLive(self) -> None:
        """A queued run's status moves without a write to the store: never kept."""
        self.harness.runs.queue.maxConcurrent = 0
        self.client.call(ExecuteBackup, runId="first", databaseConfigId=self.configId)
        self.client.call(ExecuteBackup, runId="second", databaseConfigId=self.configId)
        self.assertEqual(
            self.client.call(GetExecutionStatus, runId="second")["status"].queuePosition, 2)
        self.harness.runs.cancel("alice", "first")
        self.client.pump.flush()
        self.assertEqual(
            self.client.call(GetExecutionStatus, runId="second")["status"].queuePosition, 1)

    def test_unknownRunNotKept(self) -> None:
        """NOT_FOUND is not kept: a run stored later (another connection) is found."""
        self.assertEqual(self.client.error(GetExecutionStatus, runId="later").code, "NOT_FOUND")
        self.stage("later")
        self.assertEqual(
            self.client.call(GetExecutionStatus, runId="later")["status"].state, "completed")

