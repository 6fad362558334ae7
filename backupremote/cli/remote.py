"""CLI commands that talk to the server through the client library."""

from __future__ import annotations

import argparse
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from backupremote.cli.clientconfig import commandConfig
from backupremote.cli.output import Output, converter
from backupremote.client.api import BackupRemoteClient
from backupremote.client.expiry import describeExpiry, expiryJSON, expiryOf
from backupremote.protocol.metrics import ServerMetrics
from backupremote.protocol.models import Capabilities, EngineCapability

if TYPE_CHECKING:
    from backupremote.reactors import ITransferReactor


def register(commands: Any) -> None:
    capabilities = commands.add_parser(
        "capabilities", help="what the server offers this client",
        epilog="example: backupremote --config ~/.backupremote/client.toml capabilities --json",
    )
    capabilities.set_defaults(onReactor=withClient(capabilitiesCommand))
    metrics = commands.add_parser(
        "metrics", help="the server's counters, timings and current load",
        epilog="example: backupremote --config ~/.backupremote/client.toml metrics --json",
    )
    metrics.set_defaults(onReactor=withClient(metricsCommand))


RemoteCommand = Callable[[BackupRemoteClient, argparse.Namespace, Output], Awaitable[int]]


def withClient(command: RemoteCommand) -> Callable[..., Awaitable[int]]:
    """Run C{command} with a client made from C{--config}, closed after."""

    async def run(reactor: ITransferReactor, args: argparse.Namespace, output: Output) -> int:
        config = commandConfig(args)
        config = config.forServer(config.pickServer(getattr(args, "server", None)))
        client = BackupRemoteClient.forOneCommand(reactor, config)
        try:
            return await command(client, args, output)
        finally:
            await client.close()

    return run


def describeEngine(engine: EngineCapability) -> str:
    """C{postgresql (/usr/bin/pg_dump 16.4)}; C{sqlite (in-process 3.40.1)}."""
    tool = engine.tool[1:-1] if engine.tool.startswith("(") and engine.tool.endswith(")") \
        else engine.tool
    return f"{engine.engine} ({tool} {engine.toolVersion})"


def describeCapabilities(capabilities: Capabilities) -> str:
    lines = [
        f"server version: {capabilities.serverVersion}",
        f"API versions:   {', '.join(map(str, capabilities.apiVersions))}",
        f"auth methods:   {', '.join(capabilities.authMethods)}",
    ]
    offer = capabilities.offer
    if offer is not None:
        engines = ", ".join(describeEngine(e) for e in offer.engines)
        lines += [
            f"features:       {', '.join(offer.features) or '-'}",
            f"engines:        {engines or '-'}",
            f"compressions:   {', '.join(offer.compressions) or '-'}",
            f"checksums:      {', '.join(offer.checksums) or '-'}",
        ]
        if offer.chunkLimits is not None:
            limits = offer.chunkLimits
            lines.append(f"chunks:         {limits.maxChunkBytes:,} bytes, {limits.chunksPerBox} "
                         f"a box, {limits.maxChunksInFlight} in flight")
    return "\n".join(lines)


async def withLicenceExpiry(client: BackupRemoteClient, value: Any, human: str,
                            label: str = "licence:        ") -> tuple[dict[str, Any], str]:
    """
    C{value}'s JSON with C{licenseExpiresAt} and C{licenseDaysLeft}, and
    C{human} with a C{licence:} line: the expiry the server granted at this
    connection's login.
    """
    expiresAt = expiryOf(await client.session())
    now = datetime.fromtimestamp(client.connection.reactor.seconds(), timezone.utc)
    return (converter.unstructure(value) | expiryJSON(expiresAt, now),
            human + f"\n{label}{describeExpiry(expiresAt, now)}")


async def capabilitiesCommand(
    client: BackupRemoteClient, args: argparse.Namespace, output: Output
) -> int:
    capabilities = await client.capabilities()
    output.result(*await withLicenceExpiry(client, capabilities,
                                           describeCapabilities(capabilities)))
    return 0


def describeMetrics(metrics: ServerMetrics) -> str:
    lines = [
        f"server {metrics.serverVersion}, up {metrics.uptimeSeconds:.0f} s "
        f"(since {metrics.startedAt:%Y-%m-%d %H:%M:%S} UTC)",
        f"runs: {metrics.runsRunning} running, {metrics.runsQueued} queued; "
        f"transfers: {metrics.transfersActive}; staged: {metrics.artifactsStaged} "
        f"artifact(s), {metrics.stagedBytes} bytes",
    ]
    lines += [f"  {name}: {count}" for name, count in sorted(metrics.counters.items())]
    for name, timing in sorted(metrics.timings.items()):
        lines.append(f"  {name}: {timing.count} x, mean {timing.totalSeconds / timing.count:.2f} s, "
                     f"max {timing.maxSeconds:.2f} s, last {timing.lastSeconds:.2f} s")
    return "\n".join(lines)


async def metricsCommand(
    client: BackupRemoteClient, args: argparse.Namespace, output: Output
) -> int:
    metrics = await client.getMetrics()
    output.result(metrics, describeMetrics(metrics))
    return 0
