"""The backup options contract: how a run dumps, compresses, checks and verifies."""

from __future__ import annotations

from attrs import frozen

COMPRESSIONS = ("none", "gzip", "zstd", "xz", "zip")
CHECKSUMS = ("sha256", "blake2b")
VERIFICATIONS = ("none", "stream", "full")

#: (lowest, highest, default) level of each compression that has levels
#: (zstd stops at 19: levels 20-22 need --ultra and windows of up to 128 MiB).
COMPRESSION_LEVELS: dict[str, tuple[int, int, int]] = {
    "gzip": (1, 9, 6),
    "zstd": (1, 19, 3),
    "xz": (0, 9, 6),
    "zip": (0, 9, 6),
}

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
