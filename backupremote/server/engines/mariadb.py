"""
MariaDB (and MySQL): connection tests with the C{mariadb} client, dumps with
C{mariadb-dump}.

The password is never on a command line nor in the environment: it goes in
an option file made 0600 in a private 0700 folder, named by
C{--defaults-extra-file} (which the clients accept only as their first
argument), and removed as soon as the child has ended. The child's C{HOME}
is that private folder, so that a C{~/.my.cnf} of the server's account is
never read: it would override our password, or lend its own to a
configuration that has none. Connections always use TCP
(C{--protocol=TCP}): C{localhost} would otherwise mean the local socket,
where C{unix_socket} authentication could let a client in as the server's
own OS account.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

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
from backupremote.server.machinery.toolfinder import ToolFinder

NAME = "mariadb"
DEFAULT_PORT = 3306

OPTION_NAMES = ("ssl", "connect_timeout")
BOOLEANS = ("true", "false")
CONNECT_TIMEOUT_RANGE = (1, 300)

#: Client programs, preferred first.
CLIENTS = ("mariadb", "mysql")
DUMPS = ("mariadb-dump", "mysqldump")

#: The version; the size of the tables that are not InnoDB's (exact); the
#: size of the InnoDB table files, which only a user with the global PROCESS
#: privilege may read (else NULL, and never an error); and InnoDB's table
#: statistics, which can lag far behind a bulk load (0 just after one).
PROBE_QUERY = (
    "select version(), "
    "coalesce(sum(if(engine='InnoDB', 0, data_length+index_length)), 0), "
    "if(exists(select 1 from information_schema.user_privileges "
    "where privilege_type='PROCESS'), (select coalesce(sum(file_size), 0) "
    "from information_schema.innodb_sys_tablespaces "
    "where name like concat(replace(database(), '_', '\\_'), '/%')), null), "
    "coalesce(sum(data_length+index_length), 0) "
    "from information_schema.tables where table_schema=database()"
)

#: Client error texts -> reason codes; the first match wins. 1044 (access
#: denied *to a database*) must come before the general "Access denied"
#: of 1045: the password was right, the grant is missing. MariaDB answers
#: 1044 as well when the database does not exist and the user may not know.
ERROR_PATTERNS: tuple[tuple[str, str], ...] = (
    (r"\bERROR 1044\b", PERMISSION_DENIED),
    (r"Access denied for user \S+ to database", PERMISSION_DENIED),
    (r"\bERROR 1045\b", DB_AUTH_FAILED),
    (r"\bERROR 1698\b", DB_AUTH_FAILED),
    (r"Access denied for user", DB_AUTH_FAILED),
    (r"\bERROR 1049\b", DATABASE_NOT_FOUND),
    (r"Unknown database", DATABASE_NOT_FOUND),
    (r"\bERROR (1142|1143|1227)\b", PERMISSION_DENIED),
    (r"command denied to user", PERMISSION_DENIED),
    (r"\bERROR 200[235]\b", HOST_UNREACHABLE),
    (r"Can't connect to", HOST_UNREACHABLE),
    (r"Unknown (MySQL |MariaDB )?server host", HOST_UNREACHABLE),
    (r"Lost connection to (MySQL |MariaDB )?server at '(handshake|reading initial)", HOST_UNREACHABLE),
)


def reasonFor(stderr: str) -> str:
    """The reason code of what the client or the dump tool wrote to stderr."""
    return classify(stderr, ERROR_PATTERNS, DB_ERROR)


_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b"}


def optionValue(value: str) -> str:
    """
    C{value} as a MariaDB/MySQL option-file value: in double quotes, with
    backslash and double quote escaped (and the control characters the
    option-file reader knows, so a newline cannot start a new option).
    """
    return '"' + "".join(_ESCAPES.get(char, char) for char in value) + '"'


def optionFileText(password: str | None) -> str:
    """The content of the option file: a C{[client]} group with the password."""
    lines = ["[client]"]
    if password is not None:
        lines.append("password=" + optionValue(password))
    return "\n".join(lines) + "\n"


@contextmanager
def optionsFile(password: str | None) -> Iterator[str]:
    """
    The path of a fresh option file holding C{password}, for
    C{--defaults-extra-file}; the file (mode 0600) lives in a private folder
    (mode 0700) that is removed when the block ends, however it ends. Use it
    around the whole life of the child, C{await} included::

        with optionsFile(target.password) as path:
            done = await runProcess(reactor, [tool, "--defaults-extra-file=" + path, ...],
                                    clientEnvironment(path), timeout)
    """
    folder = tempfile.mkdtemp(prefix="backupremote-my-")
    try:
        path = os.path.join(folder, "client.cnf")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            os.fchmod(stream.fileno(), 0o600)
            stream.write(optionFileText(password))
        yield path
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def clientEnvironment(optionsPath: str) -> dict[str, str]:
    """The child's environment: the server's minimal one, C{HOME} the private folder."""
    env = baseEnvironment()
    env["HOME"] = os.path.dirname(optionsPath)
    return env


def connectionArgs(target: Target) -> list[str]:
    """
    The connection options shared by the client and the dump tool (which
    both take the database separately), never the password. They go after
    C{--defaults-extra-file}, which must come first.
    """
    args = [
        "--protocol=TCP",
        f"--host={target.host or ''}",
        f"--port={target.port or DEFAULT_PORT}",
    ]
    if target.user:
        args.append(f"--user={target.user}")
    ssl = (target.options or {}).get("ssl")
    if ssl == "true":
        args.append("--ssl")
    elif ssl == "false":
        args.append("--skip-ssl")
    return args


def probeArgv(client: str, optionsPath: str, target: Target, timeout: float) -> list[str]:
    """The client's command line of a connection test."""
    connectTimeout = (target.options or {}).get("connect_timeout") or str(
        max(2, int(timeout * 0.8)))
    return [
        client, f"--defaults-extra-file={optionsPath}", *connectionArgs(target),
        f"--connect-timeout={connectTimeout}", f"--database={target.database or ''}",
        "-N", "-B", "-e", PROBE_QUERY,
    ]


def distribVersion(text: str) -> str:
    """C{10.11.19-MariaDB} from C{mariadb-dump  Ver 10.19 Distrib 10.11.19-MariaDB, for ...}."""
    match = re.search(r"Distrib\s+([^\s,]+)", text)
    if match:
        return match.group(1)
    match = re.search(r"Ver\s+([^\s,]+)", text)
    return match.group(1) if match else text


def _toolMessage(text: str, password: str | None) -> str:
    return lastLines(text, 3, password)


@implementer(IEngine)
@frozen
class MariaDBEngine:
    """MariaDB and MySQL through the MariaDB (or MySQL) client programs."""

    name: str = NAME
    defaultPort: int = DEFAULT_PORT
    programs: tuple[tuple[str, str], ...] = tuple(
        (program, "--version") for program in (*CLIENTS, *DUMPS))
    formats: tuple[str, ...] = ("sql",)
    optionNames: tuple[str, ...] = OPTION_NAMES
    #: ssl decides whether the password may travel in clear: changing it asks for it again
    optionsKeepingPassword: frozenset[str] = frozenset({"connect_timeout"})

    def validate(self, config: DatabaseConfigInput, problems: FieldProblems) -> None:
        problems.require(config, ["host", "database", "user"], self.name)
        problems.forbid(config, ["path"], self.name)
        if config.host and (config.host.startswith("/")
                            or re.search(r"[\s\x00-\x1f\x7f]", config.host)):
            problems.add("host", "must be a host name or an IP address "
                         "(Unix sockets are not supported)")
        for field in ("database", "user", "password"):
            value = getattr(config, field)
            if value and "\x00" in value:
                problems.add(field, "must not contain a NUL character")
        if config.port is not None and not 1 <= config.port <= 65535:
            problems.add("port", "must be between 1 and 65535")
        for key, value in (config.options or {}).items():
            where = f"options.{key}"
            if key == "ssl":
                if value not in BOOLEANS:
                    problems.add(where, 'must be "true" or "false"')
            elif key == "connect_timeout":
                low, high = CONNECT_TIMEOUT_RANGE
                if not (re.fullmatch(r"[0-9]{1,3}", value or "") and low <= int(value) <= high):
                    problems.add(where, f"must be a whole number of seconds from {low} to {high}")
            else:
                problems.add(where, "is not a MariaDB option (allowed: "
                             + ", ".join(OPTION_NAMES) + ")")

    async def probe(self, target: Target, tools: ToolFinder, reactor: IWorkReactor,
                    timeout: float) -> ConnectionTestResult:
        client = next((path for path in map(tools.find, CLIENTS) if path), None)
        if client is None:
            return failed(TOOL_MISSING, "the MariaDB client (mariadb or mysql) is not installed "
                          "in the server's tool path")
        toolName = f"{os.path.basename(client)} {distribVersion(await tools.version(client))}"
        started = reactor.seconds()
        try:
            with optionsFile(target.password) as path:
                done = await runProcess(reactor, probeArgv(client, path, target, timeout),
                                        clientEnvironment(path), timeout)
        except (OSError, ValueError, TypeError) as error:
            return failed(DB_ERROR, scrub(f"could not run the MariaDB client: {error}",
                                          target.password), toolName)
        latencyMs = max((reactor.seconds() - started) * 1000.0, 0.001)
        if done.timedOut:
            return failed(TIMEOUT, f"no answer from the MariaDB server within {timeout:g} s "
                          "(connecting and reading its version)", toolName, latencyMs)
        stderr = done.stderr
        if not done.ok:
            message = _toolMessage(stderr, target.password) or (
                f"the MariaDB client failed with exit code {done.exitCode}")
            if re.search(r"\bERROR 1044\b", stderr):
                message += (" (MariaDB says this also when the database does not exist "
                            "and the user has no right to know)")
            return failed(reasonFor(stderr), message, toolName, latencyMs)
        fields = done.stdout.decode("utf-8", "replace").strip().split("\t")
        try:
            serverVersion, others = fields[0], int(fields[1])
            files = None if fields[2] == "NULL" else int(fields[2])
            statistics = int(fields[3])
        except (IndexError, ValueError):
            return failed(DB_ERROR, "the MariaDB client gave an unexpected answer: "
                          + scrub(done.stdout.decode("utf-8", "replace")[:200], target.password),
                          toolName, latencyMs)
        if files is not None:
            size: int | None = others + files
            sized = f"about {size} bytes: its InnoDB table files and its other tables"
        else:
            # not the statistics: a figure that can be 0 must not feed the
            # disk-space checks
            size = None
            sized = (f"size unknown: InnoDB's table statistics say {statistics} bytes, but "
                     "they can lag far behind recent loads; grant the user the global PROCESS "
                     "privilege for the size of the table files")
        return ConnectionTestResult(
            ok=True, reason=None,
            message=(f"connected to {serverVersion} as {target.user!r}, "
                     f"database {target.database!r} ({sized})"),
            serverVersion=serverVersion, latencyMs=latencyMs, sizeBytes=size, tool=toolName,
        )

    async def chooseDumpTool(self, tools: ToolFinder, serverVersion: str | None) -> ToolChoice:
        for name in DUMPS:
            tool = await tools.tool(name)
            if tool is not None:
                version = distribVersion(tool.version)
                server = f"server {serverVersion}" if serverVersion else "the server"
                reason = (f"{name} {version} for {server}: the first of "
                          f"{', '.join(DUMPS)} installed (any version can dump it)")
                return ToolChoice(name, tool.path, version, reason)
        raise BackupRemoteError(TOOL_MISSING, "neither mariadb-dump nor mysqldump is installed "
                                "in the server's tool path (install the MariaDB client programs)")

    async def dumpPlan(self, target: Target, format: str, tools: ToolFinder,
                       serverVersion: str | None) -> DumpPlan:
        choice = await self.chooseDumpTool(tools, serverVersion)
        resources = ExitStack()
        optionsPath = resources.enter_context(optionsFile(target.password))
        return DumpPlan(
            format=format, extension=".sql", toolName=f"{choice.name} {choice.version}",
            check=EngineCheck(description="the dump's trailer", trailer=DUMP_TRAILER),
            messageOf=lambda text: dumpFailureMessage(text, target),
            argv=dumpArgv(choice.path, optionsPath, target),
            env=clientEnvironment(optionsPath), resources=resources)




# --- Dumps and their checks (the parts of MariaDBEngine.dumpPlan) -----------

#: The comment C{mariadb-dump} (and C{mysqldump}) writes last, only when the
#: dump completed.
DUMP_TRAILER = b"-- Dump completed"

#: What C{mariadb-dump} is told besides the connection: a consistent InnoDB
#: snapshot without locking (C{--single-transaction}), rows streamed rather
#: than buffered (C{--quick}), the stored programs, and binary columns as
#: hex so that the dump survives any character set conversion.
DUMP_OPTIONS = (
    "--single-transaction", "--quick", "--routines", "--events", "--triggers", "--hex-blob",
)


def dumpArgv(dumpTool: str, optionsPath: str, target: Target) -> list[str]:
    """
    The dump tool's command line for C{target}'s database, with the password
    in the option file C{optionsPath} (from L{optionsFile}, first argument).
    The database name follows C{--} so that no name can read as an option.
    """
    return [
        dumpTool, f"--defaults-extra-file={optionsPath}", *connectionArgs(target),
        *DUMP_OPTIONS, "--", target.database or "",
    ]


def dumpFailureMessage(stderr: str, target: Target) -> str:
    """What the dump tool said, for an error message: its last lines, scrubbed."""
    return _toolMessage(stderr, target.password)
