"""
The compressions the server can apply, and the programs behind them.

External multi-threaded programs are preferred (they read the dump through
an OS pipe, off the reactor); ``zip`` is done in-process by Python's
zipfile, so it is always there, and ``none`` needs nothing.
"""

from __future__ import annotations

from attrs import frozen

from backupremote.protocol.options import COMPRESSIONS
from backupremote.server.tools import Tool, ToolFinder

#: Programs that can do each compression, best first.
PROGRAMS: dict[str, tuple[str, ...]] = {
    "gzip": ("pigz", "gzip"),
    "zstd": ("zstd",),
    "xz": ("xz",),
}
IN_PROCESS = ("none", "zip")


@frozen
class Compressor:
    """How a compression would be done here."""

    compression: str
    tool: Tool | None

    @property
    def description(self) -> str:
        if self.tool is None:
            return "in-process" if self.compression != "none" else "no compression"
        return f"{self.tool.path} ({self.tool.version})"


async def findCompressor(tools: ToolFinder, compression: str) -> Compressor | None:
    """The compressor for C{compression}, or C{None} if its program is missing."""
    if compression in IN_PROCESS:
        return Compressor(compression, None)
    for name in PROGRAMS.get(compression, ()):
        tool = await tools.tool(name)
        if tool is not None:
            return Compressor(compression, tool)
    return None


async def availableCompressions(tools: ToolFinder) -> list[str]:
    """Every compression this server can apply now."""
    return [c for c in COMPRESSIONS if await findCompressor(tools, c) is not None]
