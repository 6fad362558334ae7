"""
What a connection tells the daemon about its server: when it can no longer
be reached (or refuses this client), when it can again, and the licence's
expiry at every login.

    watch = ServerWatch(clock, "db-east", notifier.notify, licenseWatch)
    connection.watch = watch     # ServerConnection calls failed() / authenticated()

L{ServerWatch} tells only the changes: the first failure after a success
(or at start) is one L{ServerUnreachable} with the time it began, and the
next login one L{ServerReachable}; the failures in between are the same
outage. Whether anyone hears of it is the notifier's business: it alerts
only an outage that lasts (C{[notify] unreachable_minutes}).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Protocol

from twisted.internet.interfaces import IReactorTime

from backupremote.client.notify.events import ServerReachable, ServerUnreachable
from backupremote.client.notify.notifier import EventSink
from backupremote.protocol.errors import BackupRemoteError


class LicenseObserver(Protocol):
    """Told the licence's expiry at every login (L{backupremote.client.notify.LicenseExpiryWatch})."""

    def observe(self, server: str, expiresAt: datetime | None) -> None:
        ...


class ServerWatch:
    """
    One server's reachability and licence, as its connection sees them.

    @param notify: told L{ServerUnreachable} and L{ServerReachable}.
    @param licenses: told the expiry of the licence each login grants.
    """

    def __init__(self, clock: IReactorTime, server: str, notify: EventSink | None = None,
                 licenses: LicenseObserver | None = None) -> None:
        self._clock = clock
        self.server = server
        self._notify = notify
        self._licenses = licenses
        #: when the current outage began (C{None}: the server is reachable,
        #: or nothing was tried yet)
        self.downSince: datetime | None = None

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock.seconds(), timezone.utc)

    def failed(self, error: BackupRemoteError) -> None:
        """A connection attempt, or its login, failed with C{error}."""
        if self.downSince is not None:
            return
        self.downSince = self._now()
        if self._notify is not None:
            self._notify(ServerUnreachable(self.server, self.downSince, error.code,
                                           error.message))

    def authenticated(self, answer: dict[str, Any]) -> None:
        """A login succeeded with the C{auth} C{answer}."""
        expires = answer.get("licenseExpiresAt")
        if expires and self._licenses is not None:
            self._licenses.observe(self.server, datetime.fromisoformat(
                expires.replace("Z", "+00:00")))
        if self.downSince is None:
            return
        self.downSince = None
        if self._notify is not None:
            self._notify(ServerReachable(self.server))  # the notifier says since when
