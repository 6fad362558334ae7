"""
``backupremote verify FILE``: check a downloaded artifact offline, as
``borg check`` or ``restic check`` let people check what they hold.

No server, no configuration: the file is read once, hashed (SHA-256), and
decompressed completely by its compression's own integrity checks (zstd:
every frame whole and its checksum right; gzip's and zip's CRC; xz's
check); then the decompressed stream is looked at the way the server's
``stream`` verification does: the format's header (a PostgreSQL custom
archive, a SQLite file, a gbak backup) or its trailer (a plain SQL dump).
With C{--manifest} (what ``backupremote --json files RUNID`` printed) or
C{--sha256}, the size and digest must also be the expected ones.
"""

from __future__ import annotations

import argparse
import json
import lzma
import os
import zlib
from typing import Any

from attrs import define, field

from backupremote.cli.output import EXIT_REFUSED, Output
from backupremote.cli.progress import size
from backupremote.configfile import configError
from backupremote.server.engines.firebird import looksLikeGbakBackup
from backupremote.server.engines.mariadb import DUMP_TRAILER as MARIADB_TRAILER
from backupremote.server.engines.postgresql import PLAIN_DUMP_TRAILER
from backupremote.server.engines.sqlite import SQLITE_HEADER
from backupremote.server.pipeline.inspection import ArtifactReader, Consumer, StreamInspector
from backupremote.server.pipeline.threads import StopFlag

#: The compression of each file name suffix (none: no suffix of these).
COMPRESSIONS = {".zst": "zstd", ".gz": "gzip", ".xz": "xz", ".zip": "zip"}
#: The format of each artifact extension, and how a person names it.
FORMATS = {".dump": "PostgreSQL custom archive", ".sql": "SQL dump",
           ".sqlite": "SQLite database", ".fbk": "Firebird gbak backup"}


def register(commands: Any) -> None:
    verify = commands.add_parser(
        "verify", help="check a downloaded artifact offline: sha256, decompression, format",
        description="Read FILE once: its SHA-256, a complete decompression with the "
        "compression's own checks (zstd frames and checksums, gzip/zip CRC, xz check), and "
        "the format's header or trailer. No server is needed.",
        epilog="example: backupremote --json files 0b8e... > 0b8e.manifest.json; "
        "backupremote verify /backups/shop-20261129T031500Z.dump.zst "
        "--manifest 0b8e.manifest.json",
    )
    verify.add_argument("file", help="the artifact (e.g. shop-20261129T031500Z.dump.zst)")
    verify.add_argument("--manifest", metavar="JSON",
                        help="the run's manifest, as `backupremote --json files RUNID` "
                        "prints it: the file's size and sha256 must match its entry")
    verify.add_argument("--sha256", metavar="HEX", help="the SHA-256 the file must have")
    verify.set_defaults(run=verifyCommand)


@define
class Check:
    name: str
    ok: bool
    detail: str


@define
class Verdict:
    path: str
    sizeBytes: int
    sha256: str
    compression: str
    format: str | None
    checks: list[Check] = field(factory=list)

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)


class _Inflate:
    """gzip or xz, decompressed in-process into C{consumer}; complete streams only."""

    def __init__(self, compression: str, consumer: Consumer) -> None:
        self._compression = compression
        self._consumer = consumer
        self._decompressor = self._new()
        self.error: str | None = None
        self._fed = False

    def _new(self) -> Any:
        if self._compression == "gzip":
            return zlib.decompressobj(wbits=31)
        return lzma.LZMADecompressor()

    def feed(self, data: bytes | memoryview) -> None:
        if self.error is not None:
            return
        data = bytes(data)
        try:
            while data:
                self._fed = True
                self._consumer.feed(self._decompressor.decompress(data))
                if not self._decompressor.eof:
                    break
                # a stream (member) ended: another may follow
                data = self._decompressor.unused_data
                self._decompressor = self._new()
                self._fed = False
        except (zlib.error, lzma.LZMAError, EOFError) as error:
            self.error = str(error) or type(error).__name__

    def finish(self) -> None:
        if self.error is None and self._fed:
            self.error = "the stream ends inside a member (truncated)"
        self._consumer.finish()


def _split(name: str) -> tuple[str, str | None]:
    """The compression and the format extension of an artifact's file name."""
    stem, ext = os.path.splitext(name)
    compression = COMPRESSIONS.get(ext, "none")
    if compression != "none":
        stem, ext = os.path.splitext(stem)
    return compression, ext if ext in FORMATS else None


def _formatCheck(ext: str | None, inspector: StreamInspector) -> Check | None:
    if ext is None:
        return None
    head, tail = inspector.head, inspector.tail
    if ext == ".dump":
        ok, what = head.startswith(b"PGDMP"), "starts like a PostgreSQL custom archive"
    elif ext == ".sqlite":
        ok, what = head.startswith(SQLITE_HEADER), "starts with the SQLite header"
    elif ext == ".fbk":
        ok, what = looksLikeGbakBackup(head), "starts like a gbak backup"
    else:
        ok = PLAIN_DUMP_TRAILER in tail or MARIADB_TRAILER in tail
        what = "ends with its dump tool's completion line (not cut short)"
    return Check("format", ok, (what if ok else f"does not {what.split(' ', 1)[1]}")
                 + f" ({FORMATS[ext]})")


def verifyFile(path: str, expectedSha256: str | None = None,
               expectedSize: int | None = None) -> Verdict:
    """Read C{path} once and judge it (see the module's docstring)."""
    compression, ext = _split(os.path.basename(path))
    reader = ArtifactReader(path, "sha256", StopFlag())
    inspector = StreamInspector()
    inflate: _Inflate | None = None
    try:
        if compression == "zstd":
            digest = reader.runZstd(inspector)
        elif compression == "zip":
            digest = reader.runZip(inspector)
        elif compression in ("gzip", "xz"):
            inflate = _Inflate(compression, inspector)
            digest = reader.run(inflate)
        else:
            digest = reader.run(inspector)
    except OSError as error:
        raise configError(f"cannot read {path}: {error.strerror or error}") from None
    verdict = Verdict(path, reader.bytesRead, digest, compression, FORMATS.get(ext or ""))
    if expectedSize is not None:
        verdict.checks.append(Check("size", reader.bytesRead == expectedSize,
                                    f"{reader.bytesRead} bytes, {expectedSize} expected"))
    if expectedSha256 is not None:
        verdict.checks.append(Check("sha256", digest == expectedSha256.lower(),
                                    "matches" if digest == expectedSha256.lower()
                                    else f"is {digest}, {expectedSha256} expected"))
    if compression != "none":
        problem = reader.unpackError or (inflate.error if inflate is not None else None)
        verdict.checks.append(Check(
            "decompression", problem is None,
            f"{compression}: {size(inspector.byteCount)} decompressed, complete"
            if problem is None else f"{compression}: {problem}"))
    formatCheck = _formatCheck(ext, inspector)
    if formatCheck is not None and (compression == "none" or verdict.checks[-1].ok):
        verdict.checks.append(formatCheck)
    return verdict


def _expected(args: argparse.Namespace) -> tuple[str | None, int | None]:
    if not args.manifest:
        return args.sha256, None
    try:
        with open(args.manifest, encoding="utf-8") as stream:
            manifest = json.load(stream)
        entries = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise configError(f"cannot read the manifest {args.manifest}: {error}") from None
    name = os.path.basename(args.file)
    matching = [e for e in entries if isinstance(e, dict) and e.get("name") == name]
    if not matching:
        raise configError(f"the manifest {args.manifest} has no file named {name!r}")
    entry = matching[0]
    if args.sha256 and args.sha256.lower() != str(entry.get("sha256", "")).lower():
        raise configError("--sha256 and the manifest disagree")
    return entry.get("sha256"), entry.get("sizeBytes")


def describe(verdict: Verdict) -> str:
    lines = [f"{verdict.path}: {'ok' if verdict.ok else 'FAILED'}",
             f"  size     {size(verdict.sizeBytes)} ({verdict.sizeBytes} bytes)",
             f"  sha256   {verdict.sha256}"]
    lines += [f"  {check.name:<13} {'ok' if check.ok else 'FAILED'}: {check.detail}"
              for check in verdict.checks]
    if not any(check.name == "sha256" for check in verdict.checks):
        lines.append("  (no expected sha256 given: --manifest or --sha256 compares it)")
    return "\n".join(lines)


def verifyCommand(args: argparse.Namespace, output: Output) -> int:
    expectedSha256, expectedSize = _expected(args)
    verdict = verifyFile(args.file, expectedSha256, expectedSize)
    output.result({"path": verdict.path, "sizeBytes": verdict.sizeBytes,
                   "sha256": verdict.sha256, "compression": verdict.compression,
                   "format": verdict.format, "ok": verdict.ok,
                   "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail}
                              for c in verdict.checks]}, describe(verdict))
    return 0 if verdict.ok else EXIT_REFUSED
