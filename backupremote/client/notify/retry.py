"""
Sending again after a refusal that may pass, with growing waits on an
injected clock: the channels' one retry loop.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from attrs import frozen
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger

from backupremote.protocol.errors import BackupRemoteError

T = TypeVar("T")

#: Seconds to wait before each retry: 4 attempts over about 2.5 minutes.
RETRY_DELAYS = (5.0, 30.0, 120.0)

#: Seconds to connect, and to wait for each answer of the mail server.
SMTP_TIMEOUT = 60.0

#: Seconds one webhook attempt may take, connection included.
WEBHOOK_TIMEOUT = 30.0

_log = Logger(namespace="backupremote.client.notify")


@frozen(auto_exc=True)
class Retryable(Exception):
    """A channel's refusal that may pass on a later attempt (C{error} says what it was)."""

    error: BackupRemoteError


async def withRetries(clock: IReactorTime, attempt: Callable[[], Awaitable[T]],
                      delays: Sequence[float], what: str) -> T:
    """
    C{await attempt()}; after a L{Retryable}, wait the next of C{delays}
    on C{clock} and try again. Raises the last error's C{BackupRemoteError}
    once C{delays} are used up; any other exception passes at once.
    """
    for number, delay in enumerate([*delays, None], start=1):
        try:
            return await attempt()
        except Retryable as retryable:
            if delay is None:
                raise retryable.error from None
            _log.info("{what}: attempt {number} failed ({error}); trying again in "
                      "{delay:g} s", what=what, number=number, error=str(retryable.error),
                      delay=delay)
        await deferLater(clock, delay, lambda: None)
    raise AssertionError("unreachable")  # pragma: no cover
