"""The notification channel contract on the in-memory twin."""

from __future__ import annotations

from twisted.trial.unittest import TestCase

from backupremote.protocol.errors import NOTIFICATION_FAILED, BackupRemoteError
from backupremote.testing import MemoryNotificationChannel
from tests.client.notify.contract import ChannelFixture, Received, makeChannelTests


async def memoryFixture(case: TestCase) -> ChannelFixture:
    channel = MemoryNotificationChannel()

    def received() -> list[Received]:
        return [Received(n.subject, n.text, n.id, (n.subject + n.text).encode("utf-8"))
                for n in channel.sent]

    def refuseNext() -> None:
        channel.failNext(BackupRemoteError(NOTIFICATION_FAILED, "memory: refused"))

    return ChannelFixture(channel, received, refuseNext)


class MemoryChannelContractTests(makeChannelTests(memoryFixture)):  # type: ignore[misc]
    """The twin passes the contract."""


