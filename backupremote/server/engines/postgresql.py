"""
PostgreSQL: connection tests with C{psql}, dumps with the right C{pg_dump}.

The password travels only in the child's environment (C{PGPASSWORD}), never
on a command line. The server's own C{~/.pgpass} is never consulted (it
could hold passwords a client must not borrow), and only TCP is used: a host
that names a Unix socket folder is refused by L{PostgreSQLEngine.validate},
because a local socket could let a client connect as the server's own OS
account through C{peer} authentication.
"""

from __future__ import annotations

import os
import re
from typing import Any

from attrs import frozen
from zope.interface import implementer

from backupremote.childprocess import baseEnvironment, runProcess
from backupremote.protocol.databases import (
    ConnectionTestResult,
    DatabaseConfigInput,
    ToolChoice,
)
from backupremote.protocol.errors import (
    DATABASE_NOT_FOUND,
    DB_AUTH_FAILED,
    DB_ERROR,
    HOST_UNREACHABLE,
    PERMISSION_DENIED,
    TIMEOUT,
    TOOL_MISSING,
    TOOL_TOO_OLD,
    BackupRemoteError,
)
from backupremote.reactors import IWorkReactor
from backupremote.server.engines.base import (
    FieldProblems,
    IEngine,
    Target,
    classify,
    failed,
    lastLines,
    scrub,
)
from backupremote.server.engines.dumps import DumpPlan, EngineCheck
from backupremote.server.machinery.toolfinder import Tool, ToolFinder, parseVersion

NAME = "postgresql"
DEFAULT_PORT = 5432

SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
OPTION_NAMES = ("sslmode", "connect_timeout")
CONNECT_TIMEOUT_RANGE = (1, 300)

#: A path libpq will not find, so that no C{.pgpass} of the server's is read
#: (pointing it at /dev/null makes libpq print a warning).
NO_PASSFILE = "/nonexistent/backupremote-no-pgpass"

#: The probe's query: one row, fields separated by NUL (C{psql -z}).
PROBE_QUERY = (
    "select current_setting('server_version'), version(), "
    "pg_database_size(current_database())"
)

#: libpq and server messages -> reason codes; the first match wins, so the
#: authentication messages (which libpq prefixes with "connection to server
#: ... failed:") come before the network ones.
ERROR_PATTERNS: tuple[tuple[str, str], ...] = (
    (r"password authentication failed", DB_AUTH_FAILED),
    (r"no password supplied", DB_AUTH_FAILED),
    (r"authentication failed for user", DB_AUTH_FAILED),
    (r"(role|user) \".*\" does not exist", DB_AUTH_FAILED),
    (r"database \".*\" does not exist", DATABASE_NOT_FOUND),
    (r"pg_hba\.conf", PERMISSION_DENIED),
    (r"permission denied", PERMISSION_DENIED),
    (r"does not have CONNECT privilege", PERMISSION_DENIED),
    (r"Connection refused", HOST_UNREACHABLE),
    (r"could not translate host name", HOST_UNREACHABLE),
    (r"Name or service not known", HOST_UNREACHABLE),
    (r"Temporary failure in name resolution", HOST_UNREACHABLE),
    (r"Network is unreachable", HOST_UNREACHABLE),
    (r"No route to host", HOST_UNREACHABLE),
    (r"timeout expired", HOST_UNREACHABLE),
    (r"Connection timed out", HOST_UNREACHABLE),
    (r"could not connect to server", HOST_UNREACHABLE),
)


def reasonFor(stderr: str) -> str:
    """The reason code of what C{psql} or C{pg_dump} wrote to stderr."""
    return classify(stderr, ERROR_PATTERNS, DB_ERROR)


def majorOf(version: str | None) -> tuple[int, ...]:
    """
    The PostgreSQL major version in C{version}: C{(15,)} for 15.4, but
    C{(9, 6)} for 9.6.24 (before 10 the major had two parts).
    """
    parts = parseVersion(version or "")
    if parts == (0,):
        # "16beta2", "17devel": no dotted number, the leading one is the major.
        match = re.search(r"\d+", version or "")
        return (int(match.group()),) if match else (0,)
    return parts[:2] if parts[0] < 10 else parts[:1]


def _majorText(major: tuple[int, ...]) -> str:
    return ".".join(str(part) for part in major)


def _shortVersion(text: str) -> str:
    """C{15.18} from C{pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)}."""
    match = re.search(r"\d+(?:\.\d+)+|\d+", text)
    return match.group() if match else text


def _quoteConninfo(value: str) -> str:
    """A libpq connection-string value, quoted."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def connectionArgs(target: Target) -> list[str]:
    """
    The connection arguments of C{psql}, C{pg_dump} and C{pg_restore}:
    C{-h H -p P -U U -d D}, never the password.

    The database name is given as a one-keyword connection string
    (C{dbname='...'}): libpq reads a plain C{-d} value that contains C{=}
    as a whole connection string, which would let a database name set other
    connection parameters.
    """
    args = ["-h", target.host or "", "-p", str(target.port or DEFAULT_PORT)]
    if target.user:
        args += ["-U", target.user]
    if target.database:
        args += ["-d", "dbname=" + _quoteConninfo(target.database)]
    return args


def dumpEnvironment(target: Target) -> dict[str, str]:
    """
    The whole environment of a PostgreSQL client program run for C{target}:
    the server's minimal one, the password (C{PGPASSWORD}) and the options.
    """
    env = baseEnvironment()
    env["PGPASSFILE"] = NO_PASSFILE
    env["PGAPPNAME"] = "backupremote"
    if target.password:
        env["PGPASSWORD"] = target.password
    options = target.options or {}
    if options.get("sslmode"):
        env["PGSSLMODE"] = options["sslmode"]
    if options.get("connect_timeout"):
        env["PGCONNECT_TIMEOUT"] = options["connect_timeout"]
    return env


def probeArgv(psql: str, target: Target) -> list[str]:
    """The C{psql} command line of a connection test."""
    return [
        psql, "-X", "-A", "-t", "-q", "-z", "-w", "-v", "ON_ERROR_STOP=1",
        *connectionArgs(target), "-c", PROBE_QUERY,
    ]


def _toolMessage(text: str, password: str | None) -> str:
    """What a tool wrote, as one scrubbed line without the program's prefix."""
    joined = lastLines(text, 4)
    joined = re.sub(r"^(psql|pg_dump|pg_restore): (error: )?", "", joined)
    return scrub(joined, password)


def _size(count: int) -> str:
    value = float(count)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _isWrapper(path: str) -> bool:
    """Whether C{path} is postgresql-common's C{pg_wrapper} (Debian's /usr/bin/pg_dump)."""
    return os.path.basename(os.path.realpath(path)) == "pg_wrapper"


@implementer(IEngine)
@frozen
class PostgreSQLEngine:
    """PostgreSQL through its own client programs."""

    name: str = NAME
    defaultPort: int = DEFAULT_PORT
    programs: tuple[tuple[str, str], ...] = (
        ("psql", "--version"), ("pg_dump", "--version"), ("pg_restore", "--version"))
    #: custom (pg_restore reads it) first: the default
    formats: tuple[str, ...] = ("custom", "plain")
    optionNames: tuple[str, ...] = OPTION_NAMES
    #: sslmode decides whether the password may travel in clear: changing it asks for it again
    optionsKeepingPassword: frozenset[str] = frozenset({"connect_timeout"})

    def validate(self, config: DatabaseConfigInput, problems: FieldProblems) -> None:
        problems.require(config, ["host", "database", "user"], self.name)
        problems.forbid(config, ["path"], self.name)
        if config.host:
            if config.host.startswith(("/", "@")) or "," in config.host:
                problems.add("host", "must be one host name or IP address "
                             "(Unix socket folders and host lists are not supported)")
            elif re.search(r"[\s\x00-\x1f\x7f]", config.host):
                problems.add("host", "must be a host name or an IP address")
        for field in ("database", "user", "password"):
            value = getattr(config, field)
            if value and "\x00" in value:
                problems.add(field, "must not contain a NUL character")
        if config.port is not None and not 1 <= config.port <= 65535:
            problems.add("port", "must be between 1 and 65535")
        for key, value in (config.options or {}).items():
            where = f"options.{key}"
            if key == "sslmode":
                if value not in SSLMODES:
                    problems.add(where, "must be one of " + ", ".join(SSLMODES))
            elif key == "connect_timeout":
                low, high = CONNECT_TIMEOUT_RANGE
                if not (re.fullmatch(r"[0-9]{1,3}", value or "") and low <= int(value) <= high):
                    problems.add(where, f"must be a whole number of seconds from {low} to {high}")
            else:
                problems.add(where, "is not a PostgreSQL option (allowed: "
                             + ", ".join(OPTION_NAMES) + ")")

    async def probe(self, target: Target, tools: ToolFinder, reactor: IWorkReactor,
                    timeout: float) -> ConnectionTestResult:
        psql = tools.find("psql")
        if psql is None:
            return failed(TOOL_MISSING, "psql (the PostgreSQL client) is not installed in "
                          "the server's tool path")
        toolName = f"psql {_shortVersion(await tools.version(psql))}"
        env = dumpEnvironment(target)
        if "PGCONNECT_TIMEOUT" not in env:
            # Let libpq give up on a silent host before our own deadline, so
            # that the answer says the host did not answer.
            env["PGCONNECT_TIMEOUT"] = str(max(2, int(timeout * 0.8)))
        started = reactor.seconds()
        try:
            done = await runProcess(reactor, probeArgv(psql, target), env, timeout)
        except (OSError, ValueError, TypeError) as error:
            return failed(DB_ERROR, scrub(f"could not run psql: {error}", target.password),
                          toolName)
        latencyMs = max((reactor.seconds() - started) * 1000.0, 0.001)
        if done.timedOut:
            return failed(TIMEOUT, f"no answer from the PostgreSQL server within {timeout:g} s "
                          "(connecting and reading its version)", toolName, latencyMs)
        stderr = done.stderr
        if not done.ok:
            message = _toolMessage(stderr, target.password) or (
                f"psql failed with exit code {done.exitCode}")
            return failed(reasonFor(stderr), message, toolName, latencyMs)
        fields = done.stdout.decode("utf-8", "replace").rstrip("\n").split("\0")
        try:
            serverVersion, fullVersion, size = fields[0].strip(), fields[1].strip(), int(fields[2])
        except (IndexError, ValueError):
            return failed(DB_ERROR, "psql gave an unexpected answer: "
                          + scrub(done.stdout.decode("utf-8", "replace")[:200], target.password),
                          toolName, latencyMs)
        return ConnectionTestResult(
            ok=True, reason=None,
            message=(f"connected to {fullVersion.split(',')[0]} as {target.user!r}, "
                     f"database {target.database!r} ({_size(size)})"),
            serverVersion=serverVersion, latencyMs=latencyMs, sizeBytes=size, tool=toolName,
        )

    async def chooseDumpTool(self, tools: ToolFinder, serverVersion: str | None) -> ToolChoice:
        dumps = await tools.tools("pg_dump")
        if not dumps:
            raise BackupRemoteError(TOOL_MISSING, "pg_dump is not installed in the server's "
                                    "tool path (install the PostgreSQL client programs)")
        serverMajor = majorOf(serverVersion) if serverVersion else None
        order = {tool.path: index for index, tool in enumerate(dumps)}

        def preference(tool: Tool) -> tuple[Any, ...]:
            # Oldest fitting major first; among equals a real binary before
            # the wrapper (whose choice of version may change at run time),
            # then the tool path's order.
            return (majorOf(tool.version), _isWrapper(tool.path), order[tool.path])

        if serverMajor is None or serverMajor == (0,):
            chosen = max(dumps, key=lambda tool: (majorOf(tool.version),
                                                  not _isWrapper(tool.path), -order[tool.path]))
            why = "the newest installed, as the server's version is unknown"
            serverText = "a PostgreSQL server of unknown version"
        else:
            fitting = [tool for tool in dumps if majorOf(tool.version) >= serverMajor]
            if not fitting:
                installed = ", ".join(sorted({_shortVersion(tool.version) for tool in dumps}))
                raise BackupRemoteError(
                    TOOL_TOO_OLD,
                    f"the PostgreSQL server is version {_shortVersion(serverVersion or '')} and "
                    f"needs pg_dump {_majorText(serverMajor)} or newer; the server has only "
                    f"pg_dump {installed}",
                )
            chosen = min(fitting, key=preference)
            serverText = f"a PostgreSQL {_shortVersion(serverVersion or '')} server"
            if majorOf(chosen.version) == serverMajor:
                why = "its major version matches the server's"
            else:
                why = (f"no pg_dump {_majorText(serverMajor)} is installed; this is the oldest "
                       "newer major, which can dump older servers")
        restore = await chooseRestoreTool(tools, chosen)
        via = " (through postgresql-common's pg_wrapper)" if _isWrapper(chosen.path) else ""
        reason = (f"pg_dump {_shortVersion(chosen.version)}{via} for {serverText}: {why}; "
                  f"verification with pg_restore {_shortVersion(restore.version)}")
        return ToolChoice("pg_dump", chosen.path, _shortVersion(chosen.version), reason)

    async def dumpPlan(self, target: Target, format: str, tools: ToolFinder,
                       serverVersion: str | None) -> DumpPlan:
        choice = await self.chooseDumpTool(tools, serverVersion)
        restore = await chooseRestoreTool(tools, Tool("pg_dump", choice.path, choice.version))
        if format == "custom":
            check = EngineCheck(
                description="pg_restore", head=lambda head: head.startswith(b"PGDMP"),
                streamArgv=restoreCheckArgv(restore.path, full=False),
                fullArgv=lambda scratch: restoreCheckArgv(restore.path, full=True),
                env=toolEnvironment())
        else:
            check = EngineCheck(description="the plain dump's trailer",
                                trailer=PLAIN_DUMP_TRAILER)
        return DumpPlan(
            format=format, extension=DUMP_EXTENSIONS[format],
            toolName=f"pg_dump {choice.version}", check=check,
            messageOf=lambda text: dumpFailureMessage(text, target),
            argv=dumpArgv(choice.path, target, format), env=dumpEnvironment(target))


async def chooseRestoreTool(tools: ToolFinder, dump: Tool) -> Tool:
    """
    The C{pg_restore} that verifies archives of C{dump}: the one next to it
    if there is one, else the newest installed; it must not be older.
    """
    restores = await tools.tools("pg_restore")
    if not restores:
        raise BackupRemoteError(TOOL_MISSING, "pg_restore is not installed in the server's tool "
                                "path; it is needed to verify PostgreSQL backups")
    folder = os.path.dirname(dump.path)
    for tool in restores:
        if os.path.dirname(tool.path) == folder and majorOf(tool.version) >= majorOf(dump.version):
            return tool
    newest = max(restores, key=lambda tool: parseVersion(tool.version))
    if majorOf(newest.version) < majorOf(dump.version):
        raise BackupRemoteError(
            TOOL_TOO_OLD,
            f"pg_restore {_shortVersion(newest.version)} cannot read archives of pg_dump "
            f"{_shortVersion(dump.version)}; install pg_restore "
            f"{_majorText(majorOf(dump.version))} or newer",
        )
    return newest




# --- Dumps and their checks (the parts of PostgreSQLEngine.dumpPlan) --------

#: The comment that ends a complete plain-format dump. pg_dump 15.14 and
#: newer print a C{\unrestrict} line after it, so look for it near the end
#: rather than at the very end.
PLAIN_DUMP_TRAILER = b"-- PostgreSQL database dump complete"

#: pg_dump's format flags by backup format. A custom archive is made with
#: C{-Z0}: compression is the pipeline's job (an external multi-threaded
#: compressor is several times faster than pg_dump's own single-threaded
#: zlib), and compression "none" means no compression anywhere.
DUMP_FORMAT_FLAGS: dict[str, tuple[str, ...]] = {
    "custom": ("-Fc", "-Z0"),
    "plain": ("-Fp",),
}

#: File name extension of each format.
DUMP_EXTENSIONS: dict[str, str] = {"custom": ".dump", "plain": ".sql"}


def dumpArgv(pgDump: str, target: Target, format: str) -> list[str]:
    """
    The command line of C{pg_dump} writing C{target}'s database to stdout in
    C{format} ("custom" or "plain"): never a password, never a prompt.
    """
    if format not in DUMP_FORMAT_FLAGS:
        raise ValueError(f"PostgreSQL has no backup format {format!r}")
    return [pgDump, "--no-password", *DUMP_FORMAT_FLAGS[format], *connectionArgs(target)]


def restoreCheckArgv(pgRestore: str, full: bool) -> list[str]:
    """
    C{pg_restore} checking a custom archive read from stdin: C{-l} reads
    the header and the table of contents; C{full} replays every entry, data
    included, into C{/dev/null} (no database is touched).
    """
    return [pgRestore, "-f", "/dev/null"] if full else [pgRestore, "-l"]


def toolEnvironment() -> dict[str, str]:
    """The environment of C{pg_restore} working on a file: no credentials at all."""
    env = baseEnvironment()
    env["PGPASSFILE"] = NO_PASSFILE
    return env


def dumpFailureMessage(stderr: str, target: Target) -> str:
    """What C{pg_dump} or C{pg_restore} said, for an error message: its last lines, scrubbed."""
    return _toolMessage(stderr, target.password)
