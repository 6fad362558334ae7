"""``python -m backupremote``: the same as the ``backupremote`` script."""

from backupremote.cli.main import run

run()
