"""The contract stands alone: loading protocol/ loads no licence code."""

from __future__ import annotations

import os
import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

import backupremote

_PROBE = """
import pkgutil, importlib, sys
import backupremote.protocol as protocol
for module in pkgutil.iter_modules(protocol.__path__):
    importlib.import_module("backupremote.protocol." + module.name)
print(sorted(m for m in sys.modules if m.startswith(("backupremote.license", "backupremote.server",
                                                    "backupremote.client"))))
"""


class LayeringTests(SynchronousTestCase):
    def test_protocolImportsNoLicenseServerOrClient(self) -> None:
        # this tree's package, not an installed copy
        tree = os.path.dirname(os.path.dirname(os.path.abspath(backupremote.__file__)))
        done = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True,
                              timeout=60, check=True, env=dict(os.environ, PYTHONPATH=tree))
        self.assertEqual(done.stdout.strip(), "[]")
