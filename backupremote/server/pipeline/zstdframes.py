"""
Whether a zstd stream ends where its last frame ends.

The in-process decompressor (python-zstandard's stream reader) treats the
end of its input as the end of the data, so a stream cut inside a frame
decompresses without error. L{FrameWalker} follows the same bytes through
the frame and block headers (RFC 8878), skipping block contents, and says
whether every frame was complete: a few hundred steps per GB of dump.
"""

from __future__ import annotations

FRAME_MAGIC = 0xFD2FB528
SKIPPABLE_MAGIC_MASK = 0xFFFFFFF0
SKIPPABLE_MAGIC = 0x184D2A50

#: Frame_Content_Size field sizes by the descriptor's FCS flag.
_CONTENT_SIZE_BYTES = (0, 2, 4, 8)
_DICTIONARY_ID_BYTES = (0, 1, 2, 4)

_RAW, _RLE, _COMPRESSED = 0, 1, 2


class FrameWalker:
    """
    Fed a zstd stream in order (any piece sizes); C{complete} once it stands
    at the end of a whole frame, C{problem} when the bytes are no zstd frames.
    """

    def __init__(self) -> None:
        self._pending = bytearray()
        self._skip = 0
        self._state = "magic"
        self._checksum = False
        self._headerRest = 0
        self.frames = 0
        self.problem: str | None = None

    @property
    def complete(self) -> bool:
        """Whether what was fed so far is a whole number of complete frames."""
        return (self.problem is None and self.frames > 0 and self._state == "magic"
                and self._skip == 0 and not self._pending)

    def feed(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view and self.problem is None:
            if self._skip:
                step = min(self._skip, len(view))
                self._skip -= step
                view = view[step:]
                continue
            need = self._needed()
            take = min(need - len(self._pending), len(view))
            self._pending += view[:take]
            view = view[take:]
            if len(self._pending) == need:
                header, self._pending = bytes(self._pending), bytearray()
                self._advance(header)

    def _needed(self) -> int:
        """Bytes of the next header (or its first byte, for the frame header)."""
        if self._state in ("magic", "skippable"):
            return 4
        if self._state == "descriptor":
            return 1
        if self._state == "checksum":
            return 4
        if self._state == "block":
            return 3
        return self._headerRest

    def _advance(self, header: bytes) -> None:
        value = int.from_bytes(header, "little")
        if self._state == "magic":
            if value == FRAME_MAGIC:
                self._state = "descriptor"
            elif value & SKIPPABLE_MAGIC_MASK == SKIPPABLE_MAGIC:
                self._state = "skippable"
            else:
                self.problem = "not a zstd frame"
        elif self._state == "skippable":
            self._skip, self._state = value, "magic"
            self.frames += 1
        elif self._state == "descriptor":
            singleSegment = bool(value & 0x20)
            contentSize = _CONTENT_SIZE_BYTES[value >> 6] or (1 if singleSegment else 0)
            self._checksum = bool(value & 0x04)
            if value & 0x08:
                self.problem = "a zstd frame header has its reserved bit set"
                return
            rest = (0 if singleSegment else 1) + _DICTIONARY_ID_BYTES[value & 0x03] + contentSize
            self._headerRest, self._state = rest, "header"
            if rest == 0:
                self._state = "block"
        elif self._state == "header":
            self._state = "block"
        elif self._state == "block":
            last, kind, size = value & 1, (value >> 1) & 0x03, value >> 3
            if kind not in (_RAW, _RLE, _COMPRESSED):
                self.problem = "a zstd block has the reserved type"
                return
            self._skip = 1 if kind == _RLE else size
            if last:
                self._state = "checksum" if self._checksum else "magic"
                if not self._checksum:
                    self.frames += 1
        elif self._state == "checksum":
            self._state = "magic"
            self.frames += 1
