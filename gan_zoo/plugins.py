"""Plugin discovery: the pluggy manager, entry-point loading with isolation, the registry.

Every plugin, built-in or third-party, is a module named by an entry point in the ``gan_zoo``
group. A plugin that fails to import or raises inside a hook is reported once as a warning and
marked failed; the rest keep working. ``GANZOO_PLUGINS`` (comma-separated plugin or
distribution names) restricts which non-built-in plugins load; set but empty = built-ins only.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import warnings
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import pluggy

from . import hookspecs
from .errors import DuplicateComponentError
from .interfaces import Component
from .registry import Entry, Registry

ENTRY_POINT_GROUP = "gan_zoo"
BUILTIN_DISTRIBUTION = "gan-zoo"
ENV_VAR = "GANZOO_PLUGINS"


class PluginWarning(UserWarning):
    """A plugin failed to load or register; it is skipped."""


@dataclass
class PluginInfo:
    """What `ganzoo plugins` reports about one plugin."""

    name: str
    distribution: str | None
    version: str | None
    module: str
    builtin: bool
    hooks: list[str] = field(default_factory=list)
    components: list[tuple[str, str]] = field(default_factory=list)
    error: str | None = None

    @property
    def status(self) -> str:
        return "failed" if self.error else "ok"

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "module": self.module,
            "builtin": self.builtin,
            "status": self.status,
            "error": self.error,
            "hooks": self.hooks,
            "components": [{"kind": k, "name": n} for k, n in self.components],
        }


def _allowed(ep_name: str, dist: str | None) -> bool:
    if dist == BUILTIN_DISTRIBUTION:
        return True
    spec = os.environ.get(ENV_VAR)
    if spec is None:
        return True
    wanted = {s.strip() for s in spec.split(",") if s.strip()}
    return ep_name in wanted or (dist is not None and dist in wanted)


class PluginSystem:
    """The plugin manager, what each plugin provided, and the registry built from them."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.infos: dict[str, PluginInfo] = {}
        self.registry = Registry()

    # ---------------------------------------------------------------- loading
    def load_entry_points(self) -> None:
        seen: set[str] = set()
        for ep in md.entry_points(group=ENTRY_POINT_GROUP):
            dist = ep.dist.metadata["Name"] if ep.dist is not None else None
            version = ep.dist.version if ep.dist is not None else None
            if ep.name in seen or not _allowed(ep.name, dist):
                continue
            seen.add(ep.name)
            info = PluginInfo(
                name=ep.name,
                distribution=dist,
                version=version,
                module=ep.value,
                builtin=dist == BUILTIN_DISTRIBUTION,
            )
            self.infos[ep.name] = info
            try:
                module = ep.load()
                self.pm.register(module, name=ep.name)
            except Exception as exc:  # isolation: one broken plugin must not stop the others
                self._fail(info, f"import failed: {type(exc).__name__}: {exc}")

    def add_plugin(
        self, plugin: ModuleType | object, name: str, distribution: str | None = None,
        version: str | None = None,
    ) -> PluginInfo:
        """Register a plugin object in-process (used by tests and by gan_zoo.testing)."""
        info = PluginInfo(
            name=name,
            distribution=distribution,
            version=version,
            module=getattr(plugin, "__name__", type(plugin).__name__),
            builtin=False,
        )
        self.infos[name] = info
        self.pm.register(plugin, name=name)
        self._register_components(info)
        return info

    def remove_plugin(self, name: str) -> None:
        plugin = self.pm.get_plugin(name)
        if plugin is not None:
            self.pm.unregister(plugin, name=name)
        self.registry.remove_plugin(name)
        self.infos.pop(name, None)

    def _fail(self, info: PluginInfo, reason: str) -> None:
        info.error = reason
        warnings.warn(f"gan-zoo plugin {info.name!r} skipped: {reason}", PluginWarning,
                      stacklevel=3)

    # ---------------------------------------------------------------- registration
    def build(self) -> None:
        for info in list(self.infos.values()):
            if info.error is None:
                self._register_components(info)

    def _register_components(self, info: PluginInfo) -> None:
        plugin = self.pm.get_plugin(info.name)
        if plugin is None:
            return
        for hook_name, kind in hookspecs.HOOK_KINDS.items():
            impls = [i for i in getattr(self.pm.hook, hook_name).get_hookimpls()
                     if i.plugin_name == info.name]
            for impl in impls:
                info.hooks.append(hook_name)

                def register(cls: type, _kind: str = kind, _hook: str = hook_name) -> None:
                    self._add(info, _kind, cls, _hook)

                try:
                    impl.function(register=register)
                except DuplicateComponentError:
                    raise
                except Exception as exc:
                    self.registry.remove_plugin(info.name)
                    info.components.clear()
                    self._fail(info, f"{hook_name} raised {type(exc).__name__}: {exc}")
                    return

    def _add(self, info: PluginInfo, kind: str, cls: type, hook_name: str) -> None:
        if not (isinstance(cls, type) and issubclass(cls, Component)) or cls.kind != kind:
            raise TypeError(f"{hook_name} expects {kind} component classes, got {cls!r}")
        if not cls.name:
            raise TypeError(f"{cls.__qualname__} has no name")
        entry = Entry(kind, cls.name, cls, info.name, info.distribution, info.version)
        self.registry.add(entry)
        info.components.append((kind, cls.name))


_SYSTEM: PluginSystem | None = None


def plugin_system() -> PluginSystem:
    """The process-wide plugin system, loaded on first use."""
    global _SYSTEM
    if _SYSTEM is None:
        system = PluginSystem()
        system.load_entry_points()
        system.build()
        _SYSTEM = system
    return _SYSTEM


def get_registry() -> Registry:
    return plugin_system().registry


def reset() -> None:
    """Forget loaded plugins; the next use loads them again (for tests, env var changes)."""
    global _SYSTEM
    _SYSTEM = None


def plugin_versions() -> dict[str, str | None]:
    """Plugin name -> version of its distribution, recorded in checkpoints."""
    return {name: info.version for name, info in plugin_system().infos.items() if not info.error}
