"""The plugin hooks: one ``register_*`` hook per row of kinds.KIND_TABLE (plugin API version 1).

A plugin module implements any of these with ``@gan_zoo.hookimpl`` and calls ``register(cls)``
once per component class. Plugins are found through the ``gan_zoo`` entry-point group. Each
hook is called once per process, when the registry is first needed. docs/plugins.md documents
every hook (a test fails when one is missing there).
"""

from __future__ import annotations

from collections.abc import Callable

import pluggy

from .kinds import HOOK_KINDS as HOOK_KINDS  # hook name -> kind, from the table
from .kinds import KIND_TABLE, Kind

PROJECT = "gan_zoo"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

Register = Callable[[type], None]


def _hookspec(kind: Kind) -> Callable[..., None]:
    """The hook that registers one kind's classes (its docstring is what docs/plugins.md and
    `help()` show)."""

    def hook(register: Register) -> None:
        pass

    hook.__name__ = hook.__qualname__ = kind.hook
    hook.__module__ = __name__
    hook.__doc__ = (f"Register the plugin's {kind.base} subclasses ({kind.describes}).\n\n"
                    f"    Call ``register(cls)`` once per class; users pick them with "
                    f"``{kind.flag} NAME``.\n    ")
    return hookspec(hook)


# One hook per row of the kinds table: register_architectures, register_losses, ...
for _kind in KIND_TABLE:
    globals()[_kind.hook] = _hookspec(_kind)
del _kind

__all__ = ["HOOK_KINDS", "PROJECT", "Register", "hookimpl", "hookspec", *HOOK_KINDS]
