"""
The one AMP argument type for structured values.

Configs, options, statuses and manifests are attrs classes; they travel as
compact JSON made by cattrs, never pickle. Decoding is strict about types
(no ``"ab"`` becoming ``["a", "b"]``, no ``1.9`` becoming ``1``); what a
client sends must not carry unknown keys, while answers may gain keys in
later server versions without breaking older clients.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from typing import Any, get_args, get_origin

import cattrs
from attrs import field, frozen
from twisted.protocols import amp


def _structureDatetime(value: Any, _type: type) -> datetime:
    if not isinstance(value, str):
        raise ValueError("a timestamp must be an ISO 8601 string")
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError("a timestamp must carry its time zone")
    return parsed.astimezone(timezone.utc)


def _unstructureDatetime(value: datetime) -> str:
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _exactly(kind: type, accepted: tuple[type, ...]) -> Any:
    def structure(value: Any, _type: type) -> Any:
        if isinstance(value, bool) and kind is not bool:
            raise TypeError(f"expected {kind.__name__}, got a boolean")
        if not isinstance(value, accepted):
            raise TypeError(f"expected {kind.__name__}, got {type(value).__name__}")
        return kind(value)

    return structure


def makeConverter(forbidExtraKeys: bool) -> cattrs.Converter:
    """A converter that never coerces: wrong JSON types raise."""
    converter = cattrs.Converter(forbid_extra_keys=forbidExtraKeys)
    converter.register_structure_hook(datetime, _structureDatetime)
    converter.register_unstructure_hook(datetime, _unstructureDatetime)
    converter.register_structure_hook(str, _exactly(str, (str,)))
    converter.register_structure_hook(int, _exactly(int, (int,)))
    converter.register_structure_hook(float, _exactly(float, (int, float)))
    converter.register_structure_hook(bool, _exactly(bool, (bool,)))

    def structureList(value: Any, listType: Any) -> list[Any]:
        if not isinstance(value, list):
            raise TypeError(f"expected a list, got {type(value).__name__}")
        (itemType,) = get_args(listType) or (Any,)
        return [converter.structure(item, itemType) for item in value]

    converter.register_structure_hook_func(lambda t: get_origin(t) is list, structureList)
    return converter


#: For what a peer sends us as a request: unknown keys are refused.
converter = makeConverter(forbidExtraKeys=True)
#: For answers: a newer server may add keys an older client ignores.
answerConverter = makeConverter(forbidExtraKeys=False)


class ValueTooLarge(ValueError):
    """A structured value does not fit in one AMP value."""


class InvalidValue(ValueError):
    """
    A structured value that is not a well-formed instance of its type.

    @ivar problems: one line per bad field, like C{"expected int @ $.port"}.
    """

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems

    def fields(self) -> dict[str, str]:
        """The problems by field path (C{"backup.level"}), as far as they name one."""
        fields: dict[str, str] = {}
        for problem in self.problems:
            text, _, where = problem.rpartition(" @ $")
            if not text:
                fields.setdefault("(value)", problem)
                continue
            path = where.lstrip(".")
            extra = re.fullmatch(r"extra fields found \((.*)\)", text)
            if extra:
                for name in extra.group(1).split(", "):
                    fields.setdefault(f"{path}.{name}" if path else name, "is not a known field")
            else:
                fields.setdefault(path or "(value)", text)
        return fields


@frozen
class Encoded:
    """
    A value already encoded by L{Structured.encoded}: an answer sent many
    times unchanged (a client's configurations, a finished run) is encoded
    once, not at every request.
    """

    value: Any
    data: bytes = field(repr=False)


class Structured(amp.Argument):
    """
    An AMP argument holding one attrs value of C{valueType} as JSON.

    @param answer: C{True} in a command's C{response}: decoding then ignores
        keys it does not know (forward compatibility).
    """

    def __init__(self, valueType: Any, optional: bool = False, answer: bool = False) -> None:
        super().__init__(optional)
        self.valueType = valueType
        self._converter = answerConverter if answer else converter

    def encoded(self, value: Any) -> Encoded:
        """C{value} encoded now, to be sent as this argument any number of times."""
        return Encoded(value, self.toString(value))

    def toString(self, inObject: Any) -> bytes:
        if type(inObject) is Encoded:
            return inObject.data
        encoded = json.dumps(
            self._converter.unstructure(inObject, self.valueType),
            separators=(",", ":"),
            sort_keys=True,
        ).encode("utf-8")
        if len(encoded) > amp.MAX_VALUE_LENGTH:
            raise ValueTooLarge(
                f"{len(encoded)} bytes of JSON exceed one AMP value"
            )
        return encoded

    def fromString(self, inString: bytes) -> Any:
        try:
            data = json.loads(inString)
        except ValueError:
            raise InvalidValue(["not valid JSON"]) from None
        try:
            return self._converter.structure(data, self.valueType)
        except cattrs.BaseValidationError as error:
            raise InvalidValue(cattrs.transform_error(error)) from None
        except (ValueError, TypeError) as error:
            raise InvalidValue([str(error)]) from None
