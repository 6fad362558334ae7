"""The structured argument: strict types, size limit, forward-compatible answers."""

from __future__ import annotations

import json

from attrs import frozen
from hypothesis import given
from hypothesis import strategies as st
from twisted.protocols import amp
from twisted.trial.unittest import SynchronousTestCase

from backupremote.protocol.models import Capabilities, ChunkLimits, ServerOffer
from backupremote.protocol.structured import Encoded, InvalidValue, Structured, ValueTooLarge


@frozen
class Sample:
    name: str
    port: int
    ratio: float
    enabled: bool
    tags: list[str]


GOOD = {"name": "db", "port": 5432, "ratio": 0.5, "enabled": True, "tags": ["a"]}


class StructuredTests(SynchronousTestCase):
    def test_roundTrip(self) -> None:
        argument = Structured(Capabilities)
        value = Capabilities([1], "0.1.0", ["secret+license"],
                             ServerOffer(chunkLimits=ChunkLimits(60000, 8, 16), features=["x"]))
        self.assertEqual(argument.fromString(argument.toString(value)), value)

    def test_noCoercion(self) -> None:
        argument = Structured(Sample)
        for field, wrong in [("name", 1), ("port", "5432"), ("port", 1.9), ("port", True),
                             ("ratio", "0.5"), ("enabled", 1), ("tags", "ab"),
                             ("tags", [1])]:
            with self.assertRaises(InvalidValue, msg=f"{field}={wrong!r}") as raised:
                argument.fromString(json.dumps(GOOD | {field: wrong}).encode())
            self.assertIn(f"$.{field}", str(raised.exception))
            self.assertIn(field, raised.exception.fields())
        self.assertEqual(argument.fromString(json.dumps(GOOD | {"ratio": 1}).encode()).ratio, 1.0)

    def test_unknownKeys(self) -> None:
        """Requests refuse unknown keys; answers tolerate them."""
        data = json.dumps(GOOD | {"surprise": 1}).encode()
        with self.assertRaises(InvalidValue) as raised:
            Structured(Sample).fromString(data)
        self.assertEqual(raised.exception.fields(), {"surprise": "is not a known field"})
        self.assertEqual(Structured(Sample, answer=True).fromString(data).port, 5432)

    def test_notJSON(self) -> None:
        with self.assertRaises(InvalidValue):
            Structured(Sample).fromString(b"\xff{")

    def test_encodedOnceSentAsIs(self) -> None:
        """An L{Encoded} value travels as the bytes it was encoded to, even as a box value."""
        argument = Structured(Sample, answer=True)
        value = Sample(**GOOD)
        encoded = argument.encoded(value)
        self.assertIsInstance(encoded, Encoded)
        self.assertEqual(encoded.value, value)
        self.assertEqual(encoded.data, argument.toString(value))
        self.assertIs(argument.toString(encoded), encoded.data)
        box: dict[bytes, bytes] = {}
        argument.toBox(b"sample", box, {"sample": encoded}, None)
        self.assertEqual(argument.fromString(box[b"sample"]), value)

    def test_encodedTooLarge(self) -> None:
        with self.assertRaises(ValueTooLarge):
            Structured(Sample).encoded(Sample("x" * amp.MAX_VALUE_LENGTH, 1, 1.0, True, []))

    def test_tooLarge(self) -> None:
        with self.assertRaises(ValueTooLarge):
            Structured(Sample).toString(Sample("x" * amp.MAX_VALUE_LENGTH, 1, 1.0, True, []))

    @given(st.text(), st.integers(), st.floats(allow_nan=False), st.booleans(),
           st.lists(st.text()))
    def test_anyValidValueRoundTrips(self, name: str, port: int, ratio: float,
                                     enabled: bool, tags: list[str]) -> None:
        argument = Structured(Sample)
        value = Sample(name, port, ratio, enabled, tags)
        try:
            encoded = argument.toString(value)
        except ValueTooLarge:
            return
        self.assertEqual(argument.fromString(encoded), value)
