"""
Checking a database configuration before anything is stored or run.

Every field is checked; all problems are reported at once, each under its
field name, in one C{VALIDATION_FAILED}. A database file path must resolve
(links followed) under one of the roots the server's operator allows, so a
client can never make the server read an arbitrary file.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping, Sequence

from attrs import evolve
from twisted.python.filepath import FilePath

from backupremote.protocol.databases import DatabaseConfigInput
from backupremote.protocol.errors import VALIDATION_FAILED, BackupRemoteError
from backupremote.protocol.options import (
    CHECKSUMS,
    VERIFICATIONS,
    BackupOptions,
)
from backupremote.server.engines.base import FieldProblems, IEngine
from backupremote.server.machinery.compressors import COMPRESSORS

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}")
HOSTNAME = re.compile(r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*\.?")
USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@$-]{0,127}")
DATABASE = re.compile(r"[A-Za-z0-9_$][A-Za-z0-9_$.-]{0,127}")
#: A database on a Firebird server: an alias or a path there. Like the other
#: engines' names it cannot start with "." or "-" (nor ":"), and no path
#: component may be "..", whether "/" or ":" (a drive's) stands either side.
REMOTE_DATABASE = re.compile(r"(?!.*(?:^|[/:])\.\.(?:$|[/:]))[A-Za-z0-9_$/][A-Za-z0-9_$/. :-]{0,254}")
SCRIPT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MAX_PASSWORD = 1024
#: The longest database file path (Linux's PATH_MAX, in characters)
MAX_PATH = 4096
#: C0 control characters and DEL: refused in a path (NUL, newlines, escapes)
CONTROL = re.compile(r"[\x00-\x1f\x7f]")

MIN_TIMEOUT, MAX_TIMEOUT = 60, 7 * 86400


def _checkHost(host: str | None, problems: FieldProblems) -> None:
    if host is None:
        return
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not HOSTNAME.fullmatch(host):
            problems.add("host", "must be a host name or an IP address")


def _checkText(value: str | None, pattern: re.Pattern[str], name: str, what: str,
               problems: FieldProblems) -> None:
    if value is not None and not pattern.fullmatch(value):
        problems.add(name, what)


def checkBackupOptions(options: BackupOptions, engine: IEngine, problems: FieldProblems,
                       prefix: str = "backup.") -> None:
    """The problems of C{options} for a database of C{engine}."""
    if options.format is not None and options.format not in engine.formats:
        allowed = ", ".join(engine.formats) or "none"
        problems.add(prefix + "format", f"must be one of: {allowed}")
    if options.compression not in COMPRESSORS:
        problems.add(prefix + "compression", f"must be one of: {', '.join(COMPRESSORS)}")
    elif options.level is not None:
        levels = COMPRESSORS[options.compression].levels
        if levels is None:
            problems.add(prefix + "level", "must be empty without compression")
        elif not levels[0] <= options.level <= levels[1]:
            problems.add(prefix + "level", f"must be {levels[0]}..{levels[1]} "
                                           f"for {options.compression}")
    if not 0 <= options.threads <= 256:
        problems.add(prefix + "threads", "must be 0 (all cores) to 256")
    if options.checksum not in CHECKSUMS:
        problems.add(prefix + "checksum", f"must be one of: {', '.join(CHECKSUMS)}")
    if options.verification not in VERIFICATIONS:
        problems.add(prefix + "verification", f"must be one of: {', '.join(VERIFICATIONS)}")
    _checkText(options.postScript, SCRIPT_NAME, prefix + "postScript",
               "must be the name of a script in the server's allowlist (letters, "
               "digits, '.', '_', '-'), not a path", problems)
    if not MIN_TIMEOUT <= options.timeoutSeconds <= MAX_TIMEOUT:
        problems.add(prefix + "timeoutSeconds", f"must be {MIN_TIMEOUT}..{MAX_TIMEOUT}")


def resolveUnderRoots(path: str, roots: Sequence[FilePath]) -> str | None:
    """
    C{path} with every link resolved, if that lies under one of C{roots}
    (themselves resolved); else C{None}.
    """
    if not os.path.isabs(path) or "\x00" in path:
        return None
    real = os.path.realpath(path)
    for root in roots:
        top = os.path.realpath(root.path)
        if os.path.commonpath([top, real]) == top and real != top:
            return real
    return None


def validateConfig(
    config: DatabaseConfigInput, roots: dict[str, Sequence[FilePath]],
    engines: Mapping[str, IEngine],
) -> DatabaseConfigInput:
    """
    C{config} checked and normalised (default port, resolved path), or a
    C{VALIDATION_FAILED} naming every bad field.
    """
    problems = FieldProblems()
    _checkText(config.name, NAME, "name",
               "must be 1-64 letters, digits, spaces, '.', '_' or '-', starting "
               "with a letter or digit", problems)
    engine = engines.get(config.engine)
    if engine is None:
        problems.add("engine", f"must be one of: {', '.join(engines)}")
        raise _failed(problems)
    _checkHost(config.host, problems)
    if config.port is not None and not 1 <= config.port <= 65535:
        problems.add("port", "must be 1..65535")
    pattern = REMOTE_DATABASE if config.engine == "firebird" else DATABASE
    _checkText(config.database, pattern, "database", "is not a valid database name", problems)
    _checkText(config.user, USER, "user", "is not a valid user name", problems)
    if config.password is not None and (not config.password or len(config.password) > MAX_PASSWORD
                                        or "\x00" in config.password):
        problems.add("password", f"must be 1 to {MAX_PASSWORD} characters, without NUL "
                                 "(use removePassword to drop it)")
    if config.removePassword and config.password is not None:
        problems.add("removePassword", "cannot be set together with a new password")
    for key, value in config.options.items():
        if key not in engine.optionNames:
            problems.add(f"options.{key}", f"is not an option of {config.engine}")
        elif len(value) > 256 or "\x00" in value:
            problems.add(f"options.{key}", "must be at most 256 characters")
    engine.validate(config, problems)
    checkBackupOptions(config.backup, engine, problems)
    if config.path is not None and (not config.path or len(config.path) > MAX_PATH
                                    or CONTROL.search(config.path)):
        problems.add("path", f"must be 1 to {MAX_PATH} characters, without control "
                             "characters (newline, tab, NUL...)")
    resolved = config.path
    if config.path is not None and "path" not in problems.fields:
        allowed = roots.get(config.engine, ())
        resolved = resolveUnderRoots(config.path, allowed)
        if resolved is None:
            problems.add("path", "must be an absolute path under one of the folders the "
                                 "server allows for this engine (its operator sets "
                                 f"{config.engine}_roots in server.toml)")
    if problems:
        raise _failed(problems)
    port = config.port
    if port is None and config.host is not None:
        port = engine.defaultPort
    return evolve(config, port=port, path=resolved)


def _failed(problems: FieldProblems) -> BackupRemoteError:
    listed = "; ".join(f"{name} {problem}" for name, problem in sorted(problems.fields.items()))
    return BackupRemoteError(
        VALIDATION_FAILED, f"invalid configuration: {listed}",
        details={"fields": dict(sorted(problems.fields.items()))},
    )
