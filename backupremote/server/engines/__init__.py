"""
The database engines, by name.

Each module implements L{IEngine}; L{defaultEngines} is the only place that
lists them. The table is a value: the service builds one and hands it to
what needs it, so two servers in one process share no engine state.
"""

from __future__ import annotations

from backupremote.server.engines.base import IEngine


def defaultEngines() -> dict[str, IEngine]:
    """A new table of every engine this server knows, by name."""
    from backupremote.server.engines.firebird import FirebirdEngine
    from backupremote.server.engines.mariadb import MariaDBEngine
    from backupremote.server.engines.postgresql import PostgreSQLEngine
    from backupremote.server.engines.sqlite import SQLiteEngine

    engines: list[IEngine] = [PostgreSQLEngine(), MariaDBEngine(), SQLiteEngine(),
                              FirebirdEngine()]
    return {engine.name: engine for engine in engines}
