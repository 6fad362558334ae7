"""
A leaner parser for incoming AMP boxes, for the client's receiving end.

AMP's own parser (C{Int16StringReceiver}) joins its leftover with every
piece TLS hands over and slices each key and value out of the joined copy,
then goes through a method call per key and per value: for a stream of
~64 KB chunk values arriving in 16 KB pieces (one TLS record each) that is
four to five copies of every byte and most of the client's Python time.
This one only keeps the pieces until the string they belong to is
complete, then copies that string out of them once (a string that is a
whole piece is not copied at all). The wire format and the limits are
AMP's: a key is 1-255 bytes, a value at most 65,535, an empty key ends the
box.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from twisted.protocols import amp

_MAX_KEY = 255


class LeanBoxParsing:
    """Mix in before L{amp.AMP} (no protocol switching: no StartTLS)."""

    def makeConnection(self, transport: Any) -> None:
        self._pieces: deque[bytes] = deque()
        self._offset = 0  # of the first piece's bytes, those already parsed
        self._buffered = 0  # bytes received and not parsed yet
        self._needed = 2  # bytes before anything can be parsed
        self._length: int | None = None  # of the string being received, once known
        self._parsedBox = amp.AmpBox()
        self._parsedKey: bytes | None = None
        self._keyLengthLimitExceeded = False
        super().makeConnection(transport)  # type: ignore[misc]

    def dataReceived(self, data: bytes) -> None:
        if not data or self._keyLengthLimitExceeded:
            return  # (after a key too long: the connection is closing, nothing more is read)
        self._pieces.append(data)
        self._buffered += len(data)
        if self._buffered < self._needed:
            return  # the middle of a value: nothing to do yet
        box = self._parsedBox
        key = self._parsedKey
        length = self._length
        take = self._take
        try:
            while True:
                if length is None:
                    if self._buffered < 2:
                        self._needed = 2
                        return
                    prefix = take(2)
                    length = (prefix[0] << 8) | prefix[1]
                    if key is None and length > _MAX_KEY:
                        self._keyLengthLimitExceeded = True
                        self.transport.loseConnection()  # type: ignore[attr-defined]
                        self._pieces.clear()
                        self._buffered = self._offset = 0
                        length = None
                        return
                if self._buffered < length:
                    self._needed = length
                    return
                string = take(length)
                length = None
                if key is not None:
                    box[key] = string
                    key = None
                elif string:
                    key = string
                else:
                    self._parsedBox = amp.AmpBox()
                    self.ampBoxReceived(box)  # type: ignore[attr-defined]
                    box = self._parsedBox
        finally:
            self._parsedBox = box
            self._parsedKey = key
            self._length = length

    def _take(self, count: int) -> bytes:
        """The next C{count} buffered bytes (there are that many), copied once at most."""
        self._buffered -= count
        pieces = self._pieces
        offset = self._offset
        if not count:
            return b""
        first = pieces[0]
        end = offset + count
        if end < len(first):
            self._offset = end
            return first[offset:end]
        if end == len(first):
            pieces.popleft()
            self._offset = 0
            return first if not offset else first[offset:]
        parts: list[bytes | memoryview] = [memoryview(first)[offset:]]
        pieces.popleft()
        count -= len(first) - offset
        while count and count >= len(pieces[0]):
            piece = pieces.popleft()
            parts.append(piece)
            count -= len(piece)
        if count:
            parts.append(memoryview(pieces[0])[:count])
        self._offset = count
        return b"".join(parts)
