"""``backupremote verify FILE``: a downloaded artifact checked offline."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import lzma
import os
import sqlite3
import zipfile
from contextlib import redirect_stderr, redirect_stdout

import zstandard
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from backupremote.cli.main import main
from backupremote.cli.verify import verifyFile

PG_CUSTOM = b"PGDMP\x01\x0e\x00\x04\x08\x01\x01" + os.urandom(300_000)
SQL_DUMP = (b"-- MariaDB dump 10.19\n" + b"INSERT INTO t VALUES (1,'x');\n" * 20_000
            + b"-- Dump completed on 2026-11-29  3:15:02\n")


class VerifyTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.folder = FilePath(self.mktemp())
        self.folder.makedirs()

    def write(self, name: str, content: bytes) -> str:
        path = self.folder.child(name)
        path.setContent(content)
        return path.path

    def cli(self, *argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            code = main(["verify", *argv])
        return code, out.getvalue(), err.getvalue()

    def checks(self, path: str, **expected: object) -> dict[str, bool]:
        verdict = verifyFile(path, **expected)  # type: ignore[arg-type]
        return {check.name: check.ok for check in verdict.checks}

    def test_zstdWholeAndCut(self) -> None:
        packed = zstandard.ZstdCompressor(write_checksum=True).compress(PG_CUSTOM)
        good = self.write("shop-20261129T031500Z.dump.zst", packed)
        self.assertEqual(self.checks(good), {"decompression": True, "format": True})
        cut = self.write("cut-20261129T031500Z.dump.zst", packed[:-100])
        self.assertEqual(self.checks(cut), {"decompression": False})
        flipped = bytearray(packed)
        flipped[len(flipped) // 2] ^= 0xFF
        bad = self.write("bad-20261129T031500Z.dump.zst", bytes(flipped))
        self.assertEqual(self.checks(bad), {"decompression": False})

    def test_cliExitCodesAndJSON(self) -> None:
        packed = zstandard.ZstdCompressor(write_checksum=True).compress(PG_CUSTOM)
        good = self.write("shop-20261129T031500Z.dump.zst", packed)
        code, out, err = self.cli(good)
        self.assertEqual((code, err), (0, ""))
        self.assertIn(": ok", out.splitlines()[0])
        self.assertIn(f"sha256   {hashlib.sha256(packed).hexdigest()}", out)
        cut = self.write("cut-20261129T031500Z.dump.zst", packed[:-100])
        code, out, _ = self.cli(cut, "--json")
        self.assertEqual(code, 6)
        shown = json.loads(out)
        self.assertIs(shown["ok"], False)
        self.assertEqual(shown["compression"], "zstd")
        self.assertEqual(shown["format"], "PostgreSQL custom archive")

    def test_manifest(self) -> None:
        packed = gzip.compress(SQL_DUMP)
        path = self.write("shop-20261129T031500Z.sql.gz", packed)
        manifest = self.write("m.json", json.dumps({"runId": "r", "files": [{
            "fileId": "f", "name": "shop-20261129T031500Z.sql.gz",
            "sizeBytes": len(packed), "sha256": hashlib.sha256(packed).hexdigest(),
            "chunkSize": 65000, "chunkCount": 1}]}).encode())
        code, out, _ = self.cli(path, "--manifest", manifest)
        self.assertEqual(code, 0, out)
        self.assertIn("sha256        ok: matches", out)
        self.write("shop-20261129T031500Z.sql.gz", gzip.compress(SQL_DUMP + b"-- more\n"))
        code, out, _ = self.cli(path, "--manifest", manifest)
        self.assertEqual(code, 6)
        self.assertIn("sha256        FAILED", out)
        self.assertIn("size          FAILED", out)
        code, _, err = self.cli(self.write("other.sql.gz", packed), "--manifest", manifest)
        self.assertEqual(code, 3)
        self.assertIn("no file named 'other.sql.gz'", err)

    def test_gzipXzZipAndTrailer(self) -> None:
        self.assertEqual(self.checks(self.write("a.sql.gz", gzip.compress(SQL_DUMP)[:-9])),
                         {"decompression": False})
        self.assertEqual(self.checks(self.write("a.sql.xz", lzma.compress(SQL_DUMP))),
                         {"decompression": True, "format": True})
        self.assertEqual(self.checks(self.write("b.sql.xz", lzma.compress(SQL_DUMP)[:-30])),
                         {"decompression": False})
        zipped = io.BytesIO()
        with zipfile.ZipFile(zipped, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("a.sql", SQL_DUMP[:-50])  # cut before its last line
        self.assertEqual(self.checks(self.write("a.sql.zip", zipped.getvalue())),
                         {"decompression": True, "format": False})
        self.assertEqual(self.checks(self.write("plain.sql", SQL_DUMP)), {"format": True})

    def test_sqliteUncompressed(self) -> None:
        path = self.folder.child("notes-20261129T031500Z.sqlite").path
        with sqlite3.connect(path) as db:
            db.execute("create table t (x)")
        db.close()
        self.assertEqual(self.checks(path), {"format": True})
        self.assertEqual(self.checks(self.write("x-20261129T031500Z.sqlite", b"not sqlite")),
                         {"format": False})

    def test_missingFile(self) -> None:
        code, _, err = self.cli(self.folder.child("nothing.dump.zst").path)
        self.assertEqual(code, 3)
        self.assertIn("cannot read", err)
