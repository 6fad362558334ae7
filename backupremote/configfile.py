"""
Reading TOML configuration files strictly.

Unknown keys are refused (a typo must not silently fall back to a default),
and every error names the key so the user can fix it.
"""

from __future__ import annotations

import difflib
import math
import os
import tomllib
from typing import Any

from twisted.python.filepath import FilePath

from backupremote.protocol.errors import CONFIG_INVALID, BackupRemoteError


def configError(message: str) -> BackupRemoteError:
    return BackupRemoteError(CONFIG_INVALID, message)


def readToml(path: FilePath) -> dict[str, Any]:
    """The parsed file, or a L{BackupRemoteError} saying what is wrong."""
    try:
        with path.open("r") as handle:
            return tomllib.loads(handle.read().decode("utf-8"))
    except FileNotFoundError:
        raise configError(f"configuration file {path.path} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise configError(f"cannot read {path.path}: {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise configError(f"{path.path} is not valid TOML: {e}") from None


class Section:
    """One table of a config file, consumed key by key, with strict types."""

    def __init__(self, data: dict[str, Any], name: str, base: FilePath) -> None:
        raw = data.get(name, {})
        if not isinstance(raw, dict):
            raise configError(f"[{name}] must be a table")
        self._data = dict(raw)
        self._name = name
        self._base = base

    def _take(self, key: str, kind: type | tuple[type, ...], default: Any) -> Any:
        value = self._data.pop(key, default)
        if value is not default and not isinstance(value, kind):
            raise configError(f"{self._name}.{key} has the wrong type")
        return value

    def string(self, key: str, default: Any = None) -> Any:
        value = self._take(key, str, default)
        if value is not default and not value:
            raise configError(f"{self._name}.{key} must not be empty")
        return value

    def number(self, key: str, default: float, minimum: float = 0) -> float:
        value = self._take(key, (int, float), default)
        if isinstance(value, bool) or not math.isfinite(value) or value < minimum:
            raise configError(f"{self._name}.{key} must be a finite number >= {minimum}")
        return value

    def integer(self, key: str, default: int, minimum: int = 0) -> int:
        value = self._take(key, int, default)
        if isinstance(value, bool) or value < minimum:
            raise configError(f"{self._name}.{key} must be an integer >= {minimum}")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value: bool = self._take(key, bool, default)
        return value

    def integers(self, key: str, minimum: int = 0) -> tuple[int, ...] | None:
        """A list of integers >= C{minimum}, or C{None} when the key is absent."""
        values = self._take(key, list, None)
        if values is None:
            return None
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= minimum
                   for v in values):
            raise configError(f"{self._name}.{key} must be a list of integers >= {minimum}")
        return tuple(values)

    def table(self, key: str) -> dict[str, Any] | None:
        """A table (C{key = {...}} or C{[SECTION.key]}), or C{None} when absent."""
        value = self._take(key, dict, None)
        return None if value is None else dict(value)

    def strings(self, key: str) -> tuple[str, ...] | None:
        """A list of non-empty strings, or C{None} when the key is absent."""
        values = self._take(key, list, None)
        if values is None:
            return None
        if not all(isinstance(v, str) and v for v in values):
            raise configError(f"{self._name}.{key} must be a list of non-empty strings")
        return tuple(values)

    def path(self, key: str, required: bool = False) -> FilePath | None:
        """A path, relative paths taken from the config file's folder."""
        value = self.string(key)
        if value is None:
            if required:
                raise self.missing(key)
            return None
        return self._resolve(value)

    def paths(self, key: str) -> tuple[FilePath, ...]:
        values = self._take(key, list, [])
        if not all(isinstance(v, str) and v for v in values):
            raise configError(f"{self._name}.{key} must be a list of paths")
        return tuple(self._resolve(v) for v in values)

    def _resolve(self, value: str) -> FilePath:
        # Relative paths may leave the config's folder (``../shared/x``).
        return FilePath(os.path.normpath(os.path.join(self._base.path, value)))

    def missing(self, key: str) -> BackupRemoteError:
        """C{key} is required: say so, and name a present key that looks like a typo of it."""
        near = difflib.get_close_matches(key, list(self._data), n=1, cutoff=0.7)
        hint = f" (is {self._name}.{near[0]} a typo of it?)" if near else ""
        return configError(f"{self._name}.{key} is required{hint}")

    def done(self) -> None:
        """Refuse whatever key was not consumed."""
        if self._data:
            names = ", ".join(f"{self._name}.{k}" for k in sorted(self._data))
            raise configError(f"unknown configuration key(s): {names}")


def refuseUnknownSections(data: dict[str, Any], known: set[str]) -> None:
    unknown = sorted(set(data) - known)
    if unknown:
        raise configError(f"unknown configuration section(s): {', '.join(unknown)}")



def namingFile(path: FilePath, build: Any) -> Any:
    """C{build()}, with the config file's path in front of any error's message."""
    try:
        return build()
    except BackupRemoteError as error:
        if path.path in error.message:
            raise
        raise BackupRemoteError(error.code, f"{path.path}: {error.message}",
                                details=error.details) from None
