"""
What every database engine provides, behind one interface.

Adding an engine (SQL Server, say) means one module implementing
L{IEngine} (its connection test, its dump plan and its checks) and one line
in L{backupremote.server.engines.defaultEngines}; the pipeline runs any
engine's L{backupremote.server.engines.dumps.DumpPlan} the same way.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

from attrs import field, frozen
from zope.interface import Attribute, Interface

from backupremote.protocol.databases import ConnectionTestResult, DatabaseConfigInput, ToolChoice
from backupremote.reactors import IWorkReactor
from backupremote.server.engines.dumps import DumpPlan
from backupremote.server.machinery.toolfinder import ToolFinder


@frozen
class Target:
    """A configuration made ready to use on the server: password in clear, path checked."""

    engine: str
    host: str | None = None
    port: int | None = None
    database: str | None = None
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    path: str | None = None
    options: dict[str, str] = field(factory=dict)


class FieldProblems:
    """What is wrong with a request, field by field."""

    def __init__(self) -> None:
        self.fields: dict[str, str] = {}

    def add(self, name: str, problem: str) -> None:
        self.fields.setdefault(name, problem)

    def require(self, config: Any, names: Sequence[str], engine: str) -> None:
        for name in names:
            if getattr(config, name) in (None, ""):
                self.add(name, f"is required for {engine}")

    def forbid(self, config: Any, names: Sequence[str], engine: str) -> None:
        for name in names:
            if getattr(config, name) not in (None, ""):
                self.add(name, f"does not apply to {engine}")

    def __bool__(self) -> bool:
        return bool(self.fields)


class IEngine(Interface):
    """A database engine the server can test, preflight, dump and verify."""

    name = Attribute("The engine's name in configurations, e.g. 'postgresql'.")
    formats = Attribute("The backup formats it makes (a tuple of names); the first is "
                        "the default.")
    defaultPort = Attribute("The port used when a config gives none, or None.")
    programs = Attribute(
        "The programs whose version it asks (probe, dump tool, verification), as "
        "(name, version flag) pairs: the server asks them once at start "
        "(L{ToolFinder.warm}), so a run's preflight finds the versions cached.")
    optionNames = Attribute("The engine option keys a configuration may set.")
    optionsKeepingPassword = Attribute(
        "The option keys that change neither where the password goes nor how "
        "securely it travels (timeouts, character sets): a stored configuration "
        "may change them without giving its password again. Every other option "
        "is taken to bear on transport security (TLS), so an option added later "
        "asks for the password again until it is listed here.")

    def validate(config: DatabaseConfigInput, problems: FieldProblems) -> None:
        """Add the engine-specific problems of C{config} (required fields, options)."""

    async def probe(target: Target, tools: ToolFinder, reactor: IWorkReactor,
                    timeout: float) -> ConnectionTestResult:
        """
        Connect to C{target}, read the server version and a size estimate;
        never raise for a database problem, answer it as a reason code.
        """

    async def chooseDumpTool(tools: ToolFinder, serverVersion: str | None) -> ToolChoice:
        """
        The dump program to use for a server of C{serverVersion}; raise
        L{BackupRemoteError} C{TOOL_MISSING} or C{TOOL_TOO_OLD} if none fits.
        """

    # (mypy reads an Interface's methods as a class's: no self, no body)
    async def dumpPlan(target: Target, format: str, tools: ToolFinder,
                       serverVersion: str | None) -> DumpPlan:
        """
        How to dump C{target} in C{format} (one of L{formats}) and check
        the result: the dump tool chosen as L{chooseDumpTool} does, its
        command line and environment (the password never on the command
        line), or an in-process dump. The caller closes the plan's
        C{resources} when the dump has ended.
        """


def classify(message: str, patterns: Sequence[tuple[str, str]], default: str) -> str:
    """The reason code of the first pattern found in C{message} (case-insensitive)."""
    for pattern, code in patterns:
        if re.search(pattern, message, re.IGNORECASE):
            return code
    return default


def failed(reason: str, message: str, tool: str | None = None,
           latencyMs: float | None = None) -> ConnectionTestResult:
    """A failed test result."""
    return ConnectionTestResult(ok=False, reason=reason, message=message,
                                tool=tool, latencyMs=latencyMs)


def scrub(text: str, *secrets: str | None) -> str:
    """C{text} with every non-empty secret replaced, for messages and logs."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def lastLines(text: str, count: int, *secrets: str | None, separator: str = " ") -> str:
    """
    What a program said, for an error message: the last C{count} non-empty
    lines of C{text}, stripped and joined by C{separator}, secrets scrubbed.
    """
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return scrub(separator.join(lines[-count:]), *secrets)
