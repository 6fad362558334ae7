"""The server's secrets at rest: L{backupremote.secretbox}, shared with the client."""

from backupremote.secretbox import KEY_NAME, SecretBox, SecretBoxError

__all__ = ["KEY_NAME", "SecretBox", "SecretBoxError"]
