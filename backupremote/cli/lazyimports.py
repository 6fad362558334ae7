"""
Standard modules the console script loads on first use, not at import.

Twisted's C{twisted.python.compat} imports C{http.cookiejar} for a
deprecated alias (C{cookielib}) that no command uses, and with it
C{urllib.request}, C{http.client} and C{email}: 12 modules, about 15 ms of
a command's start-up (5% of a C{db list}). Loaded lazily, they cost
nothing until something touches them, and then work as usual. (On Python
3.11 a lazy module's first use is not thread-safe: nothing here uses
C{http.cookiejar} at all, let alone from two threads.)
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

#: Imported at start-up by a dependency, used by no command.
UNUSED_AT_START = ("http.cookiejar",)


def loadOnFirstUse(name: str) -> None:
    """Make C{import name} give a module that is executed on its first attribute access."""
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        return
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(importlib.import_module(parent), child, module)


def deferUnusedImports() -> None:
    for name in UNUSED_AT_START:
        loadOnFirstUse(name)
