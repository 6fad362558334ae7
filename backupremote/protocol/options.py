"""The backup options contract: how a run dumps, compresses, checks and verifies."""

from __future__ import annotations

from attrs import frozen

COMPRESSIONS = ("none", "gzip", "zstd", "xz", "zip")
CHECKSUMS = ("sha256", "blake2b")
VERIFICATIONS = ("none", "stream", "full")

#: Engine formats; the first of each engine is its default.
FORMATS: dict[str, tuple[str, ...]] = {
    "postgresql": ("custom", "plain"),
    "mariadb": ("sql",),
    "sqlite": ("file",),
    "firebird": ("fbk",),
}


@frozen
class BackupOptions:
    """
    Options of one backup; a database config keeps defaults of them.

    C{format} C{None} means the engine's default; C{level} C{None} the
    compressor's default; C{threads} 0 means all cores; C{postScript} is a
    name from the server's allowlist, never a path or a command.
    """

    format: str | None = None
    compression: str = "zstd"
    level: int | None = None
    threads: int = 0
    checksum: str = "sha256"
    verification: str = "full"
    postScript: str | None = None
    timeoutSeconds: int = 6 * 3600
