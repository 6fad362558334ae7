"""
Following runs: the client's side of the event stream.

Each followed run remembers the last event number it saw. Events pushed
twice (a replay overlapping live events) are dropped; after a reconnect the
connection manager asks the server to replay from there, so nothing is
missed and nothing is seen twice.
"""

from __future__ import annotations

from typing import Callable

from attrs import define, field
from twisted.internet.defer import Deferred

from backupremote.protocol.runs import RunEvent

EventHandler = Callable[[RunEvent], None]


@define(eq=False)
class Follower:
    runId: str
    onEvent: EventHandler | None = None
    lastSeq: int = 0
    ended: Deferred[RunEvent] = field(factory=Deferred)


class RunFollowers:
    """The runs this client follows, fed by pushed events."""

    def __init__(self) -> None:
        self._followers: dict[str, Follower] = {}

    def follow(self, runId: str, onEvent: EventHandler | None = None) -> Follower:
        follower = self._followers.get(runId)
        if follower is None:
            follower = self._followers[runId] = Follower(runId, onEvent)
        elif onEvent is not None:
            follower.onEvent = onEvent
        return follower

    def unfollow(self, runId: str) -> None:
        self._followers.pop(runId, None)

    def deliver(self, event: RunEvent) -> None:
        follower = self._followers.get(event.runId)
        if follower is None or event.seq <= follower.lastSeq:
            return
        follower.lastSeq = event.seq
        if follower.onEvent is not None:
            follower.onEvent(event)
        if event.kind in ("complete", "failed"):
            self.unfollow(event.runId)
            follower.ended.callback(event)

    def followed(self) -> list[Follower]:
        return list(self._followers.values())

