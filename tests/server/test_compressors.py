"""
Every compressor is an L{ICompressor} (a typed Protocol: mypy checks the
members' types, this the members' presence), and the server's table of them
is the options contract's list of compressions and levels.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase
from backupremote.protocol.options import COMPRESSION_LEVELS, COMPRESSIONS
from backupremote.server.machinery.compressors import COMPRESSORS, ICompressor
from backupremote.server.machinery.toolfinder import Tool


class CompressorTableTests(SynchronousTestCase):
    def test_everyCompressorProvidesICompressor(self) -> None:
        for name, compressor in COMPRESSORS.items():
            self.assertIsInstance(compressor, ICompressor)
            self.assertEqual(compressor.name, name)

    def test_theContractsCompressions(self) -> None:
        self.assertEqual(tuple(COMPRESSORS), COMPRESSIONS)
        self.assertEqual({name: c.levels for name, c in COMPRESSORS.items()
                          if c.levels is not None}, COMPRESSION_LEVELS)

    def test_eachIsDoneOneWay(self) -> None:
        """A compressor is a program, or in-process (zip), or nothing (none)."""
        for name, compressor in COMPRESSORS.items():
            inProcess = compressor.transform("m", 6) is not None
            self.assertTrue(bool(compressor.programs) + inProcess + (not compressor.compresses)
                            == 1, name)
            if compressor.programs:
                tool = Tool(compressor.programs[0], "/usr/bin/x", "1")
                self.assertEqual(compressor.compressArgv(tool, 3, 2)[0], "/usr/bin/x")
            else:
                self.assertRaises(ValueError, compressor.compressArgv, Tool("x", "/x", "1"), 3, 2)
