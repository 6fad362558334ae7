"""
Following runs: the client's side of the event stream.

Each followed run remembers the last event number it saw. Events pushed
twice (a replay overlapping live events) are dropped; after a reconnect the
connection manager asks the server to replay from there, so nothing is
missed and nothing is seen twice. While a new follow's replay is on its way,
live events that overtake it wait for it, so they are seen in order.
"""

from __future__ import annotations

from typing import Callable

from attrs import define, field
from twisted.internet.defer import Deferred

from backupremote.protocol.runs import RunEvent

EventHandler = Callable[[RunEvent], None]
#: At most this many live events held while the replay catches up (a run
#: sends a few a second; past this they are handed on as they come).
MAX_EARLY = 4096


@define(eq=False)
class Follower:
    runId: str
    onEvent: EventHandler | None = None
    lastSeq: int = 0
    ended: Deferred[RunEvent] = field(factory=Deferred)
    #: until the server has answered the subscription, live events that
    #: overtake the replay of earlier ones wait here (by seq) for them
    early: dict[int, RunEvent] | None = None


class RunFollowers:
    """The runs this client follows, fed by pushed events."""

    def __init__(self) -> None:
        self._followers: dict[str, Follower] = {}

    def follow(self, runId: str, onEvent: EventHandler | None = None) -> Follower:
        """
        Follow C{runId}; until L{caughtUp}, an event that comes before the
        replay of earlier ones (a connection that commanded the run gets its
        live events at once) is held until they have come.
        """
        follower = self._followers.get(runId)
        if follower is None:
            follower = self._followers[runId] = Follower(runId, onEvent, early={})
        elif onEvent is not None:
            follower.onEvent = onEvent
        return follower

    def caughtUp(self, runId: str) -> None:
        """
        The server answered the subscription, so its replay has come (it
        sends the replay before the answer): hand on what was held, in order.
        """
        follower = self._followers.get(runId)
        if follower is None or follower.early is None:
            return
        early, follower.early = follower.early, None
        for seq in sorted(early):
            if seq > follower.lastSeq:
                self._hand(follower, early[seq])

    def unfollow(self, runId: str) -> None:
        self._followers.pop(runId, None)

    def deliver(self, event: RunEvent) -> None:
        follower = self._followers.get(event.runId)
        if follower is None or event.seq <= follower.lastSeq:
            return
        early = follower.early
        if early is not None and event.seq > follower.lastSeq + 1 and len(early) < MAX_EARLY:
            early[event.seq] = event
            return
        self._hand(follower, event)
        while early is not None and follower.lastSeq + 1 in early:
            self._hand(follower, early.pop(follower.lastSeq + 1))

    def _hand(self, follower: Follower, event: RunEvent) -> None:
        follower.lastSeq = event.seq
        if follower.onEvent is not None:
            follower.onEvent(event)
        if event.kind in ("complete", "failed"):
            self.unfollow(event.runId)
            follower.early = None
            follower.ended.callback(event)

    def followed(self) -> list[Follower]:
        return list(self._followers.values())

