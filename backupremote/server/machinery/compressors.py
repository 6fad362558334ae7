"""
The compressions the server can apply: one L{ICompressor} per algorithm,
and one table of them, L{COMPRESSORS}.

Each compressor says what it needs and how it is run: its file name
extension, its level range (from the options contract,
L{backupremote.protocol.options.COMPRESSION_LEVELS}), the programs that can
do it (best first) and their command lines with threads, or the transform
that compresses in-process in the sink's thread, and how verification
decompresses it (in the server, or with its program).

External multi-threaded programs are preferred: they read the dump through
an OS pipe, off the reactor, on as many cores as allowed. C{zip} is done
in-process (L{ZipTransform}: zlib releases the GIL while it deflates),
because no zip program can stream a single member from a pipe; C{none} is a
plain copy. zstd is decompressed in the server at verification
(python-zstandard: as fast as C{zstd -t}, where a child writing to a pipe
cost a third more; levels up to 19 keep its window at 8 MiB at most).

Adding a compression: one class here, one line in L{COMPRESSORS}, and its
name (and levels) in the options contract.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Protocol, cast, runtime_checkable

from attrs import frozen

from backupremote.protocol.errors import (
    COMPRESSION_UNAVAILABLE,
    VALIDATION_FAILED,
    BackupRemoteError,
)
from backupremote.protocol.options import COMPRESSION_LEVELS, BackupOptions
from backupremote.server.machinery.toolfinder import Tool, ToolFinder

if TYPE_CHECKING:
    from backupremote.server.pipeline.inspection import ArtifactReader


class Transform(Protocol):
    """An in-process compression: C{feed} the stream, then C{finish}."""

    def feed(self, data: bytes) -> None: ...

    def finish(self) -> None: ...


#: Makes a L{Transform} writing its output to the given C{emit}.
MakeTransform = Callable[[Callable[[bytes], None]], Transform]

#: How verification reads an artifact back and decompresses it in the
#: server: a method of the L{ArtifactReader}, run in a thread on the consumer
#: of the decompressed stream (an inspection C{Consumer}); it returns the
#: artifact's digest.
ReadBack = Callable[..., str]


@runtime_checkable
class ICompressor(Protocol):
    """
    One compression algorithm, as this server does it (a typed Protocol:
    mypy checks every implementation and every call against it).
    """

    #: The compression's name in backup options, e.g. "zstd".
    name: str
    #: What its artifacts' names end with, e.g. ".zst" ("" for none).
    extension: str
    #: The programs that can do it, best first; () if done in-process (or not at all).
    programs: tuple[str, ...]
    #: False for "none": the artifact is the dump itself.
    compresses: bool

    @property
    def levels(self) -> tuple[int, int, int] | None:
        """(lowest, highest, default) level, or None if it has no levels."""

    def compressArgv(self, tool: Tool, level: int, threads: int) -> list[str]:
        """The program C{tool}'s command line, stdin to stdout (C{threads} 0: all cores)."""

    def decompressArgv(self, tool: Tool) -> list[str]:
        """C{tool} decompressing stdin to stdout; it fails on damaged input."""

    def transform(self, memberName: str, level: int) -> MakeTransform | None:
        """The in-process compression of the sink thread, or None (a program, or a copy)."""

    def readBack(self, reader: ArtifactReader) -> ReadBack | None:
        """How verification decompresses in the server, or None: with its program."""


def cpuCount() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)


class _Compressor:
    """What every compressor shares: its names, levels and programs; nothing in-process."""

    name: str
    extension: str
    programs: tuple[str, ...] = ()
    compresses: bool = True

    @property
    def levels(self) -> tuple[int, int, int] | None:
        return COMPRESSION_LEVELS.get(self.name)

    def compressArgv(self, tool: Tool, level: int, threads: int) -> list[str]:
        raise ValueError(f"{self.name} is not done by a program")

    def decompressArgv(self, tool: Tool) -> list[str]:
        return [tool.path, "-d", "-c"]

    def transform(self, memberName: str, level: int) -> MakeTransform | None:
        return None

    def readBack(self, reader: ArtifactReader) -> ReadBack | None:
        return None


class NoCompression(_Compressor):
    """The dump as it is: hashed and written, nothing else."""

    name = "none"
    extension = ""
    compresses = False

    def readBack(self, reader: ArtifactReader) -> ReadBack | None:
        return reader.run


class Gzip(_Compressor):
    """gzip, by pigz on every core allowed, else by gzip on one."""

    name = "gzip"
    extension = ".gz"
    programs: tuple[str, ...] = ("pigz", "gzip")

    def compressArgv(self, tool: Tool, level: int, threads: int) -> list[str]:
        if tool.name == "pigz":
            return [tool.path, "-c", f"-{level}", "-p", str(threads or cpuCount())]
        return [tool.path, "-c", f"-{level}"]


class Zstd(_Compressor):
    """zstd with its own threads; verified in the server, frame by frame."""

    name = "zstd"
    extension = ".zst"
    programs: tuple[str, ...] = ("zstd",)

    def compressArgv(self, tool: Tool, level: int, threads: int) -> list[str]:
        return [tool.path, "-q", "-c", f"-{level}", f"-T{threads}"]

    def decompressArgv(self, tool: Tool) -> list[str]:
        return [tool.path, "-q", "-d", "-c"]

    def readBack(self, reader: ArtifactReader) -> ReadBack | None:
        return reader.runZstd


class Xz(_Compressor):
    """xz with its own threads (about 3 MB/s at level 6: offered, never the default)."""

    name = "xz"
    extension = ".xz"
    programs: tuple[str, ...] = ("xz",)

    def compressArgv(self, tool: Tool, level: int, threads: int) -> list[str]:
        return [tool.path, "-c", f"-{level}", f"-T{threads}"]

    def decompressArgv(self, tool: Tool) -> list[str]:
        return [tool.path, "-d", "-c", "-T0"]


class Zip(_Compressor):
    """A zip archive of one member, made and checked in-process."""

    name = "zip"
    extension = ".zip"

    def transform(self, memberName: str, level: int) -> MakeTransform | None:
        def make(emit: Callable[[bytes], None]) -> Transform:
            return ZipTransform(memberName, level, emit)

        return make

    def readBack(self, reader: ArtifactReader) -> ReadBack | None:
        return reader.runZip


def _table(*compressors: ICompressor) -> dict[str, ICompressor]:
    return {compressor.name: compressor for compressor in compressors}


#: Every compression this server knows, by name, in the contract's order.
COMPRESSORS: dict[str, ICompressor] = _table(NoCompression(), Gzip(), Zstd(), Xz(), Zip())


@frozen
class Compressor:
    """How a compression would be done here: by C{tool}, or in-process if C{None}."""

    compression: str
    tool: Tool | None

    @property
    def description(self) -> str:
        if self.tool is None:
            return "in-process" if self.compression != "none" else "no compression"
        return f"{self.tool.path} ({self.tool.version})"


async def findCompressor(tools: ToolFinder, compression: str) -> Compressor | None:
    """The compressor for C{compression}, or C{None} if it is unknown or its program missing."""
    compressor = COMPRESSORS.get(compression)
    if compressor is None:
        return None
    if not compressor.programs:
        return Compressor(compression, None)
    for name in compressor.programs:
        tool = await tools.tool(name)
        if tool is not None:
            return Compressor(compression, tool)
    return None


def compressorPrograms() -> list[tuple[str, str]]:
    """Every compressor's programs with their version flag (for L{ToolFinder.warm})."""
    return [(name, "--version") for c in COMPRESSORS.values() for name in c.programs]


async def availableCompressions(tools: ToolFinder) -> list[str]:
    """Every compression this server can apply now."""
    return [c for c in COMPRESSORS if await findCompressor(tools, c) is not None]


@frozen
class CompressionPlan:
    """One run's compression: the compressor, its program (if external), level and threads."""

    compressor: ICompressor
    tool: Tool | None
    level: int
    threads: int

    @property
    def compression(self) -> str:
        return self.compressor.name

    @property
    def compresses(self) -> bool:
        """False for C{none}: the artifact is the dump itself."""
        return self.compressor.compresses

    @property
    def external(self) -> bool:
        """Whether a child process compresses (else in-process, or nothing)."""
        return self.tool is not None

    @property
    def extension(self) -> str:
        return self.compressor.extension

    def compressArgv(self) -> list[str]:
        """The compressor's command line, stdin to stdout."""
        return self.compressor.compressArgv(self._tool(), self.level, self.threads)

    def decompressArgv(self) -> list[str]:
        """The decompressor's command line, stdin to stdout; it fails on damaged input."""
        return self.compressor.decompressArgv(self._tool())

    def transform(self, memberName: str) -> MakeTransform | None:
        """The sink's in-process compression of the member C{memberName}, if any."""
        return self.compressor.transform(memberName, self.level)

    def readBack(self, reader: ArtifactReader) -> ReadBack | None:
        """How verification decompresses in the server, or C{None}: with the program."""
        return self.compressor.readBack(reader)

    def _tool(self) -> Tool:
        if self.tool is None:
            raise ValueError(f"{self.compression} is not done by a program")
        return self.tool


async def planCompression(tools: ToolFinder, options: BackupOptions) -> CompressionPlan:
    """
    The compression of C{options} as it will be done here; raise
    C{COMPRESSION_UNAVAILABLE} if its program is missing, C{VALIDATION_FAILED}
    if the level or thread count is out of range.
    """
    compressor = COMPRESSORS.get(options.compression)
    if compressor is None:
        raise BackupRemoteError(VALIDATION_FAILED,
                                f"unknown compression {options.compression!r}",
                                details={"fields": {"compression": "is not a compression"}})
    name = options.compression
    if options.threads < 0:
        raise BackupRemoteError(VALIDATION_FAILED, "threads must be 0 (all cores) or more",
                                details={"fields": {"threads": "must be 0 or more"}})
    level = 0
    if compressor.levels is not None:
        low, high, default = compressor.levels
        level = default if options.level is None else options.level
        if not low <= level <= high:
            raise BackupRemoteError(
                VALIDATION_FAILED, f"{name} levels go from {low} to {high}",
                details={"fields": {"level": f"must be from {low} to {high} for {name}"}})
    found = await findCompressor(tools, name)
    if found is None:
        raise BackupRemoteError(
            COMPRESSION_UNAVAILABLE, f"{name} needs a program that is not installed in "
            "the server's tool path; choose another compression or install it")
    return CompressionPlan(compressor, found.tool, level, options.threads)


class _Output:
    """
    What zipfile writes to: forwards every write, counts the position, and
    cannot seek, so zipfile streams (sizes go in a data descriptor after the
    data) instead of going back to patch the local header.
    """

    def __init__(self, emit: Callable[[bytes], None]) -> None:
        self._emit = emit
        self._position = 0

    def write(self, data: bytes) -> int:
        self._emit(data)
        self._position += len(data)
        return len(data)

    def tell(self) -> int:
        return self._position

    def seek(self, *args: object) -> int:
        raise OSError("not seekable")

    def seekable(self) -> bool:
        return False

    def flush(self) -> None:
        pass


class ZipTransform:
    """
    A zip archive of one member, made as a stream: C{feed} the member's
    bytes, then C{finish}; the archive's bytes go to C{emit} as they are
    made (a few hundred KB at most are held by zlib meanwhile).
    """

    def __init__(self, memberName: str, level: int, emit: Callable[[bytes], None]) -> None:
        self._archive = zipfile.ZipFile(cast(IO[bytes], _Output(emit)), "w",
                                        compression=zipfile.ZIP_DEFLATED,
                                        compresslevel=level, allowZip64=True)
        self._member = self._archive.open(memberName, "w", force_zip64=True)

    def feed(self, data: bytes) -> None:
        self._member.write(data)

    def finish(self) -> None:
        self._member.close()
        self._archive.close()


def zipMember(path: str) -> tuple[zipfile.ZipFile, str]:
    """The archive at C{path} and its only member's name; C{BadZipFile} otherwise."""
    archive = zipfile.ZipFile(path)
    names = archive.namelist()
    if len(names) != 1:
        archive.close()
        raise zipfile.BadZipFile(f"expected one member, found {len(names)}")
    return archive, names[0]
