"""Module attributes loaded on first use (PEP 562), for names whose modules import PyTorch."""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any


def lazy_attributes(package: str, table: dict[str, Callable[[], ModuleType]]) -> Callable[[str], Any]:
    """A module ``__getattr__``: the first read of ``name`` calls ``table[name]()``, which
    imports and returns the module defining it (an explicit import statement, never a name
    looked up at run time), and caches the value in the package's namespace."""

    def getattr_(name: str) -> Any:
        loader = table.get(name)
        if loader is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(loader(), name)
        setattr(sys.modules[package], name, value)
        return value

    return getattr_
