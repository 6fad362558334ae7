"""
What an engine hands the pipeline for one run: a L{DumpPlan}.

Each engine builds its own plan (L{IEngine.dumpPlan}): the program that
writes the backup to its stdout, or a function that writes it into a file
in a thread of the server (SQLite's online backup), and how the artifact
is checked once decompressed (L{EngineCheck}). The pipeline runs any plan
the same way and never asks which engine made it.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack

from attrs import define, field, frozen

from backupremote.protocol.errors import VALIDATION_FAILED, BackupRemoteError
from backupremote.protocol.options import BackupOptions

#: Bytes of the decompressed stream kept for L{EngineCheck.head}.
HEAD_BYTES = 64
#: Bytes at the end of the decompressed stream searched for L{EngineCheck.trailer}.
TAIL_BYTES = 4096


class BackupStopped(Exception):
    """An in-process dump or check was stopped from outside (cancel, timeout)."""


@frozen
class EngineCheck:
    """
    How the decompressed stream is checked (verification "stream" and
    "full"), cheapest first:

      - C{head}: a test of the first L{HEAD_BYTES} bytes;
      - C{trailer}: bytes that must appear in the last L{TAIL_BYTES};
      - C{streamArgv} / C{fullArgv}: a program reading the whole stream on
        stdin, which must exit 0 (C{fullArgv} gets the path of a scratch
        file in the run folder it may create, e.g. a restored database);
      - C{fileCheck}: ("full" only) a blocking function run in a thread on
        the decompressed backup as a file (a scratch copy named with
        C{fullScratchSuffix}, or the artifact itself when uncompressed):
        C{None} if sound, else what is wrong; it raises L{BackupStopped}
        when its C{shouldStop()} turns true.

    C{description} names the check in messages ("pg_restore rejected the
    backup", "SQLite's integrity check of the backup failed").
    """

    description: str
    head: Callable[[bytes], bool] | None = None
    trailer: bytes | None = None
    streamArgv: list[str] | None = None
    fullArgv: Callable[[str], list[str]] | None = None
    fullScratchSuffix: str = ""
    fileCheck: Callable[[str, Callable[[], bool]], str | None] | None = None
    env: dict[str, str] = field(factory=dict)


@frozen
class InProcessDump:
    """
    A dump made by the server itself, in a thread: C{run(path, shouldStop,
    onProgress)} writes the whole backup into the new file C{path}, calls
    C{onProgress(bytesDone, bytesTotal)} as it goes, raises L{BackupStopped}
    once C{shouldStop()} is true, and returns the file's size.

    C{failure(error)} is what an exception of C{run} means for the client
    (C{DUMP_FAILED}, C{DISK_FULL}...), or C{None} for one it does not know
    (raised as it is).
    """

    threadName: str
    run: Callable[[str, Callable[[], bool], Callable[[int, int], None]], int]
    failure: Callable[[BaseException], BackupRemoteError | None]


@define
class DumpPlan:
    """
    One run's dump: a program writing the backup to its stdout (C{argv},
    C{env}; C{messageOf} turns its stderr into an error message), or an
    L{InProcessDump}. C{resources} holds what must live exactly as long as
    the dump (the MariaDB option file) and is closed when the dump ends,
    however.
    """

    format: str
    extension: str
    toolName: str
    check: EngineCheck
    messageOf: Callable[[str], str] = str
    argv: list[str] | None = None
    env: dict[str, str] = field(factory=dict)
    inProcess: InProcessDump | None = None
    resources: ExitStack = field(factory=ExitStack)

    def __attrs_post_init__(self) -> None:
        if (self.argv is None) == (self.inProcess is None):
            raise ValueError("a dump plan has a program (argv) or an in-process dump, "
                             "exactly one")


def chooseFormat(engineName: str, formats: tuple[str, ...], options: BackupOptions) -> str:
    """The format of C{options} among an engine's C{formats}, its first if none is asked."""
    if not formats:
        raise BackupRemoteError(VALIDATION_FAILED, f"no backup formats for {engineName}")
    chosen = options.format or formats[0]
    if chosen not in formats:
        raise BackupRemoteError(
            VALIDATION_FAILED, f"{engineName} backups come in format "
            + " or ".join(formats) + f", not {chosen!r}",
            details={"fields": {"format": "must be one of " + ", ".join(formats)}})
    return chosen
