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
