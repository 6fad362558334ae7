"""
Who may act on a database configuration or a run: its owner, or an admin.

Every configuration and every run has an owner, the client that created
it. A client sees and acts on its own only; anything else answers
C{NOT_FOUND}, word for word what an id that does not exist answers, so
that ids, names and counts of other clients never leak. The operator makes
a client an admin (C{[clients.ID] role = "admin"} in C{server.toml}); an
admin sees and acts on every configuration and run, including those left
without an owner by the schema migration.
"""

from __future__ import annotations

from typing import Iterable

#: The roles C{[clients.ID] role} accepts; "client" is the default.
ROLES = ("client", "admin")


class Ownership:
    """The access rule, with the server's admins (from C{server.toml})."""

    def __init__(self, admins: Iterable[str] = ()) -> None:
        self.admins = frozenset(admins)

    def isAdmin(self, clientId: str) -> bool:
        return clientId in self.admins

    def allows(self, clientId: str, owner: str | None) -> bool:
        """May C{clientId} see and act on an object owned by C{owner}?"""
        return self.isAdmin(clientId) or (owner is not None and owner == clientId)

    def scope(self, clientId: str) -> str | None:
        """The owner to filter listings by: C{None} (everything) for an admin."""
        return None if self.isAdmin(clientId) else clientId
