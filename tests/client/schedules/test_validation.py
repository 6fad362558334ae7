"""L{backupremote.client.schedules.validation} and the schedule's JSON form."""

from __future__ import annotations

from datetime import datetime, time, timezone

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
    describeRule,
    parseTime,
    scheduleConverter,
)
from backupremote.client.schedules.validation import validateSchedule
from backupremote.protocol.errors import VALIDATION_FAILED, BackupRemoteError
from backupremote.protocol.options import BackupOptions
from tests.strategies import scheduleInstants, scheduleZones, wallTimes

UTC = timezone.utc
ANCHOR = datetime(2026, 1, 1, tzinfo=UTC)


def schedule(rule: Rule = Daily((time(3, 0),)), **kwargs: object) -> Schedule:
    values: dict[str, object] = dict(id="5b8e0d5c-3a51-4c1f-8f0e-6d1b2a3c4d5e",
                                     name="nightly", rule=rule, zone="Europe/Berlin",
                                     database="6f1c")
    values.update(kwargs)
    return Schedule(**values)  # type: ignore[arg-type]


class ValidationTests(SynchronousTestCase):
    def refused(self, sched: Schedule, **kwargs: object) -> dict[str, str]:
        error = self.assertRaises(BackupRemoteError, validateSchedule, sched, **kwargs)
        self.assertEqual(error.code, VALIDATION_FAILED)
        fields: dict[str, str] = error.details["fields"]
        for name in fields:
            self.assertIn(name, error.message)
        return fields

    def test_validKinds(self) -> None:
        for rule in (Daily((time(3, 0), time(15, 30))), Weekly((0, 3), time(2, 0)),
                     Monthly((1, 15), time(4, 0), last=True), Monthly((), time(4, 0), True),
                     Interval(1, ANCHOR), Cron("*/5 * * * *"), Cron("0 3 L * *")):
            sched = schedule(rule)
            self.assertIs(validateSchedule(sched, servers={"default"}), sched)

    def test_badCron(self) -> None:
        for expression in ("61 * * * *", "* * * *", "0 0 * * * *", "@daily", "0 0 31 2 *",
                           "x y z w v"):
            self.assertIn("rule.expression", self.refused(schedule(Cron(expression))),
                          expression)

    def test_unknownZone(self) -> None:
        for zone in ("Mars/Olympus", "", "../../etc/passwd", "Europe/Berlin "):
            self.assertEqual(list(self.refused(schedule(zone=zone))), ["zone"], zone)

    def test_intervalUnderOneMinute(self) -> None:
        self.assertEqual(list(self.refused(schedule(Interval(0, ANCHOR)))), ["rule.minutes"])

    def test_endBeforeStart(self) -> None:
        fields = self.refused(schedule(start=datetime(2026, 5, 2, tzinfo=UTC),
                                       end=datetime(2026, 5, 1, tzinfo=UTC)))
        self.assertEqual(fields, {"end": "must be after start"})

    def test_unknownServer(self) -> None:
        fields = self.refused(schedule(server="paris"), servers={"default", "lyon"})
        self.assertIn("default, lyon", fields["server"])

    def test_everyProblemAtOnce(self) -> None:
        fields = self.refused(schedule(
            Weekly((7,), time(3, 0, 30)), name="-bad", zone="Nowhere", database="",
            destinations=("ok", "no/slash", "ok"), jitterSeconds=-1,
            misfireGraceSeconds=0, overlap="both",
            options=BackupOptions(compression="rar", threads=-1, postScript="/bin/sh",
                                  timeoutSeconds=1),
        ))
        self.assertEqual(set(fields), {
            "name", "zone", "database", "destinations", "destinations.1", "jitterSeconds",
            "misfireGraceSeconds", "overlap", "rule.weekdays", "rule.at",
            "options.compression", "options.threads", "options.postScript",
            "options.timeoutSeconds",
        })

    def test_kindSpecificProblems(self) -> None:
        self.assertEqual(set(self.refused(schedule(Daily(())))), {"rule.times"})
        self.assertEqual(set(self.refused(schedule(Daily((time(3, 0), time(3, 0)))))),
                         {"rule.times"})
        self.assertEqual(set(self.refused(schedule(Monthly((), time(3, 0)))))
                         , {"rule.days"})
        self.assertEqual(set(self.refused(schedule(Monthly((0, 32), time(3, 0))))),
                         {"rule.days"})
        self.assertEqual(set(self.refused(schedule(Interval(5, datetime(2026, 1, 1))))),
                         {"rule.anchor"})
        self.assertEqual(set(self.refused(schedule(Interval(5, ANCHOR),
                                                   jitterSeconds=300))), {"jitterSeconds"})

    def test_optionsFormatNeedsTheEngine(self) -> None:
        sched = schedule(options=BackupOptions(format="plain"))
        validateSchedule(sched, engine="postgresql")
        validateSchedule(sched)  # the engine is not known: the server checks it
        self.assertEqual(set(self.refused(sched, engine="sqlite")), {"options.format"})

    def test_compressionLevel(self) -> None:
        validateSchedule(schedule(options=BackupOptions(compression="zstd", level=19)))
        self.assertEqual(set(self.refused(schedule(options=BackupOptions(
            compression="zstd", level=20)))), {"options.level"})
        self.assertEqual(set(self.refused(schedule(options=BackupOptions(
            compression="none", level=3)))), {"options.level"})


class ConverterTests(SynchronousTestCase):
    def test_jsonShape(self) -> None:
        sched = schedule(Monthly((1, 15), time(4, 5), last=True), destinations=["nas"],
                         options=BackupOptions(compression="xz"))
        data = scheduleConverter.unstructure(sched)
        self.assertEqual(data["rule"], {"kind": "monthly", "days": [1, 15], "at": "04:05",
                                        "last": True})
        self.assertEqual(data["destinations"], ["nas"])
        self.assertEqual(data["options"]["compression"], "xz")
        self.assertEqual(scheduleConverter.structure(data, Schedule), sched)

    def test_unknownKindRefused(self) -> None:
        data = scheduleConverter.unstructure(schedule())
        data["rule"] = {"kind": "hourly", "times": ["03:00"]}
        self.assertRaises(Exception, scheduleConverter.structure, data, Schedule)

    def test_parseTime(self) -> None:
        self.assertEqual(parseTime("3:05"), time(3, 5))
        self.assertEqual(parseTime("23:59"), time(23, 59))
        for bad in ("24:00", "3:5", "03:60", "0300", "", "03:00:00", "٣:00"):
            self.assertRaises(ValueError, parseTime, bad)

    def test_describe(self) -> None:
        self.assertEqual(describeRule(Weekly((0, 3), time(2, 0))), "weekly on mon,thu at 02:00")
        self.assertEqual(describeRule(Monthly((1,), time(2, 0), True)),
                         "monthly on day 1,last at 02:00")
        self.assertEqual(describeRule(Daily((time(2, 0), time(14, 0)))),
                         "daily at 02:00, 14:00")
        self.assertIn("every 6h", describeRule(Interval(360, ANCHOR)))

    @given(st.one_of(
        st.builds(lambda t: Daily(tuple(t)), st.lists(wallTimes, min_size=1, max_size=3)),
        st.builds(lambda m, a: Interval(m, a), st.integers(1, 10_000), scheduleInstants),
        st.builds(lambda d, t, last: Monthly(tuple(d), t, last),
                  st.lists(st.integers(1, 31), max_size=3), wallTimes, st.booleans()),
    ), scheduleZones, st.none() | scheduleInstants)
    def test_roundTrip(self, rule: Rule, zone: str, start: datetime | None) -> None:
        sched = schedule(rule, zone=zone, start=start)
        self.assertEqual(scheduleConverter.structure(scheduleConverter.unstructure(sched),
                                                     Schedule), sched)
