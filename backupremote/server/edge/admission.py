"""
Caps on connections that have not authenticated yet, in total and per peer address.

A connection costs memory and a file descriptor from its first byte, and
until it authenticates nothing says it is anyone's. When a cap is reached
the oldest waiting connection (of that peer, or of all) is dropped to make
room, rather than refusing the newcomer: connections that sit idle to hold
slots lose them, while a real client, which authenticates in milliseconds,
is never the oldest for long.
"""

from __future__ import annotations

from collections import Counter
from typing import Hashable, Protocol


class Waiting(Hashable, Protocol):
    """A connection waiting for its ``auth``."""

    peerHost: str

    def evict(self, why: str) -> None:
        """Drop the connection to make room for a newer one."""


class PreAuthAdmission:
    """The connections that have not authenticated, oldest first."""

    def __init__(self, maxTotal: int, maxPerPeer: int) -> None:
        self.maxTotal = maxTotal
        self.maxPerPeer = maxPerPeer
        self._waiting: dict[Waiting, None] = {}
        self._perPeer: Counter[str] = Counter()

    def __len__(self) -> int:
        return len(self._waiting)

    def waitingFrom(self, host: str) -> int:
        return self._perPeer[host]

    def admit(self, connection: Waiting) -> None:
        """Count C{connection} in, evicting the oldest waiting one where a cap is full."""
        host = connection.peerHost
        if self._perPeer[host] >= self.maxPerPeer:
            self._evict(
                next(c for c in self._waiting if c.peerHost == host),
                "too many connections without auth from this address",
            )
        if len(self._waiting) >= self.maxTotal:
            self._evict(next(iter(self._waiting)), "too many connections without auth")
        self._waiting[connection] = None
        self._perPeer[host] += 1

    def settled(self, connection: Waiting) -> None:
        """C{connection} authenticated or closed: it no longer counts."""
        if self._waiting.pop(connection, False) is None:
            self._perPeer[connection.peerHost] -= 1
            if not self._perPeer[connection.peerHost]:
                del self._perPeer[connection.peerHost]

    def _evict(self, connection: Waiting, why: str) -> None:
        self.settled(connection)
        connection.evict(why)
