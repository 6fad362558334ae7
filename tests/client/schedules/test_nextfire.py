"""
L{backupremote.client.schedules.nextfire}: fire times across clock changes.

Every expected instant below is written as the local time a person reads on
the wall clock, with its UTC offset, so that a wrong answer is readable.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from cronsim import CronSim
from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from backupremote.client.schedules.model import (
    Cron,
    Daily,
    Interval,
    Monthly,
    Rule,
    Schedule,
    Weekly,
)
from backupremote.client.schedules.nextfire import nextFire, resolveLocal
from backupremote.client.schedules.runids import SLOT_NAMESPACE, slotRunId
from tests.strategies import scheduleInstants, scheduleZones, wallTimes

UTC = timezone.utc


def schedule(rule: Rule, zone: str = "Europe/Berlin", **kwargs: object) -> Schedule:
    return Schedule(id="3f0c", name="nightly", rule=rule, zone=zone, database="db",
                    **kwargs)  # type: ignore[arg-type]


def fires(sched: Schedule, after: datetime, count: int) -> list[datetime]:
    found = []
    for _ in range(count):
        fire = nextFire(sched, after)
        if fire is None:
            break
        found.append(fire)
        after = fire
    return found


def local(text: str) -> datetime:
    """C{"2026-03-29 03:00+02:00"} as an aware datetime in UTC."""
    return datetime.fromisoformat(text).astimezone(UTC)


class BerlinTests(SynchronousTestCase):
    """Europe/Berlin: 02:00 -> 03:00 on 2026-03-29, 03:00 -> 02:00 on 2026-10-25."""

    def test_springForwardDaily(self) -> None:
        """02:30 does not exist on 2026-03-29: the fire is at 03:00 CEST, once."""
        found = fires(schedule(Daily((time(2, 30),))), local("2026-03-28 12:00+01:00"), 3)
        self.assertEqual(found, [local("2026-03-29 03:00+02:00"),
                                 local("2026-03-30 02:30+02:00"),
                                 local("2026-03-31 02:30+02:00")])

    def test_springForwardTwoTimesInTheGap(self) -> None:
        """02:15 and 02:45 both become 03:00 that day: one fire, not two."""
        found = fires(schedule(Daily((time(2, 15), time(2, 45)))),
                      local("2026-03-29 00:00+01:00"), 3)
        self.assertEqual(found, [local("2026-03-29 03:00+02:00"),
                                 local("2026-03-30 02:15+02:00"),
                                 local("2026-03-30 02:45+02:00")])

    def test_fallBackDailyFiresOnce(self) -> None:
        """02:30 happens twice on 2026-10-25: the fire is the first (CEST) only."""
        found = fires(schedule(Daily((time(2, 30),))), local("2026-10-24 12:00+02:00"), 3)
        self.assertEqual(found, [local("2026-10-25 02:30+02:00"),
                                 local("2026-10-26 02:30+01:00"),
                                 local("2026-10-27 02:30+01:00")])

    def test_fallBackFromInsideTheRepeatedHour(self) -> None:
        """Asked during the second 02:xx, the first 02:30 is already past."""
        for sched in (schedule(Daily((time(2, 30),))), schedule(Cron("30 2 * * *"))):
            self.assertEqual(nextFire(sched, local("2026-10-25 02:10+01:00")),
                             local("2026-10-26 02:30+01:00"))

    def test_cronFallBackFiresOnce(self) -> None:
        """C{30 2 * * *} fires once on 2026-10-25 (croniter 7.0.0 fires twice)."""
        found = fires(schedule(Cron("30 2 * * *")), local("2026-10-24 12:00+02:00"), 2)
        self.assertEqual(found, [local("2026-10-25 02:30+02:00"),
                                 local("2026-10-26 02:30+01:00")])

    def test_cronSpringForward(self) -> None:
        found = fires(schedule(Cron("30 2 * * *")), local("2026-03-28 12:00+01:00"), 2)
        self.assertEqual(found, [local("2026-03-29 03:00+02:00"),
                                 local("2026-03-30 02:30+02:00")])

    def test_cronStepsFollowElapsedTime(self) -> None:
        """C{0 * * * *} fires every hour of real time: in both 02:00s of the fall-back."""
        found = fires(schedule(Cron("0 * * * *")), local("2026-10-25 01:30+02:00"), 4)
        self.assertEqual(found, [local("2026-10-25 02:00+02:00"),
                                 local("2026-10-25 02:00+01:00"),
                                 local("2026-10-25 03:00+01:00"),
                                 local("2026-10-25 04:00+01:00")])

    def test_weeklyAcrossSpringForward(self) -> None:
        """Sundays 02:30: the DST Sunday fires at 03:00, the others at 02:30."""
        sched = schedule(Weekly((6,), time(2, 30)))
        found = fires(sched, local("2026-03-21 12:00+01:00"), 3)
        self.assertEqual(found, [local("2026-03-22 02:30+01:00"),
                                 local("2026-03-29 03:00+02:00"),
                                 local("2026-04-05 02:30+02:00")])

    def test_intervalKeepsItsSpacing(self) -> None:
        """Every 6 h from local midnight: elapsed time, the wall times shift by the hour."""
        sched = schedule(Interval(360, local("2026-03-01 00:00+01:00")))
        found = fires(sched, local("2026-03-28 20:00+01:00"), 3)
        self.assertEqual(found, [local("2026-03-29 00:00+01:00"),
                                 local("2026-03-29 07:00+02:00"),
                                 local("2026-03-29 13:00+02:00")])


class SaoPauloTests(SynchronousTestCase):
    """America/Sao_Paulo: no DST since 2019 (before, its clocks skipped midnight)."""

    def test_noDSTToday(self) -> None:
        found = fires(schedule(Daily((time(0, 30),)), "America/Sao_Paulo"),
                      local("2026-10-01 12:00-03:00"), 60)
        self.assertEqual(found[0], local("2026-10-02 00:30-03:00"))
        self.assertEqual({b - a for a, b in zip(found, found[1:])}, {timedelta(days=1)})
        self.assertEqual({f.astimezone(ZoneInfo("America/Sao_Paulo")).utcoffset()
                          for f in found}, {timedelta(hours=-3)})

    def test_midnightThatDidNotExist(self) -> None:
        """On 2018-11-04 the clocks went from 00:00 to 01:00: 00:30 fired at 01:00."""
        found = fires(schedule(Daily((time(0, 30),)), "America/Sao_Paulo"),
                      local("2018-11-03 12:00-03:00"), 2)
        self.assertEqual(found, [local("2018-11-04 01:00-02:00"),
                                 local("2018-11-05 00:30-02:00")])


class LordHoweTests(SynchronousTestCase):
    """
    Australia/Lord_Howe moves by 30 minutes: 02:00 -> 02:30 (+10:30 -> +11)
    on 2026-10-04, and 02:00 -> 01:30 on 2026-04-05.
    """

    def test_springForwardHalfHour(self) -> None:
        found = fires(schedule(Daily((time(2, 15),)), "Australia/Lord_Howe"),
                      local("2026-10-03 12:00+10:30"), 2)
        self.assertEqual(found, [local("2026-10-04 02:30+11:00"),
                                 local("2026-10-05 02:15+11:00")])

    def test_timeAfterTheHalfHourGapIsKept(self) -> None:
        found = fires(schedule(Daily((time(2, 40),)), "Australia/Lord_Howe"),
                      local("2026-10-03 12:00+10:30"), 1)
        self.assertEqual(found, [local("2026-10-04 02:40+11:00")])

    def test_fallBackHalfHourFiresOnce(self) -> None:
        for sched in (schedule(Daily((time(1, 45),)), "Australia/Lord_Howe"),
                      schedule(Cron("45 1 * * *"), "Australia/Lord_Howe")):
            found = fires(sched, local("2026-04-04 12:00+11:00"), 2)
            self.assertEqual(found, [local("2026-04-05 01:45+11:00"),
                                     local("2026-04-06 01:45+10:30")])


class MonthlyTests(SynchronousTestCase):
    def test_lastDay(self) -> None:
        found = fires(schedule(Monthly((), time(23, 0), last=True)),
                      local("2027-01-01 00:00+01:00"), 4)
        self.assertEqual([f.astimezone(ZoneInfo("Europe/Berlin")).date().isoformat()
                          for f in found],
                         ["2027-01-31", "2027-02-28", "2027-03-31", "2027-04-30"])

    def test_days29To31InShortMonths(self) -> None:
        """A day the month lacks fires on its last day, once however many days clamp."""
        for days, expected in [
            ((29,), ["2027-01-29", "2027-02-28", "2027-03-29", "2027-04-29"]),
            ((30,), ["2027-01-30", "2027-02-28", "2027-03-30", "2027-04-30"]),
            ((31,), ["2027-01-31", "2027-02-28", "2027-03-31", "2027-04-30"]),
            ((29, 30, 31), ["2027-01-29", "2027-01-30", "2027-01-31", "2027-02-28",
                            "2027-03-29", "2027-03-30", "2027-03-31", "2027-04-29",
                            "2027-04-30"]),
        ]:
            found = fires(schedule(Monthly(days, time(3, 0))),
                          local("2027-01-01 00:00+01:00"), len(expected))
            self.assertEqual([f.astimezone(ZoneInfo("Europe/Berlin")).date().isoformat()
                              for f in found], expected, days)

    def test_leapDay(self) -> None:
        """Day 29 is 2028-02-29 in a leap year and 2027-02-28 otherwise."""
        found = fires(schedule(Monthly((29,), time(3, 0))), local("2027-02-01 00:00+01:00"), 13)
        dates = [f.astimezone(ZoneInfo("Europe/Berlin")).date().isoformat() for f in found]
        self.assertEqual(dates[0], "2027-02-28")
        self.assertIn("2028-02-29", dates)
        self.assertNotIn("2028-02-28", dates)

    def test_cronLeapDayOnly(self) -> None:
        found = fires(schedule(Cron("0 3 29 2 *")), local("2026-01-01 00:00+01:00"), 2)
        self.assertEqual(found, [local("2028-02-29 03:00+01:00"),
                                 local("2032-02-29 03:00+01:00")])

    def test_firstAndFifteenthAndLast(self) -> None:
        found = fires(schedule(Monthly((1, 15), time(4, 0), last=True)),
                      local("2026-02-01 05:00+01:00"), 4)
        self.assertEqual(found, [local("2026-02-15 04:00+01:00"),
                                 local("2026-02-28 04:00+01:00"),
                                 local("2026-03-01 04:00+01:00"),
                                 local("2026-03-15 04:00+01:00")])


class WindowTests(SynchronousTestCase):
    """Start and end bound the fires; the enabled flag does not change them."""

    def test_startIsInclusive(self) -> None:
        sched = schedule(Daily((time(3, 0),)), start=local("2026-05-10 03:00+02:00"))
        self.assertEqual(nextFire(sched, local("2026-01-01 00:00+01:00")),
                         local("2026-05-10 03:00+02:00"))

    def test_endStops(self) -> None:
        sched = schedule(Daily((time(3, 0),)), end=local("2026-05-11 03:00+02:00"))
        found = fires(sched, local("2026-05-09 12:00+02:00"), 5)
        self.assertEqual(found, [local("2026-05-10 03:00+02:00"),
                                 local("2026-05-11 03:00+02:00")])

    def test_disabledStillHasFireTimes(self) -> None:
        sched = schedule(Daily((time(3, 0),)), enabled=False)
        self.assertEqual(nextFire(sched, local("2026-05-09 12:00+02:00")),
                         local("2026-05-10 03:00+02:00"))

    def test_naiveRefused(self) -> None:
        self.assertRaises(ValueError, nextFire, schedule(Daily((time(3, 0),))),
                          datetime(2026, 1, 1))

    def test_intervalBeforeItsAnchor(self) -> None:
        """The anchor aligns the fires; it is not a start."""
        sched = schedule(Interval(15, local("2026-06-01 00:00+02:00")))
        self.assertEqual(nextFire(sched, local("2026-05-31 23:40+02:00")),
                         local("2026-05-31 23:45+02:00"))


class RunIdTests(SynchronousTestCase):
    def test_sameSlotSameRunId(self) -> None:
        fire = local("2026-10-25 02:30+02:00")
        self.assertEqual(slotRunId("3f0c", fire), slotRunId("3f0c", fire.astimezone(
            ZoneInfo("Europe/Berlin"))))

    def test_definition(self) -> None:
        """uuid5 of "scheduleId:fireTimeUTC", with a namespace fixed forever."""
        import uuid
        self.assertEqual(str(SLOT_NAMESPACE), "9e5d71f2-6c26-51f9-a832-1a860b0ef322")
        self.assertEqual(slotRunId("3f0c", local("2026-10-25 02:30+02:00")),
                         str(uuid.uuid5(SLOT_NAMESPACE, "3f0c:2026-10-25T00:30:00+00:00")))

    def test_slotsDiffer(self) -> None:
        first = local("2026-10-25 02:30+02:00")
        self.assertNotEqual(slotRunId("3f0c", first), slotRunId("3f0c", first + timedelta(
            hours=1)))
        self.assertNotEqual(slotRunId("3f0c", first), slotRunId("3f0d", first))

    def test_naiveRefused(self) -> None:
        self.assertRaises(ValueError, slotRunId, "3f0c", datetime(2026, 1, 1))


def _cronWeekday(weekday: int) -> int:
    """Our 0 = Monday as cron's 0 = Sunday."""
    return (weekday + 1) % 7


_rules = st.one_of(
    st.builds(lambda times: Daily(tuple(times)),
              st.lists(wallTimes, min_size=1, max_size=4, unique=True)),
    st.builds(lambda days, at: Weekly(tuple(days), at),
              st.lists(st.integers(0, 6), min_size=1, max_size=7, unique=True), wallTimes),
    st.builds(lambda days, at, last: Monthly(tuple(days), at, last),
              st.lists(st.integers(1, 31), min_size=1, max_size=5, unique=True),
              wallTimes, st.booleans()),
    st.builds(lambda minutes, anchor: Interval(minutes, anchor),
              st.integers(1, 3 * 24 * 60), scheduleInstants),
    st.builds(lambda at: Cron(f"{at.minute} {at.hour} * * *"), wallTimes),
    st.sampled_from([Cron("*/15 * * * *"), Cron("0 */6 * * *"), Cron("30 1-3 * * *"),
                     Cron("0 3 L * *"), Cron("0 0 29 2 *"), Cron("5 4 * * sun")]),
)


class PropertyTests(SynchronousTestCase):
    @given(_rules, scheduleZones, scheduleInstants)
    def test_strictlyIncreasing(self, rule: Rule, zone: str, start: datetime) -> None:
        found = fires(schedule(rule, zone), start, 25)
        self.assertEqual(len(found), 25)
        self.assertGreater(found[0], start)
        for earlier, later in zip(found, found[1:]):
            self.assertGreater(later, earlier)

    @given(st.lists(wallTimes, min_size=1, max_size=3, unique=True), scheduleZones,
           scheduleInstants)
    def test_validLocalTimes(self, times: list[time], zone: str, start: datetime) -> None:
        """
        Each daily fire is at one of its wall times (the first occurrence if
        that time repeats), or at the clock change that skipped it.
        """
        tz = ZoneInfo(zone)
        for fire in fires(schedule(Daily(tuple(times)), zone), start, 20):
            wall = fire.astimezone(tz)
            naive = wall.replace(tzinfo=None)
            if wall.time() in times:
                self.assertEqual(resolveLocal(naive, tz), fire)
                self.assertEqual(wall.fold, 0)
            else:
                before = (fire - timedelta(minutes=1)).astimezone(tz)
                self.assertGreater(wall.utcoffset(), before.utcoffset())
                skipped = [t for t in times
                           if before.replace(tzinfo=None) < datetime.combine(wall.date(), t)
                           < naive]
                self.assertTrue(skipped, f"{fire} is not a time of {times} in {zone}")

    @given(wallTimes, scheduleZones, scheduleInstants)
    def test_dailyAgreesWithCronsim(self, at: time, zone: str, start: datetime) -> None:
        expected = CronSim(f"{at.minute} {at.hour} * * *", start.astimezone(ZoneInfo(zone)))
        found = fires(schedule(Daily((at,)), zone), start, 15)
        self.assertEqual(found, [next(expected).astimezone(UTC) for _ in found])

    @given(st.lists(st.integers(0, 6), min_size=1, max_size=7, unique=True), wallTimes,
           scheduleZones, scheduleInstants)
    def test_weeklyAgreesWithCronsim(self, days: list[int], at: time, zone: str,
                                     start: datetime) -> None:
        cronDays = ",".join(str(_cronWeekday(d)) for d in days)
        expected = CronSim(f"{at.minute} {at.hour} * * {cronDays}",
                           start.astimezone(ZoneInfo(zone)))
        found = fires(schedule(Weekly(tuple(days), at), zone), start, 10)
        self.assertEqual(found, [next(expected).astimezone(UTC) for _ in found])

    @given(st.lists(st.integers(1, 28), min_size=1, max_size=4, unique=True), st.booleans(),
           wallTimes, scheduleZones, scheduleInstants)
    def test_monthlyAgreesWithCronsim(self, days: list[int], last: bool, at: time, zone: str,
                                      start: datetime) -> None:
        """Within days 1-28 (no clamping) and "last" (cron's L), cron agrees."""
        cronDays = ",".join([str(d) for d in days] + (["L"] if last else []))
        expected = CronSim(f"{at.minute} {at.hour} {cronDays} * *",
                           start.astimezone(ZoneInfo(zone)))
        found = fires(schedule(Monthly(tuple(days), at, last), zone), start, 8)
        wanted = []
        for _ in found:
            fire = next(expected).astimezone(UTC)
            while wanted and fire <= wanted[-1]:
                fire = next(expected).astimezone(UTC)  # day 28 and L on one day
            wanted.append(fire)
        self.assertEqual(found, wanted)

    @given(st.sampled_from(["*/15 * * * *", "0 */6 * * *", "30 1-3 * * *", "0 3 L * *",
                            "0 0 29 2 *", "5 4 * * sun", "45 2 * * 1-5", "0 9,17 * * *",
                            "0 3 1 */3 *", "*/7 2 * * *"]),
           scheduleZones, scheduleInstants)
    def test_cronAgreesWithCronsim(self, expression: str, zone: str,
                                   start: datetime) -> None:
        expected = CronSim(expression, start.astimezone(ZoneInfo(zone)))
        found = fires(schedule(Cron(expression), zone), start, 12)
        wanted: list[datetime] = []
        while len(wanted) < len(found):
            fire = next(expected).astimezone(UTC)
            if not wanted or fire > wanted[-1]:
                wanted.append(fire)
        self.assertEqual(found, wanted)
