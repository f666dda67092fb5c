"""The component registry: names to classes, per kind, with the plugin that provided each.

Names are global: one name means one component whatever its kind, because options are
addressed by name alone (``-o NAME.key=value``, ``[options.NAME]``) and ``ganzoo show NAME``
looks a name up across kinds. A second registration of a name, in any kind, is an error that
names both plugins.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from dataclasses import dataclass

from .errors import DuplicateComponentError, UnknownComponentError
from .interfaces import Component
from .kinds import KIND_TITLES, KINDS
from .util.textsafe import bare, shown

# Lower case, digits and hyphens (underscores tolerated), starting with a letter: names are
# typed on command lines and used as TOML keys and file-name parts.
NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
BUILTIN_DISTRIBUTION = "gan-zoo"  # the distribution whose plugins are gan-zoo's own


class InvalidNameError(ValueError):
    """A component name that breaks the naming rules (see docs/plugins.md)."""


def is_component_name(name: object) -> bool:
    """Whether ``name`` follows the naming rules (fullmatch: '$' would allow a final newline)."""
    return isinstance(name, str) and NAME_RE.fullmatch(name) is not None


def check_name(name: object) -> str:
    """Return ``name`` if it follows the naming rules, else raise InvalidNameError."""
    if not is_component_name(name):
        shown_name = shown(name) if isinstance(name, str) else repr(name)
        raise InvalidNameError(
            f"invalid component name {shown_name}: use 1-64 characters, lower-case letters, digits, "
            "'-' or '_', starting with a letter (for example 'resgan' or 'noise-anneal')")
    return name


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
    """All components by kind and name. Names are global across kinds."""

    def __init__(self) -> None:
        self._entries: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
        # Plugin name -> why it failed; an unknown name may be one of theirs, so say so.
        self.failed_plugins: dict[str, str] = {}
        # (kind, name) -> the failed plugin that had registered it before failing: asking for
        # it names that plugin and why it failed, not just "unknown".
        self.withdrawn: dict[tuple[str, str], str] = {}

    def add(self, entry: Entry) -> None:
        check_name(entry.name)
        if entry.kind not in self._entries:
            raise ValueError(f"unknown component kind {entry.kind!r}; kinds: {', '.join(KINDS)}")
        other = self.find_any(entry.name)
        if other is not None:
            title = KIND_TITLES[entry.kind]
            if other.kind != entry.kind:
                title = f"{title} (already used by the {KIND_TITLES[other.kind]})"
            raise DuplicateComponentError(title, entry.name, other.plugin, entry.plugin,
                                          builtin=(other.distribution == BUILTIN_DISTRIBUTION,
                                                   entry.distribution == BUILTIN_DISTRIBUTION))
        self._entries[entry.kind][entry.name] = entry

    def remove_plugin(self, plugin: str, failed: bool = False) -> None:
        """Forget everything one plugin registered (used when its hook fails half-way); with
        ``failed``, remember the names so that asking for one says why it is missing."""
        for kind, table in self._entries.items():
            for name in [n for n, e in table.items() if e.plugin == plugin]:
                del table[name]
                if failed:
                    self.withdrawn[kind, name] = plugin
        if not failed:
            self.withdrawn = {k: p for k, p in self.withdrawn.items() if p != plugin}

    def entry(self, kind: str, name: str) -> Entry:
        table = self._entries[kind]
        if name not in table:
            known = sorted(table)
            close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
            close += [k for k in known if name and name in k and k not in close][: 3 - len(close)]
            error = UnknownComponentError(KIND_TITLES[kind], name, known, close)
            if self.failed_plugins:
                failed = ", ".join(bare(name) for name in sorted(self.failed_plugins))
                owner = self.withdrawn.get((kind, name))
                why = (f" It is provided by the plugin {shown(owner)}, which failed to load: "
                       f"{bare(self.failed_plugins[owner]).rstrip('.')}."
                       if owner in self.failed_plugins else "")
                error.args = (f"{error}{why} (plugins that failed to load: {failed}; see "
                              "`ganzoo plugins`)",)
            raise error
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

    def by_plugin(self, plugin: str) -> list[Entry]:
        """Everything one plugin registered."""
        return [e for e in self.entries() if e.plugin == plugin]
