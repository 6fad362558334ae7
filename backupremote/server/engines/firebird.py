"""
Firebird: a local database file (embedded access) or a Firebird server.

Two forms of configuration:

  - B{embedded}: C{path} names a database file on this server (resolved
    under the operator's roots by the common validator). The Firebird tools
    open it with their own embedded engine: no Firebird server, no
    password (embedded access ignores passwords, so giving one is refused
    rather than silently unused). C{user} is the Firebird user the session
    runs as; it defaults to C{SYSDBA}, the one user who may read (and so
    back up) every object. C{host}, C{port} and C{database} do not apply.
  - B{server}: C{host} (C{port}, default 3050) and C{database}, a path or
    an alias on that server, with C{user} (required) and usually a
    password.

Options: C{charset} (the connection character set, e.g. C{UTF8}) and
C{role} (an SQL role to connect with).

The tools read the user and password from C{ISC_USER} and C{ISC_PASSWORD}
in their environment, so a password never appears on a command line. The
probe runs C{isql-fb} (Debian's name; C{isql} elsewhere, accepted only if it
says it is Firebird's) with its SQL on stdin; the dump will run C{gbak}.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping

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
    scrub,
)
from backupremote.server.engines.dumps import DumpPlan, EngineCheck
from backupremote.server.machinery.toolfinder import Tool, ToolFinder, parseVersion

DEFAULT_PORT = 3050

#: The user of an embedded session when the configuration names none.
EMBEDDED_USER = "SYSDBA"

#: The probe's client program, by preference.
ISQL_NAMES = ("isql-fb", "isql")

#: Variables of the server's own environment passed on to the Firebird
#: tools: where Firebird is installed, its lock and temp folders. They are
#: operator settings, never secrets. The lock folder in particular must be
#: the one every other engine opening the same files uses (the default is
#: /tmp/firebird): two engines with different lock folders on one file
#: would not see each other's locks and could corrupt it.
PASSED_VARIABLES = ("FIREBIRD", "FIREBIRD_LOCK", "FIREBIRD_TMP", "FIREBIRD_MSG")

CHARSET = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,30}")
ROLE = re.compile(r"[A-Za-z][A-Za-z0-9_$]{0,62}")

#: The probe's SQL, fed on stdin: engine version, then database size.
PROBE_SQL = (
    b"set list on;\n"
    b"select rdb$get_context('SYSTEM', 'ENGINE_VERSION') as br_version from rdb$database;\n"
    b"select mon$page_size * mon$pages as br_size from mon$database;\n"
)
_VERSION_LINE = re.compile(r"^\s*BR_VERSION\s+(\S+)\s*$", re.MULTILINE)
_SIZE_LINE = re.compile(r"^\s*BR_SIZE\s+(\d+)\s*$", re.MULTILINE)


def _anyOf(*patterns: str) -> str:
    return "|".join(patterns)


#: isql/gbak error texts, first match wins (order matters: an "I/O error
#: ... open" is a missing file unless the OS said "Permission denied").
FIREBIRD_ERRORS: tuple[tuple[str, str], ...] = (
    (_anyOf(
        r"user name and password are not defined", r"Error occurred during login",
        r"same as one of the SQL role name", r"login .* is not valid",
    ), DB_AUTH_FAILED),
    (_anyOf(
        r"Unable to complete network request", r"Connection refused",
        r"failed to establish a connection", r"Failed to locate host machine",
        r"Error reading data from the connection", r"Connection reset", r"No route to host",
        r"Network is unreachable", r"connection lost to database",
    ), HOST_UNREACHABLE),
    (_anyOf(
        r"Permission denied", r"no permission for", r"is denied by server administrator",
        r"is not allowed by server configuration", r"Access to .* is denied",
    ), PERMISSION_DENIED),
    (_anyOf(
        r"No such file or directory", r"database .* not found", r"is not a valid database",
        r"File size is less than expected", r"Is a directory", r"Not a directory",
        r"unsupported on-disk structure", r"wrong ODS version",
    ), DATABASE_NOT_FOUND),
)

_SQLSTATE_LINE = re.compile(r"^Statement failed, SQLSTATE = \w+$")
_TOOL_VERSION = re.compile(r"\b[A-Z]{2}-[VTB](\d+\.\d+\.\d+(?:\.\d+)?)")


def classifyFirebirdError(text: str) -> str:
    """The reason code of what a Firebird tool wrote on stderr."""
    return classify(text, FIREBIRD_ERRORS, DB_ERROR)


def isEmbedded(target: Target) -> bool:
    return not target.host


def connectionString(target: Target) -> str:
    """
    What the Firebird tools take as the database: the absolute file path
    (embedded), or C{host/port:database} (an IPv6 address in brackets).
    """
    if isEmbedded(target):
        if not target.path or not os.path.isabs(target.path):
            raise ValueError("an embedded Firebird target needs an absolute path")
        return target.path
    if not target.database:
        raise ValueError("a Firebird server target needs a database")
    host = target.host or ""
    try:
        if ipaddress.ip_address(host).version == 6:
            host = f"[{host}]"
    except ValueError:
        pass
    return f"{host}/{target.port or DEFAULT_PORT}:{target.database}"


def firebirdUser(target: Target) -> str:
    """The Firebird user a session runs as."""
    if target.user:
        return target.user
    return EMBEDDED_USER if isEmbedded(target) else ""


def firebirdEnvironment(target: Target, inherited: Mapping[str, str] | None = None
                        ) -> dict[str, str]:
    """
    The environment of a Firebird tool working on C{target}: the base one,
    the operator's Firebird settings from C{inherited} (default: the
    server's environment), and the credentials as C{ISC_USER} and
    C{ISC_PASSWORD} (server form only: embedded access ignores passwords).
    """
    inherited = os.environ if inherited is None else inherited
    env = baseEnvironment()
    for name in PASSED_VARIABLES:
        if inherited.get(name):
            env[name] = inherited[name]
    user = firebirdUser(target)
    if user:
        env["ISC_USER"] = user
    if target.password and not isEmbedded(target):
        env["ISC_PASSWORD"] = target.password
    return env


def isqlOptions(target: Target) -> list[str]:
    """
    isql's options for C{target}'s charset and role (never a secret). For
    isql only: gbak spells the role C{-ro} (its C{-r} means recreate!) and
    takes no connection charset.
    """
    arguments: list[str] = []
    charset = target.options.get("charset")
    if charset:
        arguments += ["-ch", charset]
    role = target.options.get("role")
    if role:
        arguments += ["-r", role]
    return arguments


def isqlArgv(isql: str, target: Target) -> list[str]:
    """The probe's command line: no user, no password (they are in the environment)."""
    return [isql, "-q", *isqlOptions(target), connectionString(target)]


def toolVersion(text: str) -> str:
    """C{3.0.11.33637} from C{ISQL Version: LI-V3.0.11.33637 Firebird 3.0}."""
    match = _TOOL_VERSION.search(text)
    if match:
        return match.group(1)
    return ".".join(str(part) for part in parseVersion(text))


def isFirebirdTool(versionText: str) -> bool:
    """Whether C{-z} output is a Firebird tool's (unixODBC also ships an C{isql})."""
    return bool(_TOOL_VERSION.search(versionText)) or "firebird" in versionText.lower()


async def findIsql(tools: ToolFinder) -> Tool | None:
    """Firebird's isql on the tool path, with its version."""
    for name in ISQL_NAMES:
        for path in tools.findAll(name):
            text = await tools.version(path, "-z")
            if isFirebirdTool(text):
                return Tool(name, path, toolVersion(text))
    return None


def errorMessage(stderr: str, target: Target) -> str:
    """
    The tool's error lines, joined, without the SQLSTATE noise, without any
    secret, and without the server's resolved path of a local file (the
    design keeps the server's filesystem paths out of messages).
    """
    lines = [line.strip().lstrip("-").strip().rstrip(".") for line in stderr.splitlines()]
    kept = [line for line in lines if line and not _SQLSTATE_LINE.match(line)]
    text = "; ".join(kept[-6:]) or "no error text"
    if isEmbedded(target) and target.path:
        text = text.replace(f'"{target.path}"', target.path).replace(target.path,
                                                                      "[database file]")
    return scrub(text, target.password)


def explain(reason: str) -> str:
    return {
        DB_AUTH_FAILED: "Firebird refused the user name or password",
        HOST_UNREACHABLE: "the Firebird server cannot be reached",
        PERMISSION_DENIED: "access to the Firebird database is denied",
        DATABASE_NOT_FOUND: "the Firebird database does not exist or is not a database",
    }.get(reason, "Firebird error")


@implementer(IEngine)
class FirebirdEngine:
    """Firebird files (embedded) and Firebird servers, through isql and gbak."""

    name = "firebird"
    defaultPort = DEFAULT_PORT
    programs = tuple((program, "-z") for program in (*ISQL_NAMES, "gbak"))
    formats = ("fbk",)
    optionNames = frozenset({"charset", "role"})
    #: wire encryption is the server account's firebird.conf (WireCrypt), no option of ours
    optionsKeepingPassword = frozenset({"charset", "role"})

    def validate(self, config: DatabaseConfigInput, problems: FieldProblems) -> None:
        hasPath = config.path not in (None, "")
        hasServer = config.host not in (None, "") or config.database not in (None, "")
        if hasPath and hasServer:
            message = ("give either path (a local database file) or host and database "
                       "(a Firebird server), not both")
            for field in ("path", "host", "database"):
                if getattr(config, field) not in (None, ""):
                    problems.add(field, message)
        elif hasPath:
            problems.forbid(config, ["port"], "a local Firebird file (embedded access)")
            if config.password not in (None, ""):
                problems.add("password", "is not used for a local Firebird file: embedded "
                                         "access does not check passwords")
        elif hasServer:
            problems.require(config, ["host", "database", "user"], "a Firebird server")
        else:
            problems.add("path", "or host and database is required for firebird")
        charset = config.options.get("charset")
        if charset is not None and not CHARSET.fullmatch(charset):
            problems.add("options.charset", "must be a Firebird character set name, e.g. UTF8")
        role = config.options.get("role")
        if role is not None and not ROLE.fullmatch(role):
            problems.add("options.role", "must be an SQL role name (letters, digits, '_', '$')")

    async def probe(self, target: Target, tools: ToolFinder, reactor: IWorkReactor,
                    timeout: float) -> ConnectionTestResult:
        isql = await findIsql(tools)
        if isql is None:
            return failed(TOOL_MISSING, "Firebird's isql (isql-fb) is not on the server's "
                                        "tool path; install the Firebird utilities "
                                        "(firebird3.0-utils)")
        tool = f"{isql.name} {isql.version}"
        try:
            argv = isqlArgv(isql.path, target)
        except ValueError as error:
            return failed(DATABASE_NOT_FOUND, str(error), tool)
        started = reactor.seconds()
        done = await runProcess(reactor, argv, firebirdEnvironment(target), timeout=timeout,
                                stdin=PROBE_SQL)
        latency = (reactor.seconds() - started) * 1000
        if done.timedOut:
            return failed(TIMEOUT, f"Firebird did not answer within {timeout:g} seconds",
                          tool, latency)
        stdout = done.stdout.decode("utf-8", "replace")
        stderr = done.stderr
        version = _VERSION_LINE.search(stdout)
        if version is None:
            reason = classifyFirebirdError(stderr)
            return failed(reason, f"{explain(reason)}: {errorMessage(stderr, target)}",
                          tool, latency)
        size = _SIZE_LINE.search(stdout)
        where = "local file" if isEmbedded(target) else "server"
        return ConnectionTestResult(
            ok=True, reason=None,
            message=f"Firebird {version.group(1)} ({where}) answered",
            serverVersion=version.group(1), latencyMs=latency,
            sizeBytes=int(size.group(1)) if size else None, tool=tool,
        )

    async def chooseDumpTool(self, tools: ToolFinder, serverVersion: str | None) -> ToolChoice:
        path = tools.find("gbak")
        text = await tools.version(path, "-z") if path is not None else ""
        if path is None or "gbak" not in text.lower():
            raise BackupRemoteError(
                TOOL_MISSING, "Firebird's gbak is not on the server's tool path; install "
                              "the Firebird utilities (firebird3.0-utils)")
        version = toolVersion(text)
        if serverVersion is not None and parseVersion(version)[0] < parseVersion(serverVersion)[0]:
            raise BackupRemoteError(
                TOOL_TOO_OLD, f"gbak {version} is older than the Firebird {serverVersion} "
                              "server; install the utilities of that Firebird version")
        return ToolChoice(name="gbak", path=path, version=version,
                          reason="Firebird's own backup tool; its major version is at least "
                                 "the server's" if serverVersion else
                                 "Firebird's own backup tool")

    async def dumpPlan(self, target: Target, format: str, tools: ToolFinder,
                       serverVersion: str | None) -> DumpPlan:
        gbak = await self.chooseDumpTool(tools, serverVersion)
        # The restore check is embedded (a scratch file in the run folder): the
        # user is SYSDBA, no password; the operator's Firebird settings apply.
        check = EngineCheck(
            description="a gbak restore", head=looksLikeGbakBackup,
            fullArgv=lambda scratch: restoreCheckArgv(gbak.path, scratch),
            fullScratchSuffix=".fdb",
            env=firebirdEnvironment(Target(engine="firebird", path="/")))
        return DumpPlan(
            format=format, extension=".fbk", toolName=f"gbak {gbak.version}", check=check,
            messageOf=lambda text: dumpFailureMessage(text, target),
            argv=dumpArgv(gbak.path, target), env=firebirdEnvironment(target))




# --- Dumps and their checks (the parts of FirebirdEngine.dumpPlan) ----------

#: gbak's file name for its standard output (and input, on restore).
GBAK_STDIO_OUT = "stdout"
GBAK_STDIO_IN = "stdin"


def dumpArgv(gbak: str, target: Target) -> list[str]:
    """
    C{gbak} backing C{target} up to its standard output, without garbage
    collection (C{-g}: a backup should not do the sweeper's work), with the
    role if one is set (C{-ro}; gbak's C{-r} means recreate). User and
    password come from L{firebirdEnvironment}.
    """
    argv = [gbak, "-b", "-g"]
    role = (target.options or {}).get("role")
    if role:
        argv += ["-ro", role]
    return argv + [connectionString(target), GBAK_STDIO_OUT]


def restoreCheckArgv(gbak: str, databasePath: str) -> list[str]:
    """C{gbak} restoring a backup read from stdin into a new local file (embedded)."""
    return [gbak, "-c", GBAK_STDIO_IN, databasePath]


def looksLikeGbakBackup(head: bytes) -> bool:
    """
    Whether C{head} (the first bytes of a stream) starts like a gbak backup:
    the C{rec_burp} record (0) whose first attribute is C{att_backup_format}
    (2), four bytes long, holding a plausible format version.
    """
    if len(head) < 7 or head[0] != 0 or head[1] != 2 or head[2] != 4:
        return False
    return 1 <= int.from_bytes(head[3:7], "little") <= 64


def dumpFailureMessage(stderr: str, target: Target) -> str:
    """What gbak said, for an error message: no noise, no secret, no local path."""
    return errorMessage(stderr, target)
