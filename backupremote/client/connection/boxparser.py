"""
A leaner parser for incoming AMP boxes, for the client's receiving end.

AMP's own parser (C{Int16StringReceiver}) joins its leftover with every
piece TLS hands over and slices each key and value out of the joined copy,
then goes through a method call per key and per value: for a stream of
~64 KB chunk values arriving in 16-32 KB pieces that is four to five copies
of every byte and most of the client's Python time. This one only keeps the
pieces until the value they belong to is complete, joins them once and
copies each value out once. The wire
format and the limits are AMP's: a key is 1-255 bytes, a value at most
65,535, an empty key ends the box.
"""

from __future__ import annotations

from typing import Any

from twisted.protocols import amp

_MAX_KEY = 255


class LeanBoxParsing:
    """Mix in before L{amp.AMP} (no protocol switching: no StartTLS)."""

    def makeConnection(self, transport: Any) -> None:
        self._pieces: list[bytes] = []
        self._buffered = 0
        self._needed = 2  # bytes before anything can be parsed
        self._parsedBox = amp.AmpBox()
        self._parsedKey: bytes | None = None
        super().makeConnection(transport)  # type: ignore[misc]

    def dataReceived(self, data: bytes) -> None:
        self._pieces.append(data)
        self._buffered += len(data)
        if self._buffered < self._needed:
            return  # the middle of a value: join nothing yet
        buffer = self._pieces[0] if len(self._pieces) == 1 else b"".join(self._pieces)
        end = len(buffer)
        at = 0
        box = self._parsedBox
        key = self._parsedKey
        needed = 2
        try:
            with memoryview(buffer) as view:
                while end - at >= 2:
                    length = (buffer[at] << 8) | buffer[at + 1]
                    if key is None and length > _MAX_KEY:
                        self._keyLengthLimitExceeded = True
                        self.transport.loseConnection()  # type: ignore[attr-defined]
                        at = end
                        return
                    if end - at - 2 < length:
                        needed = 2 + length
                        break
                    string = bytes(view[at + 2:at + 2 + length])
                    at += 2 + length
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
            rest = buffer[at:] if at else buffer
            self._pieces = [rest] if rest else []
            self._buffered = len(rest)
            self._needed = needed
            self._parsedBox = box
            self._parsedKey = key
