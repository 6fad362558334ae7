"""
The one AMP argument type for structured values.

Configs, options, statuses and manifests are attrs classes; they travel as
compact JSON made by a single cattrs converter, never pickle.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import cattrs
from twisted.protocols import amp

converter = cattrs.Converter(forbid_extra_keys=True)


def _structureDatetime(value: Any, _type: type) -> datetime:
    if not isinstance(value, str):
        raise ValueError("a timestamp must be an ISO 8601 string")
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError("a timestamp must carry its time zone")
    return parsed.astimezone(timezone.utc)


def _unstructureDatetime(value: datetime) -> str:
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


converter.register_structure_hook(datetime, _structureDatetime)
converter.register_unstructure_hook(datetime, _unstructureDatetime)


class ValueTooLarge(ValueError):
    """A structured value does not fit in one AMP value."""


class Structured(amp.Argument):
    """
    An AMP argument holding one attrs value of C{valueType} as JSON.

    Decoding refuses anything that is not exactly a C{valueType}: unknown
    keys, wrong types and missing fields all raise, so a responder only ever
    sees a well-formed value.
    """

    def __init__(self, valueType: Any, optional: bool = False) -> None:
        super().__init__(optional)
        self.valueType = valueType

    def toString(self, inObject: Any) -> bytes:
        encoded = json.dumps(
            converter.unstructure(inObject, self.valueType),
            separators=(",", ":"),
            sort_keys=True,
        ).encode("utf-8")
        if len(encoded) > amp.MAX_VALUE_LENGTH:
            raise ValueTooLarge(
                f"{len(encoded)} bytes of JSON exceed one AMP value"
            )
        return encoded

    def fromString(self, inString: bytes) -> Any:
        return converter.structure(json.loads(inString), self.valueType)
