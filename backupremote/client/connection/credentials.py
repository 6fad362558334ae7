"""What a client proves itself with."""

from __future__ import annotations

from attrs import field, frozen


@frozen
class Credentials:
    """Client id, secret and licence token; the last two never shown in a repr."""

    clientId: str
    secret: str = field(repr=False)
    license: str = field(repr=False)
