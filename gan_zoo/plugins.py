"""Plugin discovery: the pluggy manager, entry-point loading with isolation, the registry.

Every plugin, built-in or third-party, is a module named by an entry point in the ``gan_zoo``
group. A plugin that fails to import, declares a plugin API this gan-zoo does not support,
implements a hook that does not exist, raises inside a hook or registers a name already taken
is reported once as a PluginWarning and marked failed, with everything it registered withdrawn;
the rest keep working. Built-in plugins load first, then the others sorted by distribution and
entry-point name, so which of two colliding plugins fails never depends on installation order.
``GANZOO_PLUGINS`` (comma-separated plugin or distribution names) restricts which non-built-in
plugins load; set but empty = built-ins only.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib.metadata as md
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import pluggy

from . import PLUGIN_API_VERSION, hookspecs
from .errors import DuplicateComponentError
from .errors import PluginWarning as PluginWarning  # re-exported: defined beside the CLI's errors
from .interfaces import Component
from .kinds import HOOK_KINDS, KIND_BASES, KIND_TITLES
from .registry import BUILTIN_DISTRIBUTION as BUILTIN_DISTRIBUTION  # re-exported
from .registry import Entry, InvalidNameError, Registry, is_component_name
from .util.package_names import is_distribution_name, is_plugin_name, is_version
from .util.textsafe import bare, cap, shown

ENTRY_POINT_GROUP = "gan_zoo"
ENV_VAR = "GANZOO_PLUGINS"
# The plugin API this gan-zoo implements (gan_zoo.PLUGIN_API_VERSION) and the versions whose
# plugins it still loads. A plugin module may declare the version it was written for as a
# module attribute ``GANZOO_PLUGIN_API = 1``; without it, the current one is assumed.
SUPPORTED_API_VERSIONS: tuple[int, ...] = (PLUGIN_API_VERSION,)
API_ATTRIBUTE = "GANZOO_PLUGIN_API"
ERROR_LIMIT = 1000  # characters of a failed plugin's error that are kept


@dataclass
class PluginInfo:
    """What `ganzoo plugins` reports about one plugin."""

    name: str
    distribution: str | None
    version: str | None
    module: str
    builtin: bool
    api_version: int | None = None
    hooks: list[str] = field(default_factory=list)
    components: list[tuple[str, str]] = field(default_factory=list)
    error: str | None = None
    installed: bool = False  # found through an entry point (not registered in-process)

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
            "api_version": self.api_version,
            "status": self.status,
            "error": self.error,
            "hooks": sorted(set(self.hooks)),
            "components": [{"kind": k, "name": n} for k, n in self.components],
        }


def _wanted() -> set[str] | None:
    """Names allowed by GANZOO_PLUGINS; None when the variable is not set (everything loads)."""
    spec = os.environ.get(ENV_VAR)
    if spec is None:
        return None
    return {s.strip() for s in spec.split(",") if s.strip()}


def _allowed(ep_name: str, dist: str | None, wanted: set[str] | None) -> bool:
    if dist == BUILTIN_DISTRIBUTION or wanted is None:
        return True
    return ep_name in wanted or (dist is not None and dist in wanted)


def _dist_of(ep: md.EntryPoint) -> tuple[str | None, str | None]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return None, None
    return dist.metadata["Name"], dist.version


class PluginSystem:
    """The plugin manager, what each plugin provided, and the registry built from them."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.infos: dict[str, PluginInfo] = {}
        self.registry = Registry()

    # ---------------------------------------------------------------- loading
    def load_entry_points(self) -> None:
        """Import and register every allowed entry-point plugin; failures are isolated."""
        wanted = _wanted()
        found = []
        for ep in md.entry_points(group=ENTRY_POINT_GROUP):
            dist, version = _dist_of(ep)
            found.append((dist != BUILTIN_DISTRIBUTION, dist or "", ep.name, ep, dist, version))
        found.sort(key=lambda t: t[:3])
        seen: dict[str, tuple[str | None, str]] = {}
        for _, _, _, ep, dist, version in found:
            if ep.name in seen:
                # The same distribution found twice on sys.path is harmless; another package
                # using a taken plugin name is skipped, and said so.
                if seen[ep.name] != (dist, ep.value):
                    first = self.infos[ep.name]
                    failed = (f" (which failed to load: {bare(first.error, ERROR_LIMIT)})"
                              if first.error else "")
                    warnings.warn(
                        f"gan-zoo plugin {shown(ep.name)} of {shown(dist or ep.value)} skipped: "
                        f"the plugin name is already used by "
                        f"{shown(seen[ep.name][0] or seen[ep.name][1])}{failed}",
                        PluginWarning, stacklevel=2)
                continue
            if not _allowed(ep.name, dist, wanted):
                continue
            seen[ep.name] = (dist, ep.value)
            info = PluginInfo(name=ep.name, distribution=dist, version=version, module=ep.value,
                              builtin=dist == BUILTIN_DISTRIBUTION, installed=True)
            self.infos[ep.name] = info
            try:
                module = ep.load()
            except (Exception, SystemExit) as exc:  # isolation: one broken plugin must not
                # stop the others (not even by calling sys.exit() at import)
                self._fail(info, f"import failed: {type(exc).__name__}: {exc}")
                continue
            self._admit(module, info)
        if wanted:
            known = {t[2] for t in found} | {t[4] for t in found if t[4]}
            for name in sorted(wanted - known):
                close = difflib.get_close_matches(name, sorted(known), n=1)
                hint = f" (did you mean {shown(close[0])}?)" if close else ""
                warnings.warn(f"{ENV_VAR} names {shown(name)}, which is not an installed gan-zoo "
                              f"plugin{hint}", PluginWarning, stacklevel=2)

    def _admit(self, plugin: object, info: PluginInfo) -> bool:
        """Check a plugin's API version and hooks and register it with pluggy."""
        declared = getattr(plugin, API_ATTRIBUTE, PLUGIN_API_VERSION)
        info.api_version = declared if isinstance(declared, int) else None
        if declared not in SUPPORTED_API_VERSIONS:
            newer = isinstance(declared, int) and declared > PLUGIN_API_VERSION
            advice = ("upgrade gan-zoo or install an older release of the plugin" if newer
                      else "upgrade the plugin")
            self._fail(info, f"written for gan-zoo plugin API {declared!r}, but this gan-zoo "
                             f"supports {', '.join(map(str, SUPPORTED_API_VERSIONS))}: {advice}")
            return False
        try:
            self.pm.register(plugin, name=info.name)
        except Exception as exc:  # pluggy rejects hook implementations with unknown arguments
            self._fail(info, f"registration failed: {type(exc).__name__}: {exc}")
            return False
        # Every hook the plugin implements, known before any runs: one that raises does not
        # hide the others from `ganzoo plugins`.
        info.hooks = sorted(c.name for c in self.pm.get_hookcallers(plugin) or [])
        unknown = self._unknown_hooks(info.name)
        if unknown:
            self.pm.unregister(name=info.name)
            hooks = list(HOOK_KINDS)
            parts = []
            for hook in unknown:
                close = difflib.get_close_matches(hook, hooks, n=1)
                parts.append(f"{hook!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            self._fail(info, "implements unknown hook " + ", ".join(parts))
            return False
        return True

    def _unknown_hooks(self, name: str) -> list[str]:
        """Hooks the plugin implements that gan-zoo does not define (typos, newer APIs);
        implementations marked ``optionalhook=True`` are allowed."""
        plugin = self.pm.get_plugin(name)
        out = []
        for caller in self.pm.get_hookcallers(plugin) or []:
            if caller.spec is not None:
                continue
            impls = [i for i in caller.get_hookimpls() if i.plugin_name == name]
            if any(not i.optionalhook for i in impls):
                out.append(caller.name)
        return sorted(out)

    def add_plugin(
        self, plugin: ModuleType | object, name: str, distribution: str | None = None,
        version: str | None = None,
    ) -> PluginInfo:
        """Register a plugin object in-process (used by tests and by gan_zoo.testing).

        Unlike an installed plugin, a problem here raises at once (GanZooError for a name
        collision, the plugin's own exception otherwise): the caller is a test that wants to
        know."""
        if name in self.infos:
            raise ValueError(self._taken(self.infos[name]))
        info = PluginInfo(
            name=name,
            distribution=distribution,
            version=version,
            module=getattr(plugin, "__name__", type(plugin).__name__),
            builtin=False,
        )
        self.infos[name] = info
        try:
            if not self._admit(plugin, info):
                raise RuntimeError(f"plugin {name!r} rejected: {info.error}")
            self._register_components(info, strict=True)
        except BaseException:
            self.remove_plugin(name)
            raise
        return info

    @staticmethod
    def _taken(other: PluginInfo) -> str:
        """Why a plugin name cannot be registered in-process: who holds it, and how it fared."""
        if other.builtin:
            holder = "one of gan-zoo's built-in plugins; choose another name"
        elif other.installed:
            holder = f"installed from {shown(other.distribution or other.module)}"
        else:
            holder = "registered in-process (is a registered_plugin block still open?)"
        failed = f"; it failed to load: {bare(other.error, ERROR_LIMIT)}" if other.error else ""
        return f"a plugin named {shown(other.name)} is already registered: {holder}{failed}"

    def set_aside(self, name: str) -> Callable[[], None]:
        """Withdraw the installed plugin ``name`` (loaded or failed) so that a test can register
        the same plugin from source under its own name; returns the function that puts it back
        as it was. gan_zoo.testing.registered_plugin uses it (docs/plugins.md, Testing)."""
        info = self.infos[name]
        if info.builtin or not info.installed:
            raise ValueError(self._taken(info))
        order = list(self.infos)
        plugin = self.pm.get_plugin(name)
        entries = self.registry.by_plugin(name)
        failed = self.registry.failed_plugins.get(name)
        withdrawn = {k: p for k, p in self.registry.withdrawn.items() if p == name}
        self.remove_plugin(name)

        def restore() -> None:
            if name in self.infos:
                raise ValueError(self._taken(self.infos[name]))
            if plugin is not None:
                self.pm.register(plugin, name=name)
            for entry in entries:
                self.registry.add(entry)
            if failed is not None:
                self.registry.failed_plugins[name] = failed
            self.registry.withdrawn.update(withdrawn)
            infos = {**self.infos, name: info}
            self.infos = {k: infos[k] for k in sorted(infos, key=lambda k: (
                order.index(k) if k in order else len(order)))}

        return restore

    def remove_plugin(self, name: str) -> None:
        plugin = self.pm.get_plugin(name)
        if plugin is not None:
            self.pm.unregister(plugin, name=name)
        self.registry.remove_plugin(name)
        self.registry.failed_plugins.pop(name, None)
        self.infos.pop(name, None)

    def _fail(self, info: PluginInfo, reason: str) -> None:
        # The reason quotes the plugin's own exception: capped here, escaped where shown.
        reason = cap(reason, ERROR_LIMIT)
        info.error = reason
        self.registry.failed_plugins[info.name] = reason
        warnings.warn(f"gan-zoo plugin {shown(info.name)} skipped: {bare(reason, ERROR_LIMIT)}",
                      PluginWarning, stacklevel=3)

    def failures(self) -> dict[str, str]:
        """Plugin name -> why it failed, for every plugin that did."""
        return {n: i.error for n, i in self.infos.items() if i.error}

    # ---------------------------------------------------------------- registration
    def build(self) -> None:
        for info in list(self.infos.values()):
            if info.error is None:
                self._register_components(info)

    def _register_components(self, info: PluginInfo, strict: bool = False) -> None:
        """Call each of the plugin's register_* hooks; on any error withdraw all it added."""
        plugin = self.pm.get_plugin(info.name)
        if plugin is None:
            return
        hooks = [(hook_name, kind, impl) for hook_name, kind in HOOK_KINDS.items()
                 for impl in getattr(self.pm.hook, hook_name).get_hookimpls()
                 if impl.plugin_name == info.name]
        for hook_name, kind, impl in hooks:

            def register(cls: type, _kind: str = kind, _hook: str = hook_name) -> None:
                self._add(info, _kind, cls, _hook)

            try:
                impl.function(register=register)
            except Exception as exc:
                if strict:
                    raise
                self.registry.remove_plugin(info.name, failed=True)
                info.components.clear()
                self.pm.unregister(name=info.name)
                if isinstance(exc, DuplicateComponentError):
                    self._fail(info, f"{hook_name}: {exc}")
                else:
                    self._fail(info, f"{hook_name} raised {type(exc).__name__}: {exc}")
                self._note_withheld(info.name, hooks)
                return

    def _note_withheld(self, plugin: str, hooks: list[tuple[str, str, Any]]) -> None:
        """Note the names a failed plugin's hooks offer (each hook called again with a register
        that only records, its errors ignored), so that asking for one of them says that this
        plugin failed, and why, instead of only "unknown"."""
        for _, kind, impl in hooks:
            def record(cls: type, _kind: str = kind) -> None:
                name = getattr(cls, "name", None)
                if is_component_name(name) and name not in self.registry.names(_kind):
                    self.registry.withdrawn[_kind, name] = plugin

            with contextlib.suppress(Exception):
                impl.function(register=record)

    def _add(self, info: PluginInfo, kind: str, cls: type, hook_name: str) -> None:
        if not (isinstance(cls, type) and issubclass(cls, Component)) or cls.kind != kind:
            raise TypeError(f"{hook_name} expects {KIND_TITLES[kind]} classes (subclasses of "
                            f"gan_zoo.{KIND_BASES[kind]}), got {cls!r}")
        if not cls.name:
            raise TypeError(f"{cls.__qualname__} has no name")
        try:
            entry = Entry(kind, cls.name, cls, info.name, info.distribution, info.version)
            self.registry.add(entry)
        except InvalidNameError as exc:
            raise TypeError(f"{cls.__qualname__}: {exc}") from None
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


def component_record(kind: str, name: str) -> dict[str, Any]:
    """Which plugin, distribution and version provide a component (saved in checkpoints)."""
    entry = get_registry().entry(kind, name)
    return {"kind": kind, "name": name, "plugin": entry.plugin,
            "distribution": entry.distribution, "version": entry.version}


def missing_component_message(record: Any, what: str = "this checkpoint") -> str | None:
    """The message for a checkpoint component whose plugin is not available, or None when it is.

    ``record`` is a component_record() (or a checkpoint's ``arch`` section, which has the same
    keys). The message names the package to install or, when the plugin is installed but
    failed, why it failed (and no install command: installing again cannot fix it). The record
    comes from a file that anyone can write: what it says is shown escaped, and an install
    command is suggested only when its package name and version follow the packaging grammars
    (gan_zoo.util.package_names)."""
    if not isinstance(record, dict):
        return f"{what} has a malformed component record {shown(record)}"
    kind = record.get("kind", "arch")
    if not isinstance(kind, str) or kind not in KIND_TITLES:
        return None
    title = KIND_TITLES[kind]
    name = record.get("name")
    if not is_component_name(name):
        return (f"{what} names an invalid {title} {shown(name)} (not a gan-zoo component "
                "name): the file was not written by gan-zoo, or was altered")
    system = plugin_system()
    if name in system.registry.names(kind):
        return None
    plugin, distribution, version = (record.get(k) for k in ("plugin", "distribution", "version"))
    plugin = plugin if is_plugin_name(plugin) else None
    failed = system.infos.get(plugin or "")
    needs = f"{what} needs the {title} {shown(name)}"
    if failed is not None and failed.error:
        # Installing again cannot fix it: say why it failed, and suggest no pip line.
        where = (f" (package {shown(failed.distribution)})"
                 if failed.distribution and failed.distribution != plugin else "")
        return (f"{needs} from the plugin {shown(failed.name)}{where}, which is installed but "
                f"failed to load: {bare(failed.error, ERROR_LIMIT).rstrip('.')}. See `ganzoo "
                "plugins`")
    if os.environ.get(ENV_VAR) is not None and plugin and distribution != BUILTIN_DISTRIBUTION:
        why = f" (If it is installed, {ENV_VAR}={shown(os.environ[ENV_VAR])} may be excluding it.)"
    else:
        why = ""
    package = distribution or plugin
    if not package:
        return f"{needs}, which no installed plugin provides.{why}"
    invalid = [f"{label} {shown(value)}" for label, value, valid in (
        ("package name", package, is_distribution_name(package)),
        ("version", version, not version or is_version(version))) if not valid]
    if invalid:
        return (f"{needs}, which no installed plugin provides.{why} The checkpoint names an "
                f"invalid {' and an invalid '.join(invalid)}, so no install command is "
                "suggested: the file was not written by gan-zoo, or was altered")
    pinned = f"{package}=={version}" if version else package
    return (f"{needs} from the package {shown(package)}"
            f"{f' version {version}' if version else ''}, which is not installed.{why} "
            f"Install it with: pip install '{pinned}'")


def version_mismatch_message(record: dict[str, Any], entry: Entry) -> str | None:
    """The warning for a checkpoint written with another version of its component's package
    than the installed one, or None when they agree (or either is unknown)."""
    saved = record.get("version")
    if not saved or not entry.version or saved == entry.version:
        return None
    installed = f"{bare(entry.distribution or entry.plugin)} {bare(entry.version)}"
    if not is_version(saved):
        return (f"this checkpoint records the invalid version {shown(saved)} for its "
                f"{KIND_TITLES[entry.kind]} {entry.name!r}; {installed} is installed")
    return (f"this checkpoint was written with {bare(entry.distribution or entry.plugin)} "
            f"{saved}; {bare(entry.version)} is installed")
