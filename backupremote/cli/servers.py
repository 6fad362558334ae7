"""
``backupremote servers``: each server of client.toml, checked now (this
command logs in to each, side by side): connected or why not, the licence's
expiry and days left, what the server grants.
"""

from __future__ import annotations

import argparse
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from backupremote.cli.clientconfig import commandConfig
from backupremote.cli.output import EXIT_REFUSED, Output
from backupremote.client.expiry import describeExpiry
from backupremote.client.servers import ClientServers, ServerStatus

if TYPE_CHECKING:
    from backupremote.reactors import ITransferReactor

UTC = timezone.utc


def register(commands: Any) -> None:
    servers = commands.add_parser(
        "servers", help="the servers of client.toml: connected, licence expiry, last error",
        epilog="example: backupremote --config ~/.backupremote/client.toml servers --json",
    )
    servers.set_defaults(onReactor=serversCommand)


def describeServer(status: ServerStatus, now: datetime) -> str:
    head = f"{status.name:<16} {status.address:<24} client {status.clientId}: "
    if status.lastError is not None:
        return (head + f"NOT connected: {status.lastError.code}: {status.lastError.message}"
                + f"\n{'':<17}what to do: {status.lastError.action}")
    expiry = ("licence without expiry" if status.licenseExpiresAt is None else
              f"licence {describeExpiry(status.licenseExpiresAt, now)}")
    return head + f"connected, server {status.serverVersion or '?'}, {expiry}"


async def serversCommand(reactor: ITransferReactor, args: argparse.Namespace,
                         output: Output) -> int:
    config = commandConfig(args)
    name = getattr(args, "server", None)
    names = [config.pickServer(name)] if name else list(config.serverNames)
    servers = ClientServers(reactor, config, ownConnections=True)
    try:
        statuses = await servers.checkAll(names)
    finally:
        await servers.close()
    now = datetime.now(UTC)
    output.result([status.asJSON(now) for status in statuses],
                  "\n".join(describeServer(status, now) for status in statuses))
    return 0 if all(status.connected for status in statuses) else EXIT_REFUSED
