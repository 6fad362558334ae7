"""Wire models of the session: what ``capabilities`` and ``auth`` answer."""

from __future__ import annotations

from datetime import datetime

from attrs import field, frozen


@frozen
class EngineCapability:
    """A database engine the server can back up, with its tool."""

    engine: str
    tool: str
    toolVersion: str


@frozen
class ChunkLimits:
    """
    How the server cuts and paces file data on the transfer stream, so a
    client can size its buffers: at most C{maxChunkBytes} per chunk, at most
    C{chunksPerBox} chunks in one ``fileChunk`` box, and at most
    C{maxChunksInFlight} chunks of one transfer sent before the client
    acknowledges them.
    """

    maxChunkBytes: int
    chunksPerBox: int
    maxChunksInFlight: int


@frozen
class ServerOffer:
    """What an authenticated client may use: never shown before ``auth``."""

    engines: list[EngineCapability] = field(factory=list)
    compressions: list[str] = field(factory=list)
    checksums: list[str] = field(factory=list)
    chunkLimits: ChunkLimits | None = None
    features: list[str] = field(factory=list)


@frozen
class Capabilities:
    """
    The answer to ``capabilities``.

    Before ``auth`` only the versions and auth methods are filled in; C{offer}
    is C{None} so an unauthenticated peer learns nothing of the configuration.
    C{serverTime} is the server's clock as it answered, after ``auth`` only
    (C{None} before, and from servers older than the field): how
    C{backupremote check} measures the clock skew.
    """

    apiVersions: list[int]
    serverVersion: str
    authMethods: list[str]
    offer: ServerOffer | None = None
    serverTime: datetime | None = None
