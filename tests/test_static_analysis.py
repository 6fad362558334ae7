"""
pyflakes and mypy find nothing new: run as a test, so a new finding is one
failure in the suite's own count instead of a step that stops the run before
any test.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

ROOT = Path(__file__).resolve().parent.parent


class StaticAnalysisTests(SynchronousTestCase):
    def test_noNewFindings(self) -> None:
        """scripts/static-analysis: no finding beyond scripts/static-analysis.baseline."""
        done = subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "static-analysis")],
            cwd=ROOT, capture_output=True, text=True, timeout=600,
        )
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
