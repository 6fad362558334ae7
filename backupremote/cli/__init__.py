"""The ``backupremote`` command line."""
