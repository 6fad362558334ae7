"""How the CLI speaks: JSON for scripts, plain sentences for people."""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from backupremote.protocol.errors import (
    AUTH_FAILED,
    AUTH_RATE_LIMITED,
    CONFIG_INVALID,
    CONNECTION_FAILED,
    INTERNAL_ERROR,
    TIMEOUT,
    BackupRemoteError,
    lookup,
)

#: Exit codes by error class (documented in docs/cli.md).
EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_CONFIG = 3
EXIT_AUTH = 4
EXIT_CONNECTION = 5
EXIT_REFUSED = 6
EXIT_INTERRUPTED = 130


class _Converter:
    """
    The wire converter, imported when first used: it brings AMP and the
    reactor's modules, which C{--help} and the local commands do without.
    """

    def unstructure(self, value: Any) -> Any:
        from backupremote.protocol.structured import converter

        return converter.unstructure(value)


converter = _Converter()


def whatToDo(code: str | None, indent: str = "  ") -> str:
    """
    The line that follows an error code a result prints (a run's error, a
    failed connection test, a preflight finding, a delivery's failure): the
    registry's action for it, as errors print theirs; nothing without a code.
    """
    if not code:
        return ""
    return f"\n{indent}what to do: {lookup(code).action}"


def exitCodeFor(error: BackupRemoteError) -> int:
    """Distinct exit codes per error class, so scripts can branch."""
    if error.code == CONFIG_INVALID:
        return EXIT_CONFIG
    if error.code in (AUTH_FAILED, AUTH_RATE_LIMITED) or error.code.startswith("LICENSE_"):
        return EXIT_AUTH
    if error.code in (CONNECTION_FAILED, TIMEOUT) or error.code.startswith("TLS_"):
        return EXIT_CONNECTION
    if error.code == INTERNAL_ERROR:
        return EXIT_INTERNAL
    return EXIT_REFUSED


class Output:
    """Writes results and errors in the chosen form."""

    def __init__(self, asJSON: bool, out: TextIO | None = None, err: TextIO | None = None,
                 quiet: bool = False, verbose: bool = False) -> None:
        self.asJSON = asJSON
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        #: no progress and no notes (C{--quiet})
        self.quiet = quiet
        #: what happens underneath too (C{--verbose})
        self.verbose = verbose
        #: with C{--json}: one compact object per line, as they come
        #: (progress lines first, the result last)
        self.jsonLines = False

    @property
    def showsProgress(self) -> bool:
        """Whether progress is drawn: for people, unless C{--quiet}."""
        return not (self.asJSON or self.quiet)

    def note(self, text: str) -> None:
        """A line for people on stderr (not with C{--json} or C{--quiet})."""
        if self.showsProgress:
            self.err.write(text.rstrip("\n") + "\n")
            self.err.flush()

    def interrupted(self) -> None:
        """Say that Ctrl-C ended the command (exit code 130)."""
        if not self.asJSON:
            self.err.write("\ninterrupted\n")
            self.err.flush()

    def jsonLine(self, value: Any) -> None:
        """One JSON object on a line of its own (C{--json} progress), flushed at once."""
        self.out.write(json.dumps(converter.unstructure(value), sort_keys=True,
                                  separators=(",", ":")) + "\n")
        self.out.flush()

    def result(self, value: Any, human: str) -> None:
        if self.asJSON and self.jsonLines:
            self.jsonLine(value)
        elif self.asJSON:
            self.out.write(json.dumps(converter.unstructure(value), indent=2, sort_keys=True) + "\n")
        else:
            self.out.write(human.rstrip("\n") + "\n")

    def error(self, error: BackupRemoteError) -> int:
        if self.asJSON:
            self.err.write(json.dumps({
                "errorCode": error.code,
                "errorMessage": error.message,
                "requestId": error.requestId,
                "action": error.action,
                "details": error.details,
            }, sort_keys=True) + "\n")
        else:
            where = f" (request {error.requestId})" if error.requestId else ""
            self.err.write(f"error {error.code}: {error.message}{where}\n")
            for field, problem in sorted(error.details.get("fields", {}).items()):
                self.err.write(f"  {field}: {problem}\n")
            self.err.write(f"what to do: {error.action}\n")
        return exitCodeFor(error)
