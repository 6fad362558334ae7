"""L{LeanBoxParsing} parses exactly what AMP's own parser does, however the bytes are split."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.testing import StringTransport
from twisted.protocols import amp
from twisted.trial.unittest import SynchronousTestCase

from backupremote.client.connection.boxparser import LeanBoxParsing

keys = st.binary(min_size=1, max_size=255)
values = st.one_of(st.binary(max_size=300), st.integers(60_000, 65_535).map(lambda n: b"v" * n))
boxes = st.lists(st.dictionaries(keys, values, max_size=5), min_size=1, max_size=6)


class Collect:
    def __init__(self) -> None:
        self.boxes: list[dict[bytes, bytes]] = []
        self.lost = False

    def ampBoxReceived(self, box: Any) -> None:
        self.boxes.append(dict(box))


class Stock(Collect, amp.BinaryBoxProtocol):
    def __init__(self) -> None:
        Collect.__init__(self)
        amp.BinaryBoxProtocol.__init__(self, self)

    def startReceivingBoxes(self, sender: Any) -> None:
        pass


class Lean(LeanBoxParsing, Stock):
    pass


def feed(protocol: Any, data: bytes, cuts: list[int]) -> Any:
    protocol.makeConnection(StringTransport())
    previous = 0
    for cut in sorted(c % (len(data) + 1) for c in cuts) + [len(data)]:
        protocol.dataReceived(data[previous:cut])
        previous = cut
    return protocol


class LeanBoxParsingTests(SynchronousTestCase):
    @given(boxes, st.lists(st.integers(0, 10**6), max_size=20))
    def test_sameBoxesAsAMP(self, sent: list[dict[bytes, bytes]], cuts: list[int]) -> None:
        data = b"".join(amp.AmpBox(box).serialize() for box in sent)
        stock = feed(Stock(), data, cuts)
        lean = feed(Lean(), data, cuts)
        self.assertEqual(lean.boxes, stock.boxes)
        self.assertEqual(lean.boxes, sent)
        self.assertEqual(lean._buffered, 0)

    def test_keyTooLongCloses(self) -> None:
        lean = feed(Lean(), b"\x01\x00" + b"k" * 256, [])
        self.assertTrue(lean.transport.disconnecting)
        self.assertTrue(lean._keyLengthLimitExceeded)
        self.assertEqual(lean.boxes, [])

    def test_nothingParsedAfterAKeyTooLong(self) -> None:
        """
        The connection closes after a key too long, but data may still
        arrive until it has: none of it is parsed, as with AMP's own parser.
        """
        good = amp.AmpBox({b"a": b"1"}).serialize()
        lean = feed(Lean(), b"\x00\x01k\x00\x03abc\x01\x2cKK", [])
        self.assertTrue(lean._keyLengthLimitExceeded)
        lean.dataReceived(b"K" * 300 + good)
        lean.dataReceived(good)
        self.assertEqual(lean.boxes, [])
        self.assertEqual((lean._buffered, len(lean._pieces)), (0, 0))

    def test_partialBoxWaits(self) -> None:
        data = amp.AmpBox({b"a": b"1" * 70}).serialize()
        lean = feed(Lean(), data[:-1], [5, 40])
        self.assertEqual(lean.boxes, [])
        lean.dataReceived(data[-1:])
        self.assertEqual(lean.boxes, [{b"a": b"1" * 70}])

    def test_aStringThatIsAWholePieceIsNotCopied(self) -> None:
        """The common case of the stream (a TLS record's worth of a value) costs no copy."""
        value = b"v" * 16_384
        lean = feed(Lean(), b"\x00\x01k" + len(value).to_bytes(2, "big"), [])
        lean.dataReceived(value)
        lean.dataReceived(b"\x00\x00")
        self.assertEqual(lean.boxes, [{b"k": value}])
        self.assertIs(lean.boxes[0][b"k"], value)
