"""The component registry: names to classes, per kind, with the plugin that provided each."""

from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass

from .errors import DuplicateComponentError, UnknownComponentError
from .interfaces import KIND_TITLES, KINDS, Component


@dataclass(frozen=True)
class Entry:
    """One registered component."""

    kind: str
    name: str
    cls: type[Component]
    plugin: str
    distribution: str | None
    version: str | None


class Registry:
    """All components by kind and name. Names are global within a kind."""

    def __init__(self) -> None:
        self._entries: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}

    def add(self, entry: Entry) -> None:
        table = self._entries[entry.kind]
        if entry.name in table:
            raise DuplicateComponentError(
                KIND_TITLES[entry.kind], entry.name, table[entry.name].plugin, entry.plugin
            )
        table[entry.name] = entry

    def remove_plugin(self, plugin: str) -> None:
        """Forget everything one plugin registered (used when its hook fails half-way)."""
        for table in self._entries.values():
            for name in [n for n, e in table.items() if e.plugin == plugin]:
                del table[name]

    def entry(self, kind: str, name: str) -> Entry:
        table = self._entries[kind]
        if name not in table:
            known = sorted(table)
            close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
            close += [k for k in known if name and name in k and k not in close][: 3 - len(close)]
            raise UnknownComponentError(KIND_TITLES[kind], name, known, close)
        return table[name]

    def get(self, kind: str, name: str) -> type[Component]:
        return self.entry(kind, name).cls

    def names(self, kind: str) -> list[str]:
        return sorted(self._entries[kind])

    def entries(self, kind: str | None = None, pattern: str = "*") -> list[Entry]:
        """Entries of one kind (or all), filtered by a shell-style wildcard on the name."""
        kinds = [kind] if kind else list(KINDS)
        out = []
        for k in kinds:
            for name in sorted(self._entries[k]):
                if fnmatch.fnmatchcase(name, pattern):
                    out.append(self._entries[k][name])
        return out

    def find_any(self, name: str) -> Entry | None:
        """The entry of that name in any kind (for `ganzoo show`)."""
        for kind in KINDS:
            if name in self._entries[kind]:
                return self._entries[kind][name]
        return None

    def all_names(self) -> list[str]:
        return sorted({n for table in self._entries.values() for n in table})
