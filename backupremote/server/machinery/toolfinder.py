"""
Finding the programs the server runs, and their versions.

Only the server's own tool path is searched (``tool_path`` in server.toml,
by default the usual system folders and every installed PostgreSQL's
``bin``); a client can never name a program.
"""

from __future__ import annotations

import glob
import os
import re
from typing import Any, Iterable, Sequence

from attrs import frozen
from twisted.internet.defer import Deferred, gatherResults
from twisted.logger import Logger
from twisted.python.failure import Failure

from backupremote.childprocess import baseEnvironment, runProcess
from backupremote.outcome import Outcome
from backupremote.reactors import IChildReactor

_log = Logger(namespace="backupremote.server.machinery.toolfinder")
_VERSION = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?")


def defaultToolPath() -> tuple[str, ...]:
    """System folders, then each installed PostgreSQL's bin, newest first."""
    pgBins = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: _majorOf(p.split("/")[-2]),
        reverse=True,
    )
    return ("/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", *pgBins)


def _majorOf(text: str) -> int:
    match = re.match(r"\d+", text)
    return int(match.group()) if match else 0


@frozen
class Tool:
    """An installed program and the version it reports."""

    name: str
    path: str
    version: str

    @property
    def major(self) -> int:
        return parseVersion(self.version)[0]

    @property
    def number(self) -> str:
        """Just the version number, e.g. C{"1.5.4"}."""
        return ".".join(map(str, parseVersion(self.version)))


def parseVersion(text: str) -> tuple[int, ...]:
    """The first dotted version number in C{text}; (0,) if none."""
    match = _VERSION.search(text)
    if not match:
        return (0,)
    return tuple(int(part) for part in match.groups() if part is not None)


class ToolFinder:
    """Programs by name on the configured tool path, versions cached."""

    def __init__(self, reactor: IChildReactor, toolPath: Sequence[str]) -> None:
        self._reactor = reactor
        self.toolPath = tuple(toolPath)
        self._versions: dict[str, str] = {}
        #: path -> its version being found out now (every caller waits for that one)
        self._probing: dict[str, Outcome[str]] = {}

    def findAll(self, name: str) -> list[str]:
        """Every executable C{name} on the tool path, in path order, deduplicated."""
        found: list[str] = []
        seen: set[str] = set()
        for folder in self.toolPath:
            candidate = os.path.join(folder, name)
            if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
                real = os.path.realpath(candidate)
                if real not in seen:
                    seen.add(real)
                    found.append(candidate)
        return found

    def find(self, name: str) -> str | None:
        found = self.findAll(name)
        return found[0] if found else None

    async def version(self, path: str, flag: str = "--version") -> str:
        """
        What C{path --version} says (first line), cached per path. Callers
        that ask while it is being found out share its one child: the 10
        runs a client commands at once of a fresh server start one
        C{zstd --version}, not 10 (200 forks at once on 20 such servers
        held each admission up by seconds).
        """
        if path in self._versions:
            return self._versions[path]
        probing = self._probing.get(path)
        if probing is None:
            probing = self._probing[path] = Outcome()

            Deferred.fromCoroutine(self._probe(path, flag)).addBoth(self._settle, path, probing)
        return await probing.when()

    def _settle(self, result: Any, path: str, probing: Outcome[str]) -> None:
        del self._probing[path]
        if isinstance(result, Failure):
            probing.fail(result)  # the next caller tries again
        else:
            probing.succeed(result)

    async def _probe(self, path: str, flag: str) -> str:
        done = await runProcess(self._reactor, [path, flag], baseEnvironment(), timeout=15)
        text = (done.stdout.decode("utf-8", "replace") or done.stderr).strip()
        self._versions[path] = text.splitlines()[0] if text else "unknown"
        return self._versions[path]

    async def warm(self, programs: Iterable[tuple[str, str]]) -> None:
        """
        Ask, all at once, the version of every installed program named in
        C{programs} (name, version flag), so that later callers find it
        cached. The usual rules hold: a program installed later is found
        and asked when a caller wants it, and one whose asking fails is
        asked again by the next caller (each failure is logged here).
        """
        def unanswered(failure: Failure, path: str) -> None:
            _log.failure("could not ask {path} its version", failure, path=path)

        asks: list[Deferred[Any]] = []
        for name, flag in dict.fromkeys(programs):
            for path in self.findAll(name):
                asks.append(Deferred.fromCoroutine(self.version(path, flag)).addErrback(
                    unanswered, path))
        await gatherResults(asks)

    async def tool(self, name: str, flag: str = "--version") -> Tool | None:
        path = self.find(name)
        if path is None:
            return None
        return Tool(name, path, await self.version(path, flag))

    async def tools(self, name: str, flag: str = "--version") -> list[Tool]:
        return [Tool(name, path, await self.version(path, flag)) for path in self.findAll(name)]
