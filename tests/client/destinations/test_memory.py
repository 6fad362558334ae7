"""The destination contract on the in-memory twin, and the twin's fault hooks."""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase, TestCase

from backupremote.client.destinations import putVerified
from backupremote.protocol.errors import DESTINATION_UNREACHABLE, BackupRemoteError
from backupremote.testing import MemoryDestination
from tests.client.destinations.contract import DestinationFixture, makeDestinationTests


async def memoryFixture(case: TestCase) -> DestinationFixture:
    destination = MemoryDestination(partSize=1 << 20)  # files past 1 MiB go in parts
    return DestinationFixture(
        destination,
        corrupt=destination.corrupt,
        serverNames=lambda: set(destination.files),
    )


class MemoryDestinationContractTests(makeDestinationTests(memoryFixture)):  # type: ignore[misc]
    """The twin passes the contract."""


class MemoryDestinationFaultTests(SynchronousTestCase):
    """The twin's fault hooks, for tests of what uses a destination."""

    def test_failNext(self) -> None:
        destination = MemoryDestination()
        source = FilePath(self.mktemp())
        source.setContent(b"artifact")
        destination.failNext("readBack", BackupRemoteError(DESTINATION_UNREACHABLE, "down"))
        failure = self.failureResultOf(
            Deferred.fromCoroutine(
                putVerified(destination, source, "a.bin")), BackupRemoteError)
        self.assertEqual(failure.value.code, DESTINATION_UNREACHABLE)
        self.assertEqual(destination.files, {}, "the temporary file is removed")
        self.assertEqual(destination.calls, {"put": 1, "readBack": 1, "delete": 1})
