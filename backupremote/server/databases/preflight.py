"""
Preflight: could a backup of this database, with these options, start now?

Every check runs and reports; blockers stop a run, warnings do not.
"""

from __future__ import annotations

import shutil

from backupremote.protocol.databases import Finding, PreflightReport, ToolChoice
from backupremote.protocol.errors import (
    COMPRESSION_UNAVAILABLE,
    DISK_SPACE_LOW,
    TEMP_NOT_WRITABLE,
    BackupRemoteError,
)
from backupremote.protocol.options import BackupOptions
from backupremote.reactors import IWorkReactor
from backupremote.server.engines.base import IEngine, Target
from backupremote.server.machinery.compressors import findCompressor
from backupremote.server.machinery.toolfinder import ToolFinder
from backupremote.server.staging import StagingArea

#: The share of the database size a compressed dump is assumed to need.
COMPRESSED_SHARE = 0.5


def neededBytes(estimate: int, options: BackupOptions) -> int:
    """What the staging folder should hold for a backup of C{estimate} bytes."""
    share = 1.0 if options.compression == "none" else COMPRESSED_SHARE
    return int(estimate * share)


async def preflight(
    engine: IEngine, target: Target, options: BackupOptions, tools: ToolFinder,
    reactor: IWorkReactor, timeout: float, staging: StagingArea,
) -> PreflightReport:
    """Run every check; never raise for a finding."""
    blockers: list[Finding] = []
    warnings: list[Finding] = []

    probe = await engine.probe(target, tools, reactor, timeout)
    if not probe.ok:
        blockers.append(Finding(probe.reason or "DB_ERROR", probe.message))

    dumpTool: ToolChoice | None = None
    try:
        dumpTool = await engine.chooseDumpTool(tools, probe.serverVersion)
    except BackupRemoteError as error:
        blockers.append(Finding(error.code, error.message))

    compressionTool: ToolChoice | None = None
    compressor = await findCompressor(tools, options.compression)
    if compressor is None:
        blockers.append(Finding(
            COMPRESSION_UNAVAILABLE,
            f"{options.compression} compression needs a program this server does not "
            "have on its tool path",
        ))
    elif compressor.tool is not None:
        compressionTool = ToolChoice(compressor.tool.name, compressor.tool.path,
                                     compressor.tool.number, f"for {options.compression}")

    freeBytes: int | None = None
    try:
        root = staging.ensureRoot()
        freeBytes = shutil.disk_usage(root.path).free
    except OSError as error:
        blockers.append(Finding(
            TEMP_NOT_WRITABLE,
            f"the staging folder in the OS temp folder is not usable: "
            f"{getattr(error, 'strerror', None) or error}",
        ))
    if freeBytes is not None and probe.sizeBytes is not None:
        needed = neededBytes(probe.sizeBytes, options)
        if freeBytes < needed:
            blockers.append(Finding(
                DISK_SPACE_LOW,
                f"{freeBytes} bytes free in the temp folder, about {needed} needed",
            ))
        elif freeBytes < 2 * needed:
            warnings.append(Finding(
                DISK_SPACE_LOW,
                f"{freeBytes} bytes free in the temp folder, less than twice the "
                f"estimated {needed}",
            ))

    return PreflightReport(
        ok=not blockers, blockers=blockers, warnings=warnings, dumpTool=dumpTool,
        compressionTool=compressionTool, sizeEstimate=probe.sizeBytes,
        freeBytes=freeBytes, options=options, serverVersion=probe.serverVersion,
    )
