"""The client's side of a run's event stream: in order, once each, nothing missed."""

from __future__ import annotations

from datetime import datetime, timezone

from twisted.trial.unittest import SynchronousTestCase

from backupremote.client.connection.followers import MAX_EARLY, RunFollowers
from backupremote.protocol.runs import RunEvent

AT = datetime(2026, 11, 29, 14, 0, tzinfo=timezone.utc)


def event(seq: int, kind: str = "progress") -> RunEvent:
    return RunEvent("r1", seq, kind, "dump", seq * 100, AT)


class RunFollowersTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.followers = RunFollowers()
        self.seen: list[int] = []
        self.follower = self.followers.follow("r1", lambda e: self.seen.append(e.seq))

    def test_liveEventsOvertakingTheReplayWait(self) -> None:
        """
        The connection that commanded the run gets its live events at once:
        one that comes between follow() and the replay of the earlier ones
        waits for them (CI saw [3, 4, ...] for a run whose replay then
        brought 1 and 2, dropped as already seen).
        """
        self.followers.deliver(event(3))
        self.assertEqual(self.seen, [])
        for seq in (1, 2, 3):  # the replay
            self.followers.deliver(event(seq))
        self.followers.caughtUp("r1")
        self.followers.deliver(event(4, "complete"))
        self.assertEqual(self.seen, [1, 2, 3, 4])
        self.assertEqual(self.successResultOf(self.follower.ended).seq, 4)

    def test_caughtUpHandsOnWhatTheReplayLacked(self) -> None:
        """A replay that does not reach back (nothing stored before seq 5) holds nothing up."""
        self.followers.deliver(event(6))
        self.followers.deliver(event(5))
        self.followers.deliver(event(8))
        self.assertEqual(self.seen, [])
        self.followers.caughtUp("r1")
        self.assertEqual(self.seen, [5, 6, 8])
        self.followers.deliver(event(9))
        self.assertEqual(self.seen, [5, 6, 8, 9], "after catching up, events pass as they come")

    def test_terminalEventHeldThenEnds(self) -> None:
        self.followers.deliver(event(2, "failed"))
        self.assertNoResult(self.follower.ended)
        self.followers.deliver(event(1))
        self.assertEqual(self.seen, [1, 2])
        self.assertEqual(self.successResultOf(self.follower.ended).kind, "failed")
        self.followers.caughtUp("r1")  # the answer comes after the end: nothing more
        self.assertEqual(self.seen, [1, 2])

    def test_heldEventsBounded(self) -> None:
        for seq in range(2, MAX_EARLY + 3):
            self.followers.deliver(event(seq))
        self.assertEqual(self.seen, [MAX_EARLY + 2], "past the bound, handed on as they come")

    def test_duplicatesDropped(self) -> None:
        self.followers.caughtUp("r1")
        for seq in (1, 1, 2, 1, 3):
            self.followers.deliver(event(seq))
        self.assertEqual(self.seen, [1, 2, 3])
