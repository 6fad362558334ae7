"""Tests of the streaming backup pipeline (L{backupremote.server.pipeline})."""
