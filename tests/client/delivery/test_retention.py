"""Retention: the pure selection (hypothesis properties and cases) and prune on the twin."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from backupremote.client.delivery.retention import Copy, prune, select
from backupremote.client.destinations.interface import RemoteFile
from backupremote.client.destinations.stored import Retention
from backupremote.testing import MemoryDestination

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc)


@st.composite
def copiesAndListing(draw):
    count = draw(st.integers(0, 25))
    copies = []
    for index in range(count):
        age = draw(st.integers(0, 800 * 24))
        copies.append(Copy(f"id{index}", f"d/f{index}.zst", draw(st.integers(1, 5)),
                           NOW - timedelta(hours=age), draw(st.sampled_from([None, "a", "b"]))))
    listing = []
    for copy in copies:
        fate = draw(st.sampled_from(["listed", "listed", "listed", "gone", "resized"]))
        if fate != "gone":
            listing.append(RemoteFile(copy.name, copy.size + (fate == "resized"), NOW))
    for index in range(draw(st.integers(0, 4))):
        listing.append(RemoteFile(f"d/other{index}.zst", 3, NOW))
    return copies, listing


retentions = st.builds(
    Retention,
    keepLast=st.none() | st.integers(1, 10),
    keepDays=st.none() | st.integers(1, 400),
    gfs=st.none() | st.tuples(*[st.integers(0, 6)] * 4).filter(any),
)


class SelectionProperties(SynchronousTestCase):
    @given(copiesAndListing(), retentions)
    def test_onlyOurVerifiedFilesAndNeverTheNewest(self, data, retention) -> None:
        copies, listing = data
        selection = select(copies, listing, retention, NOW)
        listed = {f.name: f for f in listing}
        deleted = {c.name for c in selection.delete}
        # never a file we did not write, nor one whose size changed since
        for copy in selection.delete:
            self.assertIn(copy, copies)
            self.assertEqual(listed[copy.name].size, copy.size)
        self.assertFalse(deleted & set(selection.foreign))
        self.assertFalse(deleted & {c.name for c in selection.keep})
        # never the newest verified copy of a schedule
        for group in {c.scheduleId for c in selection.keep + selection.delete}:
            members = [c for c in selection.keep + selection.delete if c.scheduleId == group]
            newest = max(members, key=lambda c: (c.verifiedAt, c.id))
            self.assertNotIn(newest.name, deleted)
        # what keepLast and keepDays promise
        for group in {c.scheduleId for c in selection.keep + selection.delete}:
            members = sorted((c for c in selection.keep + selection.delete
                              if c.scheduleId == group),
                             key=lambda c: (c.verifiedAt, c.id), reverse=True)
            if retention.keepLast:
                for copy in members[:retention.keepLast]:
                    self.assertNotIn(copy.name, deleted)
            if retention.keepDays:
                for copy in members:
                    if copy.verifiedAt >= NOW - timedelta(days=retention.keepDays):
                        self.assertNotIn(copy.name, deleted)

    @given(copiesAndListing())
    def test_noRuleKeepsEverything(self, data) -> None:
        copies, listing = data
        self.assertEqual(select(copies, listing, Retention(), NOW).delete, ())

    @given(copiesAndListing(), retentions)
    def test_pureAndOrderFree(self, data, retention) -> None:
        copies, listing = data
        first = select(copies, listing, retention, NOW)
        second = select(list(reversed(copies)), list(reversed(listing)), retention, NOW)
        self.assertEqual(sorted(c.id for c in first.delete), sorted(c.id for c in second.delete))


def daily(days: int, schedule: str = "s") -> list[Copy]:
    return [Copy(f"id{n}", f"day{n}.zst", 1, NOW - timedelta(days=n), schedule)
            for n in range(days)]


def listed(copies: list[Copy]) -> list[RemoteFile]:
    return [RemoteFile(c.name, c.size, c.verifiedAt) for c in copies]


class SelectionCases(SynchronousTestCase):
    def deleted(self, copies, retention) -> set[str]:
        return {c.name for c in select(copies, listed(copies), retention, NOW).delete}

    def test_keepLast(self) -> None:
        copies = daily(10)
        self.assertEqual(self.deleted(copies, Retention(keepLast=3)),
                         {f"day{n}.zst" for n in range(3, 10)})

    def test_keepDays(self) -> None:
        copies = daily(10)
        self.assertEqual(self.deleted(copies, Retention(keepDays=5)),
                         {f"day{n}.zst" for n in range(6, 10)})

    def test_gfs(self) -> None:
        copies = daily(400)
        kept = {c.name for c in copies} - self.deleted(copies, Retention(gfs=(7, 4, 12, 2)))
        # 7 days, + a copy per week for 4 weeks, per month for 12, per year for 2
        self.assertTrue({f"day{n}.zst" for n in range(7)} <= kept)
        self.assertLessEqual(len(kept), 7 + 4 + 12 + 2)
        self.assertGreaterEqual(len(kept), 12)

    def test_perSchedule(self) -> None:
        copies = daily(5, "a") + [Copy("old-b", "b.zst", 1, NOW - timedelta(days=90), "b")]
        # b's only copy is its newest: kept, however old
        self.assertNotIn("b.zst", self.deleted(copies, Retention(keepLast=1)))

    def test_staleTemporaryFiles(self) -> None:
        listing = [RemoteFile("d/.x.zst.0123456789abcdef.partial", 5,
                              NOW - timedelta(days=2), temporary=True),
                   RemoteFile("d/.y.zst.0123456789abcdef.partial", 5,
                              NOW - timedelta(hours=1), temporary=True)]
        self.assertEqual(select([], listing, Retention(keepLast=1), NOW).staleTemporary,
                         ("d/.x.zst.0123456789abcdef.partial",))


class PruneTests(SynchronousTestCase):
    def test_dryRunDeletesNothing(self) -> None:
        twin = MemoryDestination()
        copies = daily(4)
        for copy in copies:
            twin.files[copy.name] = b"x"
            twin.modified[copy.name] = copy.verifiedAt.timestamp()
        twin.files["notours.zst"] = b"x"
        twin.modified["notours.zst"] = 0
        from twisted.internet.defer import Deferred

        selection = self.successResultOf(Deferred.fromCoroutine(
            prune(twin, copies, Retention(keepLast=2), NOW, dryRun=True)))
        self.assertEqual({c.name for c in selection.delete}, {"day2.zst", "day3.zst"})
        self.assertEqual(len(twin.files), 5)
        self.successResultOf(Deferred.fromCoroutine(
            prune(twin, copies, Retention(keepLast=2), NOW, dryRun=False)))
        self.assertEqual(sorted(twin.files), ["day0.zst", "day1.zst", "notours.zst"])
