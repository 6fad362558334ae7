"""
The names of files in a destination: the same rules for every type.

A name is C{FILE} or C{FOLDER/FILE}, relative to the destination's root.
Each part is 1-200 characters of C{A-Z a-z 0-9 . _ + -}, starting with a
letter or a digit, so a name is the same on every server (no case, encoding
or escaping surprises) and can never climb out of the root. A name that
starts with a dot is ours to use for temporary files: L{temporaryName}.
"""

from __future__ import annotations

import re
import secrets
from datetime import datetime

from backupremote.protocol.errors import CONFIG_INVALID, BackupRemoteError

_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,199}")
_TEMPORARY = re.compile(r"\.([A-Za-z0-9][A-Za-z0-9._+-]{0,199})\.([0-9a-f]{16})\.partial")

#: The folder of the probe file written by C{testConnection} is the root.
PROBE_PREFIX = ".backupremote-probe-"


def checkName(name: str) -> str:
    """Return C{name} if it is a valid final name, else raise C{CONFIG_INVALID}."""
    parts = name.split("/") if isinstance(name, str) else []
    if not 1 <= len(parts) <= 2 or not all(_PART.fullmatch(part) for part in parts):
        raise BackupRemoteError(
            CONFIG_INVALID,
            f"{name!r} is not a destination file name: use FILE or FOLDER/FILE, "
            "each of letters, digits and . _ + - (not starting with . _ + -)")
    return name


def splitName(name: str) -> tuple[str | None, str]:
    """C{(folder or None, file)} of a final or temporary name."""
    folder, _, base = name.rpartition("/")
    return (folder or None), base


def joinName(folder: str | None, base: str) -> str:
    return f"{folder}/{base}" if folder else base


def temporaryName(name: str, token: str | None = None) -> str:
    """
    A fresh temporary name in the folder of the final name C{name}:
    C{FOLDER/.FILE.<16 hex>.partial}.
    """
    folder, base = splitName(checkName(name))
    return joinName(folder, f".{base}.{token or secrets.token_hex(8)}.partial")


def isTemporary(name: str) -> bool:
    """Whether C{name} (with or without a folder) is one of our temporary names."""
    return _TEMPORARY.fullmatch(splitName(name)[1]) is not None


def finalNameOf(temporary: str) -> str:
    """The final name a temporary name is for."""
    folder, base = splitName(temporary)
    match = _TEMPORARY.fullmatch(base)
    if match is None:
        raise BackupRemoteError(CONFIG_INVALID, f"{temporary!r} is not a temporary name")
    return joinName(folder, match.group(1))


def checkAnyName(name: str) -> str:
    """Return C{name} if it is a valid final or temporary name."""
    if isTemporary(name):
        folder, _ = splitName(name)
        if folder is None or _PART.fullmatch(folder):
            return name
    return checkName(name)


def isFolderName(part: str) -> bool:
    """Whether C{part} (one path segment) can be the folder of a name."""
    return _PART.fullmatch(part) is not None


def isListable(name: str) -> bool:
    """Whether a name found on a destination is one C{listFiles} reports."""
    try:
        checkAnyName(name)
    except BackupRemoteError:
        return False
    return True


def datedName(fileName: str, when: datetime) -> str:
    """C{YYYY-MM-DD/fileName}: the date-folder layout, by C{when}'s own date."""
    return checkName(f"{when.strftime('%Y-%m-%d')}/{fileName}")
