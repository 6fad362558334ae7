"""
How the pipeline compresses and decompresses, for each compression option.

External programs (zstd, pigz or gzip, xz) run as children joined to the
dump by an OS pipe, so compression happens outside Python on as many cores
as allowed. C{zip} is done in-process (L{ZipTransform}, zlib releases the
GIL while it deflates) in the thread that writes the artifact, because no
zip program can stream a single member from a pipe. C{none} is a plain copy.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable

from attrs import frozen

from backupremote.protocol.errors import (
    COMPRESSION_UNAVAILABLE,
    VALIDATION_FAILED,
    BackupRemoteError,
)
from backupremote.protocol.options import COMPRESSION_LEVELS, BackupOptions
from backupremote.server.compressors import findCompressor
from backupremote.server.tools import Tool, ToolFinder

#: File name suffix of each compression.
EXTENSIONS: dict[str, str] = {"none": "", "gzip": ".gz", "zstd": ".zst", "xz": ".xz", "zip": ".zip"}



@frozen
class CompressionPlan:
    """One run's compression: the program (if external), level and threads."""

    compression: str
    tool: Tool | None
    level: int
    threads: int

    @property
    def external(self) -> bool:
        """Whether a child process compresses (else in-process, or nothing)."""
        return self.tool is not None

    @property
    def decompressesInProcess(self) -> bool:
        """
        Whether verification decompresses in the server (zstd, with
        python-zstandard) rather than with the program: as fast as C{zstd -t}
        where a child writing to a pipe cost a third more. Levels up to 19
        keep zstd's window at 8 MiB at most.
        """
        return self.compression == "zstd"

    @property
    def extension(self) -> str:
        return EXTENSIONS[self.compression]

    def compressArgv(self) -> list[str]:
        """The compressor's command line, stdin to stdout."""
        tool = self._tool()
        if tool.name == "zstd":
            return [tool.path, "-q", "-c", f"-{self.level}", f"-T{self.threads}"]
        if tool.name == "pigz":
            return [tool.path, "-c", f"-{self.level}", "-p", str(self.threads or cpuCount())]
        if tool.name == "gzip":
            return [tool.path, "-c", f"-{self.level}"]
        if tool.name == "xz":
            return [tool.path, "-c", f"-{self.level}", f"-T{self.threads}"]
        raise ValueError(f"no command line for {tool.name}")

    def decompressArgv(self) -> list[str]:
        """The decompressor's command line, stdin to stdout; it fails on damaged input."""
        tool = self._tool()
        if tool.name == "zstd":
            return [tool.path, "-q", "-d", "-c"]
        if tool.name == "xz":
            return [tool.path, "-d", "-c", "-T0"]
        return [tool.path, "-d", "-c"]

    def _tool(self) -> Tool:
        if self.tool is None:
            raise ValueError(f"{self.compression} is not done by a program")
        return self.tool


def cpuCount() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)


async def planCompression(tools: ToolFinder, options: BackupOptions) -> CompressionPlan:
    """
    The compression of C{options} as it will be done here; raise
    C{COMPRESSION_UNAVAILABLE} if its program is missing, C{VALIDATION_FAILED}
    if the level or thread count is out of range.
    """
    compression = options.compression
    if compression not in EXTENSIONS:
        raise BackupRemoteError(VALIDATION_FAILED, f"unknown compression {compression!r}",
                                details={"fields": {"compression": "is not a compression"}})
    if options.threads < 0:
        raise BackupRemoteError(VALIDATION_FAILED, "threads must be 0 (all cores) or more",
                                details={"fields": {"threads": "must be 0 or more"}})
    level = 0
    if compression in COMPRESSION_LEVELS:
        low, high, default = COMPRESSION_LEVELS[compression]
        level = default if options.level is None else options.level
        if not low <= level <= high:
            raise BackupRemoteError(
                VALIDATION_FAILED, f"{compression} levels go from {low} to {high}",
                details={"fields": {"level": f"must be from {low} to {high} for {compression}"}})
    compressor = await findCompressor(tools, compression)
    if compressor is None:
        raise BackupRemoteError(
            COMPRESSION_UNAVAILABLE, f"{compression} needs a program that is not installed in "
            "the server's tool path; choose another compression or install it")
    return CompressionPlan(compression, compressor.tool, level, options.threads)


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
        self._archive = zipfile.ZipFile(_Output(emit), "w", compression=zipfile.ZIP_DEFLATED,
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
