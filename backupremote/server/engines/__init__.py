"""
The database engines, by name.

Each module implements L{IEngine}; this table is the only place that lists
them.
"""

from __future__ import annotations

from backupremote.server.engines.base import IEngine

ENGINES: dict[str, IEngine] = {}


def register(engine: IEngine) -> IEngine:
    ENGINES[engine.name] = engine
    return engine


def _registerAll() -> None:
    # Each engine module registers itself on import.
    from backupremote.server.engines import firebird, mariadb, postgresql, sqlite  # noqa: F401


_registerAll()
