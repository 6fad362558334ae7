"""
How big one AMP box may grow while it is being read.

AMP keeps every key and value of a box in memory until the empty key that
ends it, and nothing in Twisted bounds that: one connection that opens a
box and never closes it can grow the process by gigabytes. The limit here
is checked as each key and value arrives, in the parser, so it holds for
every command, known or not, before any responder runs.
"""

from __future__ import annotations

from typing import Callable, Iterable

from attrs import frozen
from twisted.protocols import amp

#: The most one key-value pair can take on the wire: two length prefixes,
#: a key of at most 255 bytes and a value of at most 65,535.
MAX_PAIR_BYTES = 2 + 255 + 2 + 65535

#: Keys AMP adds to every command box (C{_ask}, C{_command}).
_ENVELOPE_KEYS = 2


@frozen
class BoxLimit:
    """The most keys and bytes (keys and values with their prefixes) one box may carry."""

    maxBytes: int
    maxKeys: int

    def allows(self, keys: int, size: int) -> bool:
        return keys <= self.maxKeys and size <= self.maxBytes

    @classmethod
    def forCommands(
        cls, commands: Iterable[type[amp.Command]], extraKeys: int = 4,
    ) -> BoxLimit:
        """
        The largest box any of C{commands} can legitimately make, with
        C{extraKeys} of margin: every value may be full, so the bytes follow
        from the keys.
        """
        widest = max(len(command.arguments) for command in commands)
        keys = widest + _ENVELOPE_KEYS + extraKeys
        return cls(maxBytes=keys * MAX_PAIR_BYTES, maxKeys=keys)


#: Before ``auth``: only ``auth`` and ``capabilities`` are answered, and both are small.
PRE_AUTH = BoxLimit(maxBytes=64 * 1024, maxKeys=16)


class BoundedBoxes:
    """
    Mixin for L{amp.AMP} (put it first in the bases): counts the keys and
    bytes of the box being read and calls L{boxLimitExceeded} the moment
    it passes L{boxLimit}, without storing the value that passed it. After
    that, nothing more of the connection is parsed.

    @ivar boxLimit: called for the limit that applies now (it may depend on
        the session: before and after ``auth``).
    """

    boxLimit: Callable[[], BoxLimit]
    _boxKeys = 0
    _boxBytes = 0
    _boxRefused = False

    def boxLimitExceeded(self, limit: BoxLimit, keys: int, size: int) -> None:
        """The box being read passed C{limit}: drop the connection at once."""
        self.transport.abortConnection()  # type: ignore[attr-defined]

    def _count(self, string: bytes) -> bool:
        self._boxBytes += 2 + len(string)
        limit = self.boxLimit()
        if limit.allows(self._boxKeys, self._boxBytes):
            return True
        self._boxRefused = True
        self.paused = True  # IntNStringReceiver stops parsing what it already holds
        self._currentBox = None
        self.boxLimitExceeded(limit, self._boxKeys, self._boxBytes)
        return False

    def dataReceived(self, data: bytes) -> None:
        if self._boxRefused:
            return
        super().dataReceived(data)  # type: ignore[misc]
        if self._boxRefused:
            self._unprocessed = b""  # what followed the refused pair in this read

    def proto_init(self, string: bytes) -> str:
        self._boxKeys = 0
        self._boxBytes = 0
        return super().proto_init(string)  # type: ignore[misc]

    def proto_key(self, string: bytes) -> str:
        if string:
            self._boxKeys += 1
            if not self._count(string):
                return "done"
        else:
            self._boxBytes += 2
        return super().proto_key(string)  # type: ignore[misc]

    def proto_value(self, string: bytes) -> str:
        if not self._count(string):
            return "done"
        return super().proto_value(string)  # type: ignore[misc]

    def proto_done(self, string: bytes) -> str:
        """Nothing after a refused box is read."""
        return "done"
