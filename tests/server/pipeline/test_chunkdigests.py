"""Chunk digests made while writing, and the manifest that trusts them only while they hold."""

from __future__ import annotations

import hashlib
import os
from datetime import datetime, timezone

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from backupremote.server.pipeline.chunkdigests import ChunkDigester, ChunkDigests
from backupremote.server.transfers.manifest import DIGESTS, hashChunks, writeManifest

NOW = datetime(2026, 11, 29, tzinfo=timezone.utc)


class ChunkDigesterTests(SynchronousTestCase):
    @settings(max_examples=50)
    @given(st.binary(max_size=300_000), st.lists(st.integers(1, 70_000), max_size=12),
           st.booleans())
    def test_sameAsHashingTheFile(self, data: bytes, pieces: list[int],
                                  wholeFromSink: bool) -> None:
        """Fed in any pieces: the digests and the whole SHA-256 of hashChunks."""
        folder = FilePath(self.mktemp())
        folder.makedirs()
        artifact = folder.child("a.bin")
        artifact.setContent(data)
        digester = ChunkDigester(folder.child("a.bin.chunks").path, wholeFromSink)
        position = 0
        for size in pieces:
            digester.feed(data[position:position + size])
            position += size
        digester.feed(memoryview(data)[position:])
        made = digester.finish(hashlib.sha256(data).hexdigest() if wholeFromSink else "unused")
        size, sha256, digests = hashChunks(artifact.path)
        self.assertEqual((made.sizeBytes, made.sha256), (size, sha256))
        self.assertEqual(made.path.getContent(), digests)


class ManifestFromChunksTests(SynchronousTestCase):
    def made(self, data: bytes) -> tuple[FilePath, ChunkDigests]:
        folder = FilePath(self.mktemp())
        folder.makedirs()
        artifact = folder.child("a.bin")
        artifact.setContent(data)
        digester = ChunkDigester(folder.child("a.bin.chunks").path, wholeFromSink=False)
        digester.feed(data)
        return artifact, digester.finish("")

    def test_usedWhileTheyHold(self) -> None:
        """The digests made while writing become the manifest's; their file is gone."""
        artifact, chunks = self.made(os.urandom(200_000))
        # Swap in other digests of the right length: if they show up, they were used.
        other = bytes(reversed(chunks.path.getContent()))
        chunks.path.setContent(other)
        os.utime(chunks.path.path)
        manifest = writeManifest(artifact, "r", "f", NOW, NOW, chunks)
        self.assertEqual(artifact.sibling(DIGESTS).getContent(), other)
        self.assertEqual(manifest.files[0].sha256, chunks.sha256)
        self.assertFalse(chunks.path.exists())

    def test_changedArtifactIsHashedAgain(self) -> None:
        """A file changed after its digests were made (a post-script): hashed again."""
        for change in (b"appended", b""):
            artifact, chunks = self.made(os.urandom(100_000))
            madeAt = os.stat(artifact.path).st_mtime_ns
            if change:
                with open(artifact.path, "ab") as stream:
                    stream.write(change)
            else:
                data = bytearray(artifact.getContent())
                data[5] ^= 1
                artifact.setContent(bytes(data))
            # a later change, whatever the file system's timestamp granularity
            os.utime(artifact.path, ns=(madeAt + 10_000_000, madeAt + 10_000_000))
            manifest = writeManifest(artifact, "r", "f", NOW, NOW, chunks)
            size, sha256, digests = hashChunks(artifact.path)
            self.assertEqual((manifest.files[0].sizeBytes, manifest.files[0].sha256),
                             (size, sha256))
            self.assertEqual(artifact.sibling(DIGESTS).getContent(), digests)
            self.assertFalse(chunks.path.exists())
