"""CLI commands that talk to the server through the client library."""

from __future__ import annotations

import argparse
from typing import Any

from twisted.python.filepath import FilePath

from backupremote.cli.output import Output
from backupremote.client.api import BackupRemoteClient
from backupremote.client.config import loadClientConfig
from backupremote.configfile import configError
from backupremote.protocol.models import Capabilities


def register(commands: Any) -> None:
    capabilities = commands.add_parser(
        "capabilities", help="what the server offers this client",
        epilog="example: backupremote --config ~/.backupremote/client.toml capabilities --json",
    )
    capabilities.set_defaults(remote=capabilitiesCommand)


def openClient(reactor: Any, args: argparse.Namespace) -> BackupRemoteClient:
    if not args.config:
        raise configError("this command needs --config CLIENT_DIR/client.toml")
    return BackupRemoteClient.fromConfig(reactor, loadClientConfig(FilePath(args.config)))


def _describe(capabilities: Capabilities) -> str:
    lines = [
        f"server version: {capabilities.serverVersion}",
        f"API versions:   {', '.join(map(str, capabilities.apiVersions))}",
        f"auth methods:   {', '.join(capabilities.authMethods)}",
    ]
    offer = capabilities.offer
    if offer is not None:
        engines = ", ".join(f"{e.engine} ({e.tool} {e.toolVersion})" for e in offer.engines)
        lines += [
            f"features:       {', '.join(offer.features) or '-'}",
            f"engines:        {engines or '-'}",
            f"compressions:   {', '.join(offer.compressions) or '-'}",
            f"checksums:      {', '.join(offer.checksums) or '-'}",
        ]
    return "\n".join(lines)


async def capabilitiesCommand(
    client: BackupRemoteClient, args: argparse.Namespace, output: Output
) -> int:
    capabilities = await client.capabilities()
    output.result(capabilities, _describe(capabilities))
    return 0
