"""
Run trial and end with the plain line ``N passed, N failed[, N skipped]``.

The counts come from trial's own result object, not from parsing its
output; the exit status is non-zero when anything failed or errored, or
when no test ran at all.

    python scripts/trial_summary.py [trial options] tests
"""

from __future__ import annotations

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from twisted.scripts.trial import Options, _getSuite, _makeRunner  # noqa: E402


def main(argv: list[str]) -> int:
    config = Options()
    config.parseOptions(argv)
    runner = _makeRunner(config)
    result = runner.run(_getSuite(config))
    passed = result.successes
    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    skipped = len(result.skips)
    line = f"{passed} passed, {failed} failed"
    if skipped:
        line += f", {skipped} skipped"
    sys.stdout.flush()
    print(line)
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
