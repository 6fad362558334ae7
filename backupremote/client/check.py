"""
What ``backupremote check`` finds: everything a client's runs need, checked
now, without the daemon (like pgBackRest's ``check``).

    checker = Checker(reactor, servers, config.serverEntries, registry)
    report = await checker.run()          # a CheckReport: one Finding per check
    report.blockers                       # anything that stops a backup

For each server of client.toml: reachable over TLS with the pinned
certificate (or the CA file), logged in, the licence valid and its days
left, the clocks of both machines compared (the C{serverTime} of
``capabilities``), each database configuration's connection test and
preflight, run on the server. For each named destination: its connection
test (log in, identity checked, a probe file written and removed).

A finding is C{ok}, a C{warning} (a backup can run, someone should look)
or a C{blocker}; a finding that is not C{ok} carries a registry code, and
its action is the registry's (L{backupremote.protocol.errors}), or the
error's own hint where the code that raised it knew a better one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from attrs import define, frozen
from twisted.internet.defer import Deferred, TimeoutError, gatherResults
from twisted.internet.interfaces import IReactorTime

from backupremote.client.api import BackupRemoteClient
from backupremote.client.config import ServerEntry
from backupremote.client.destinations.registry import DestinationRegistry
from backupremote.client.destinations.stored import StoredDestination
from backupremote.client.expiry import describeExpiry, expiryOf
from backupremote.client.notify.defaults import LICENSE_DAYS
from backupremote.client.notify.license import warningTier
from backupremote.protocol.databases import DatabaseConfig
from backupremote.protocol.errors import (
    CLOCK_SKEW,
    INTERNAL_ERROR,
    LICENSE_EXPIRING,
    LICENSE_FEATURE_MISSING,
    TIMEOUT,
    BackupRemoteError,
    lookup,
)

UTC = timezone.utc

OK = "ok"
WARNING = "warning"
BLOCKER = "blocker"

#: Clock skew (seconds) beyond which check warns, and beyond which it blocks.
SKEW_WARNING = 2.0
SKEW_BLOCKER = 300.0
#: Seconds a destination's connection test may take.
DESTINATION_TIMEOUT = 120.0

#: The checks, in the order the report lists them.
CONFIG, SERVER, LICENCE, CLOCK, DATABASE, PREFLIGHT, DESTINATION = (
    "config", "server", "licence", "clock", "database", "preflight", "destination")


@frozen
class Finding:
    """
    What one check found about one thing.

    @ivar check: which check (L{CONFIG}, L{SERVER}, L{LICENCE}, L{CLOCK},
        L{DATABASE}, L{PREFLIGHT}, L{DESTINATION}).
    @ivar subject: what was checked: the file, a server's name,
        C{SERVER/CONFIGURATION}, a destination's name.
    @ivar code: the registry code of a warning or blocker.
    @ivar hint: a better action than the registry's for this case, if the
        code that raised the error knew one.
    """

    check: str
    subject: str
    status: str
    detail: str
    code: str | None = None
    hint: str | None = None

    @property
    def action(self) -> str | None:
        """What to do: the hint, else the registry's action for the code."""
        if self.status == OK or self.code is None:
            return None
        return self.hint or lookup(self.code).action

    @classmethod
    def fromError(cls, check: str, subject: str, error: BackupRemoteError,
                  status: str = BLOCKER, prefix: str = "") -> Finding:
        return cls(check, subject, status, prefix + error.message, error.code, error.hint)

    def asJSON(self) -> dict[str, Any]:
        return {"check": self.check, "subject": self.subject, "status": self.status,
                "detail": self.detail, "errorCode": self.code, "action": self.action}


@frozen
class CheckReport:
    """Every finding, in the order of the checks."""

    findings: tuple[Finding, ...]

    @property
    def blockers(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.status == BLOCKER)

    @property
    def warnings(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.status == WARNING)

    @property
    def ok(self) -> bool:
        """Whether nothing blocks a backup (warnings allowed)."""
        return not self.blockers

    def asJSON(self) -> dict[str, Any]:
        return {"ok": self.ok, "blockers": len(self.blockers), "warnings": len(self.warnings),
                "checks": [finding.asJSON() for finding in self.findings]}


def clockFinding(server: str, sentAt: float, answeredAt: float,
                 serverTime: datetime | None) -> Finding:
    """
    The skew between the client's clock and C{serverTime}, told between
    C{sentAt} and C{answeredAt} (client seconds): the server's instant is
    compared with the middle of the round trip, and only what exceeds half
    the round trip (the measure's uncertainty) counts against the limits.
    """
    if serverTime is None:
        return Finding(CLOCK, server, WARNING, "the server does not tell its time (a server "
                       "older than capabilities' serverTime): the skew is not known")
    roundTrip = max(0.0, answeredAt - sentAt)
    skew = serverTime.timestamp() - (sentAt + answeredAt) / 2
    beyond = abs(skew) - roundTrip / 2
    said = (f"the server's clock is {abs(skew):.3f} s {'ahead of' if skew >= 0 else 'behind'} "
            f"this client's (+/- {roundTrip / 2:.3f} s)")
    if beyond > SKEW_BLOCKER:
        return Finding(CLOCK, server, BLOCKER, said + f": more than {SKEW_BLOCKER:.0f} s",
                       CLOCK_SKEW)
    if beyond > SKEW_WARNING:
        return Finding(CLOCK, server, WARNING, said + f": more than {SKEW_WARNING:.0f} s",
                       CLOCK_SKEW)
    return Finding(CLOCK, server, OK, said)


def licenceFinding(server: str, expiresAt: datetime | None, now: datetime,
                   thresholds: Sequence[int] = LICENSE_DAYS) -> Finding:
    """The licence a server granted: C{ok}, or a warning within the largest threshold."""
    said = "valid, " + describeExpiry(expiresAt, now)
    if expiresAt is not None and warningTier(expiresAt, now, thresholds) is not None:
        return Finding(LICENCE, server, WARNING, said, LICENSE_EXPIRING)
    return Finding(LICENCE, server, OK, said)


def describeConnection(entry: ServerEntry) -> str:
    """How the server's identity is checked: the pinned fingerprint(s) or the CA file."""
    if entry.fingerprints:
        first = entry.fingerprints[0]
        more = f" (+{len(entry.fingerprints) - 1} more)" if len(entry.fingerprints) > 1 else ""
        return f"TLS, certificate pinned {first[:11]}...{first[-5:]}{more}"
    if entry.caFile is not None:
        return f"TLS, certificate verified with {entry.caFile.path}"
    return "TLS"


@define
class Checker:
    """
    Runs the checks against C{servers} (C{servers(name)}: the library client
    of each; the names are C{entries}'s) and C{destinations}; each check's
    failure is a finding, never an exception.

    @ivar licenseDays: the licence is a warning within the largest of these
        days (C{[notify] license_days}; 30, 7, 1 by default).
    @ivar databases: run each configuration's connection test and preflight.
    """

    clock: IReactorTime
    servers: Callable[[str], BackupRemoteClient]
    entries: Mapping[str, ServerEntry]
    destinations: DestinationRegistry | None = None
    licenseDays: Sequence[int] = LICENSE_DAYS
    databases: bool = True

    def run(self) -> Deferred[CheckReport]:
        """Every check: the servers side by side, then the destinations side by side."""
        return Deferred.fromCoroutine(self._run())

    async def _run(self) -> CheckReport:
        perServer = await gatherResults(
            [Deferred.fromCoroutine(self.checkServer(name)) for name in sorted(self.entries)],
            consumeErrors=True)
        findings = [finding for findings in perServer for finding in findings]
        if self.destinations is not None:
            findings += await self.checkDestinations(self.destinations)
        return CheckReport(tuple(findings))

    def _seconds(self) -> float:
        return self.clock.seconds()

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._seconds(), UTC)

    async def checkServer(self, name: str) -> list[Finding]:
        """Connection, login and licence, clock, then each database configuration."""
        entry = self.entries[name]
        try:
            client = self.servers(name)
            session = await client.session()
        except BackupRemoteError as error:
            return [Finding.fromError(SERVER, name, error, prefix=f"{entry.address}: ")]
        findings = [Finding(SERVER, name, OK, (
            f"{entry.address}: connected ({describeConnection(entry)}), logged in as "
            f"{entry.clientId}, server {session.get('serverVersion') or '?'}"))]
        findings.append(licenceFinding(name, expiryOf(session), self._now(), self.licenseDays))
        findings.append(await self._clock(name, client))
        if self.databases:
            findings += await self._databases(name, client)
        return findings

    async def _clock(self, name: str, client: BackupRemoteClient) -> Finding:
        sentAt = self._seconds()
        try:
            capabilities = await client.capabilities()
        except BackupRemoteError as error:
            return Finding.fromError(CLOCK, name, error, WARNING,
                                     "cannot ask the server's time: ")
        return clockFinding(name, sentAt, self._seconds(), capabilities.serverTime)

    async def _databases(self, server: str, client: BackupRemoteClient) -> list[Finding]:
        try:
            configs = await client.allDatabaseConfigs()
        except BackupRemoteError as error:
            return [_remoteFinding(DATABASE, server, error, "cannot list the configurations: ")]
        if not configs:
            return [Finding(DATABASE, server, OK,
                            "no database configuration on this server for this client")]
        findings = []
        for config in sorted(configs, key=lambda c: c.name):
            findings += await self._database(server, client, config)
        return findings

    async def _database(self, server: str, client: BackupRemoteClient,
                        config: DatabaseConfig) -> list[Finding]:
        subject = f"{server}/{config.name}"
        try:
            result = await client.testDatabaseConnection(configId=config.id)
        except BackupRemoteError as error:
            return [_remoteFinding(DATABASE, subject, error)]
        if not result.ok:
            # the preflight would say the same again: the test's reason is the blocker
            return [Finding(DATABASE, subject, BLOCKER, f"{config.engine}: {result.message}",
                            result.reason or INTERNAL_ERROR)]
        said = [f"{config.engine}: connection ok", result.serverVersion or "unknown version"]
        if result.latencyMs is not None:
            said.append(f"{result.latencyMs:.0f} ms")
        findings = [Finding(DATABASE, subject, OK, ", ".join(said))]
        try:
            report = await client.preflight(config.id)
        except BackupRemoteError as error:
            return findings + [_remoteFinding(PREFLIGHT, subject, error)]
        findings += [Finding(PREFLIGHT, subject, BLOCKER, f.message, f.code)
                     for f in report.blockers]
        findings += [Finding(PREFLIGHT, subject, WARNING, f.message, f.code)
                     for f in report.warnings]
        if report.ok and not report.warnings:
            tool = f" with {report.dumpTool.path.strip('()')} {report.dumpTool.version}" \
                if report.dumpTool else ""
            findings.append(Finding(PREFLIGHT, subject, OK, f"ready to back up{tool}"))
        return findings

    async def checkDestinations(self, registry: DestinationRegistry) -> list[Finding]:
        """Each named destination's connection test, side by side."""
        try:
            stored = await registry.list()
        except BackupRemoteError as error:
            return [Finding.fromError(DESTINATION, "(all)", error,
                                      prefix="cannot list the destinations: ")]
        tests = [Deferred.fromCoroutine(self._destination(registry, destination))
                 for destination in sorted(stored, key=lambda d: d.name)]
        return list(await gatherResults(tests, consumeErrors=True))

    async def _destination(self, registry: DestinationRegistry,
                           stored: StoredDestination) -> Finding:
        try:
            destination = await registry.open(stored)
        except BackupRemoteError as error:
            return Finding.fromError(DESTINATION, stored.name, error, prefix=f"{stored.url}: ")
        try:
            await _within(destination.testConnection(),
                          self.clock, DESTINATION_TIMEOUT,
                          f"the connection test of {stored.url}")
        except BackupRemoteError as error:
            return Finding.fromError(DESTINATION, stored.name, error)
        except Exception as error:
            return Finding(DESTINATION, stored.name, BLOCKER, f"unexpected: {error!r}",
                           INTERNAL_ERROR)
        finally:
            await destination.close()
        return Finding(DESTINATION, stored.name, OK, (
            f"{destination.location}: logged in, identity checked, probe file written "
            "and removed"))


def _remoteFinding(check: str, subject: str, error: BackupRemoteError,
                   prefix: str = "") -> Finding:
    """A refusal of the server's: a licence without the feature cannot check (a warning)."""
    status = WARNING if error.code == LICENSE_FEATURE_MISSING else BLOCKER
    return Finding.fromError(check, subject, error, status, prefix)


async def _within(work: Awaitable[Any], clock: IReactorTime, seconds: float,
                  what: str) -> Any:
    """C{work}, or C{TIMEOUT} naming C{what} after C{seconds}."""
    deferred = Deferred.fromCoroutine(_awaited(work))
    deferred.addTimeout(seconds, clock)
    try:
        return await deferred
    except TimeoutError:
        raise BackupRemoteError(TIMEOUT, f"{what} took more than {seconds:.0f} s") from None


async def _awaited(work: Awaitable[Any]) -> Any:
    return await work
