"""
Every engine, the in-memory twin included, provides all of L{IEngine}, and
the contract's engine and format lists (what clients validate against) are
the server's engines.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from backupremote.protocol.databases import ENGINES
from backupremote.protocol.options import FORMATS
from backupremote.server.engines import defaultEngines
from backupremote.server.engines.base import IEngine
from backupremote.testing import MemoryEngine


class EngineContractTests(SynchronousTestCase):
    def test_everyEngineProvidesIEngine(self) -> None:
        for engine in [*defaultEngines().values(), MemoryEngine()]:
            verifyObject(IEngine, engine)
            self.assertTrue(engine.formats, engine.name)
            self.assertIsInstance(engine.formats, tuple)

    def test_contractNamesTheServersEngines(self) -> None:
        engines = defaultEngines()
        self.assertEqual(tuple(engines), ENGINES)
        self.assertEqual({name: engine.formats for name, engine in engines.items()}, FORMATS)
