"""The zstd frame walker: complete streams, cut streams, foreign bytes."""

from __future__ import annotations

import hashlib
import os
import struct

import zstandard
from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from backupremote.server.pipeline.inspection import ArtifactReader, StreamInspector
from backupremote.server.pipeline.threads import StopFlag
from backupremote.server.pipeline.zstdframes import FrameWalker

#: Random bytes, or a short pattern repeated up to 900 KB (many blocks, RLE ones too).
payloads = st.binary(max_size=5000) | st.builds(
    lambda count, pattern: pattern * count, st.integers(1, 300_000), st.binary(min_size=1, max_size=3))


@st.composite
def frames(draw: st.DrawFn) -> bytes:
    """One zstd frame, with or without checksum and content size, or a skippable frame."""
    if draw(st.integers(0, 9)) == 0:
        body = draw(st.binary(max_size=50))
        return struct.pack("<II", 0x184D2A50 + draw(st.integers(0, 15)), len(body)) + body
    compressor = zstandard.ZstdCompressor(
        level=draw(st.integers(1, 5)), write_checksum=draw(st.booleans()),
        write_content_size=draw(st.booleans()))
    data = draw(payloads)
    if draw(st.booleans()):
        return compressor.compress(data)
    return _streamed(compressor, data)


def _streamed(compressor: zstandard.ZstdCompressor, data: bytes) -> bytes:
    """Compressed as a stream: no content size in the header."""
    chunker = compressor.compressobj()
    return chunker.compress(data) + chunker.flush()


def _walk(data: bytes, pieces: list[int]) -> FrameWalker:
    walker = FrameWalker()
    position = 0
    for size in pieces:
        walker.feed(data[position:position + size])
        position += size
    walker.feed(data[position:])
    return walker


class FrameWalkerTests(SynchronousTestCase):
    @given(st.lists(frames(), min_size=1, max_size=4), st.lists(st.integers(1, 5000)))
    def test_wholeStreamsAreComplete(self, stream: list[bytes], pieces: list[int]) -> None:
        """Any frames, fed in any pieces: complete, every frame counted."""
        walker = _walk(b"".join(stream), pieces)
        self.assertEqual((walker.complete, walker.problem), (True, None))
        self.assertEqual(walker.frames, len(stream))

    @given(st.lists(frames(), min_size=1, max_size=3), st.data())
    def test_cutStreamsAreNot(self, stream: list[bytes], data: st.DataObject) -> None:
        """A stream cut anywhere inside its last frame is not complete."""
        whole = b"".join(stream)
        cut = data.draw(st.integers(len(whole) - len(stream[-1]) + 1, len(whole) - 1)
                        if len(stream[-1]) > 1 else st.just(len(whole) - 1))
        self.assertFalse(_walk(whole[:cut], []).complete)

    def test_foreignBytes(self) -> None:
        """Bytes that are no frame, before or after frames: a problem, never complete."""
        frame = zstandard.ZstdCompressor().compress(b"data" * 100)
        for stream in (b"PGDMP" + frame, frame + b"garbage!", b""):
            walker = _walk(stream, [3])
            self.assertFalse(walker.complete, stream[:8])
        self.assertEqual(_walk(frame + b"garbage!", []).problem, "not a zstd frame")

    def test_reservedBlockType(self) -> None:
        frame = bytearray(zstandard.ZstdCompressor(write_content_size=False).compress(b"x"))
        headerEnd = 6  # magic, descriptor, window descriptor
        frame[headerEnd] |= 0b110  # block type 3
        walker = _walk(bytes(frame), [])
        self.assertEqual(walker.problem, "a zstd block has the reserved type")


class ZstdReaderTests(SynchronousTestCase):
    def _artifact(self, content: bytes) -> str:
        path = self.mktemp()
        with open(path, "wb") as stream:
            stream.write(content)
        return path

    def test_decompressesAndHashes(self) -> None:
        """The whole stream reaches the inspector; the digest is the file's."""
        payload = os.urandom(50_000) + b"-- PostgreSQL database dump complete\n" * 3000
        compressed = zstandard.ZstdCompressor(write_checksum=True).compress(payload)
        reader = ArtifactReader(self._artifact(compressed), "sha256", StopFlag(), chunkSize=4096)
        inspector = StreamInspector()
        self.assertEqual(reader.runZstd(inspector), hashlib.sha256(compressed).hexdigest())
        self.assertEqual((reader.unpackError, inspector.byteCount), (None, len(payload)))
        self.assertEqual(inspector.head, payload[:len(inspector.head)])
        self.assertTrue(payload.endswith(inspector.tail))
        self.assertEqual(reader.bytesRead, len(compressed))

    def test_problems(self) -> None:
        """Cut, damaged or followed by garbage: an unpack error, and still the whole file hashed."""
        compressed = zstandard.ZstdCompressor(write_checksum=True).compress(
            os.urandom(20_000) * 20)
        damaged = bytearray(compressed)
        damaged[len(damaged) // 2] ^= 0x40
        for content, expected in (
                (compressed[:-50], "truncated"),
                (bytes(damaged), "error"),
                (compressed + b"trailing", "error"),
                (b"not zstd at all", "error")):
            reader = ArtifactReader(self._artifact(content), "sha256", StopFlag(), chunkSize=4096)
            digest = reader.runZstd(StreamInspector())
            self.assertEqual(digest, hashlib.sha256(content).hexdigest())
            self.assertIn(expected, reader.unpackError or "", content[-10:])
            self.assertEqual(reader.bytesRead, len(content))
