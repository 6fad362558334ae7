"""
Every command a client may send, by its name on the wire.

The server dispatches from this table (and answers every name in it); the
box limit after ``auth`` is sized from it; docs/protocol.md documents it.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from backupremote.protocol.base import Request
from backupremote.protocol.databases import (
    CreateDatabaseConfig,
    DeleteDatabaseConfig,
    GetDatabaseConfigById,
    ListDatabaseConfigs,
    TestDatabaseConnection,
    UpdateDatabaseConfig,
    ValidateServerBackupPrerequisites,
)
from backupremote.protocol.metrics import GetMetrics
from backupremote.protocol.runs import CancelBackup, ExecuteBackup, GetExecutionStatus, SubscribeRun
from backupremote.protocol.session import Auth, Capabilities, Ping
from backupremote.protocol.transfers import (
    FileChunkHashes,
    FileTransferStart,
    FileTransferStop,
    ListFiles,
    ReleaseArtifact,
)

_REQUESTS: tuple[type[Request], ...] = (
    Auth, Capabilities, Ping,
    CreateDatabaseConfig, UpdateDatabaseConfig, DeleteDatabaseConfig, ListDatabaseConfigs,
    GetDatabaseConfigById, TestDatabaseConnection, ValidateServerBackupPrerequisites,
    ExecuteBackup, CancelBackup, GetExecutionStatus, SubscribeRun,
    ListFiles, FileChunkHashes, FileTransferStart, FileTransferStop, ReleaseArtifact,
    GetMetrics,
)

#: Command name (as sent on the wire) -> command, for every client -> server command.
COMMANDS: Mapping[str, type[Request]] = MappingProxyType(
    {command.commandName.decode("ascii"): command for command in _REQUESTS})

__all__ = ["COMMANDS"]
