"""
Secrets at rest: AES-256-GCM with a key file in a data folder.

The server seals database passwords with it, the client its destinations'
passwords and keys. The key file (``secrets.key``, mode 0600) is made on
first use; a key file that group or others can read is refused. Each value
is bound to the row it belongs to (associated data), so a ciphertext copied
onto another row does not decrypt.
"""

from __future__ import annotations

import base64
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from twisted.python.filepath import FilePath

from backupremote.filewriting import writePrivateFile
from backupremote.private import refuseShared

KEY_NAME = "secrets.key"
_PREFIX = "v1:"


class SecretBoxError(Exception):
    """A stored secret cannot be decrypted (wrong key file or altered)."""


class SecretBox:
    """Encrypts and decrypts short secrets with the data folder's key."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    @classmethod
    def inDataDir(cls, dataDir: FilePath) -> SecretBox:
        keyFile = dataDir.child(KEY_NAME)
        if not keyFile.exists():
            writePrivateFile(keyFile, base64.b64encode(AESGCM.generate_key(bit_length=256)))
        refuseShared(keyFile, "data folder's key file")
        return cls(base64.b64decode(keyFile.getContent()))

    def seal(self, plaintext: str, context: str) -> str:
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, plaintext.encode("utf-8"), context.encode("utf-8"))
        return _PREFIX + base64.b64encode(nonce + sealed).decode("ascii")

    def open(self, ciphertext: str, context: str) -> str:
        if not ciphertext.startswith(_PREFIX):
            raise SecretBoxError("unknown secret format")
        raw = base64.b64decode(ciphertext[len(_PREFIX):])
        try:
            return self._aead.decrypt(raw[:12], raw[12:], context.encode("utf-8")).decode("utf-8")
        except InvalidTag:
            raise SecretBoxError("the secret does not decrypt with this key file") from None
