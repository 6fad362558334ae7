"""
``backupremote schedule ...``: flags parsed into schedules, and the commands
that need no server run against the in-memory client store.
"""

from __future__ import annotations

import io
import json
import sys
from datetime import datetime, time, timezone
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from backupremote.cli import schedules as cli
from backupremote.cli.main import buildParser
from backupremote.cli.output import Output
from backupremote.client.config import ClientConfig, ServerAddress
from backupremote.client.schedules.model import Cron, Daily, Interval, Monthly, Schedule, Weekly
from backupremote.client.schedules.store import ScheduleStore
from backupremote.client.schedules.validation import Problems
from backupremote.protocol.errors import VALIDATION_FAILED, BackupRemoteError
from backupremote.protocol.options import BackupOptions
from backupremote.testing import MemoryClientStore

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc)


def parse(*argv: str) -> Any:
    return buildParser().parse_args(["--config", "c.toml", "schedule", *argv])


class RuleFlagTests(SynchronousTestCase):
    def rule(self, *argv: str, zone: str = "Europe/Berlin") -> Any:
        problems = Problems()
        rule = cli.parseRule(parse("add", "n", "--db", "d", *argv), zone, problems, NOW)
        problems.raiseIfAny("schedule")
        return rule

    def refused(self, *argv: str) -> dict[str, str]:
        error = self.assertRaises(BackupRemoteError, self.rule, *argv)
        self.assertEqual(error.code, VALIDATION_FAILED)
        return error.details["fields"]

    def test_kinds(self) -> None:
        self.assertEqual(self.rule("--daily", "02:30,14:05"), Daily((time(2, 30), time(14, 5))))
        self.assertEqual(self.rule("--weekly", "mon,thu@03:00"), Weekly((0, 3), time(3, 0)))
        self.assertEqual(self.rule("--monthly", "1,15,last@04:00"),
                         Monthly((1, 15), time(4, 0), True))
        self.assertEqual(self.rule("--cron", "30 2 * * 1-5"), Cron("30 2 * * 1-5"))
        # anchored at midnight today in the schedule's zone
        self.assertEqual(self.rule("--every", "15m"),
                         Interval(15, datetime(2026, 11, 28, 23, 0, tzinfo=timezone.utc)))
        self.assertEqual(self.rule("--every", "1h30m", "--anchor", "2026-01-01T00:10").minutes,
                         90)

    def test_oneKindOnly(self) -> None:
        self.patch(sys, "stderr", io.StringIO())
        self.assertRaises(SystemExit, parse, "add", "n", "--db", "d", "--daily", "02:00",
                          "--cron", "* * * * *")

    def test_badFlags(self) -> None:
        self.assertIn("every", self.refused("--every", "30s"))
        self.assertIn("every", self.refused("--every", "soon"))
        self.assertIn("weekly", self.refused("--weekly", "mon,fun@03:00"))
        self.assertIn("weekly", self.refused("--weekly", "mon"))
        self.assertIn("monthly", self.refused("--monthly", "1,first@03:00"))
        self.assertIn("daily", self.refused("--daily", "25:00"))

    def test_durations(self) -> None:
        problems = Problems()
        self.assertEqual(cli.parseDuration("1d2h3m4s", "x", problems), 93784)
        self.assertEqual(cli.parseDuration("90", "x", problems), 90)
        self.assertIsNone(cli.parseDuration("1w", "x", problems))
        self.assertEqual(list(problems.fields), ["x"])

    def test_everySubcommandHasAnExample(self) -> None:
        parser = buildParser()
        for action in ("add", "list", "show", "update", "remove", "enable", "disable",
                       "run-now"):
            sub = parser._subparsers._group_actions[0].choices["schedule"]  # type: ignore
            child = sub._subparsers._group_actions[0].choices[action]
            self.assertIn("example: backupremote schedule " + action, child.epilog or "")


class StoreCommandTests(SynchronousTestCase):
    """list, show, enable, disable and remove: the store alone."""

    def setUp(self) -> None:
        self.schedules = ScheduleStore(MemoryClientStore())
        self.config = ClientConfig(clientId="c", secretFile=FilePath("s"),
                                   licenseFile=FilePath("l"),
                                   server=ServerAddress("127.0.0.1", 1))
        self.successResultOf(self.schedules.add(Schedule(
            id="11111111-2222-4333-8444-555555555555", name="nightly",
            rule=Daily((time(2, 30),)), zone="Europe/Berlin", database="db-1",
            destinations=("nas",), options=BackupOptions(compression="xz")), NOW))

    def invoke(self, command: Any, *argv: str, asJSON: bool = False) -> tuple[int, str]:
        out = io.StringIO()
        code = self.successResultOf(Deferred.fromCoroutine(command(
            self.config, self.schedules, parse(*argv), Output(asJSON, out, io.StringIO()),
            reactor)))
        return code, out.getvalue()

    def test_listShowsNextFireInBothZones(self) -> None:
        code, text = self.invoke(cli.listCommand, "list")
        self.assertEqual(code, 0)
        self.assertIn("nightly", text)
        self.assertIn("(Europe/Berlin)", text)
        code, text = self.invoke(cli.listCommand, "list", asJSON=True)
        (entry,) = json.loads(text)
        self.assertEqual(entry["rule"], {"kind": "daily", "times": ["02:30"]})
        self.assertTrue(entry["nextFire"].endswith(":30:00Z"))
        self.assertTrue(entry["nextFireInZone"].endswith("+01:00"))

    def test_disableEnableRemove(self) -> None:
        code, text = self.invoke(cli._enabling(False), "disable", "nightly", asJSON=True)
        self.assertEqual((json.loads(text)["enabled"], json.loads(text)["nextFire"]),
                         (False, None))
        code, text = self.invoke(cli._enabling(True), "enable", "nightly", asJSON=True)
        self.assertEqual(json.loads(text)["revision"], 3)
        code, text = self.invoke(cli.showCommand, "show", "nightly")
        self.assertIn("options:      xz", text)
        self.invoke(cli.removeCommand, "remove", "nightly")
        self.assertEqual(self.successResultOf(self.schedules.list()), [])


class RefusalCountTests(SynchronousTestCase):
    """Refused creations and updates are counted in the store, for the daemon's metrics."""

    def setUp(self) -> None:
        self.schedules = ScheduleStore(MemoryClientStore())
        self.config = ClientConfig(clientId="c", secretFile=FilePath("s"),
                                   licenseFile=FilePath("l"),
                                   server=ServerAddress("127.0.0.1", 1))

    def refuse(self, op: str, command: Any, *argv: str) -> None:
        counted = cli._countingRefusals(op, command)
        failure = self.failureResultOf(Deferred.fromCoroutine(counted(
            self.config, self.schedules, parse(*argv), Output(False, io.StringIO(),
                                                              io.StringIO()), reactor)))
        self.assertEqual(failure.value.code, VALIDATION_FAILED)

    def test_refusedAddAndUpdateAreCounted(self) -> None:
        self.refuse("create", cli.addCommand, "add", "bad", "--db", "db-1",
                    "--cron", "61 * * * *")
        self.refuse("create", cli.addCommand, "add", "bad", "--db", "db-1",
                    "--every", "30s")
        self.successResultOf(self.schedules.add(Schedule(
            id="11111111-2222-4333-8444-555555555555", name="nightly",
            rule=Daily((time(2, 30),)), zone="Europe/Berlin", database="db-1"), NOW))
        self.refuse("update", cli.updateCommand, "update", "nightly", "--tz", "Mars/Olympus")
        self.assertEqual(self.successResultOf(self.schedules.rejections()),
                         {"create": 2, "update": 1})
