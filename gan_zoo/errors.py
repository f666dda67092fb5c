"""User-facing errors: each carries one clear message and the CLI's exit code."""

from __future__ import annotations

import sys
import warnings
from typing import Any

from .util.textsafe import message_block, safe_message, shown


class GanZooError(Exception):
    """An error caused by user input or environment, shown without a traceback."""

    exit_code = 1


class UsageError(GanZooError):
    """Bad names or options on the command line or in a config file."""

    exit_code = 2


class UnknownComponentError(UsageError):
    """A component name that no installed plugin registers."""

    def __init__(self, kind: str, name: str, known: list[str], suggestions: list[str]):
        self.kind, self.name, self.known, self.suggestions = kind, name, known, suggestions
        msg = f"unknown {kind} {shown(name)}."
        if suggestions:
            msg += " Did you mean: " + ", ".join(suggestions) + "?"
        elif known:
            msg += " Available: " + ", ".join(sorted(known)) + "."
        else:
            msg += f" No {kind} is registered (is a plugin failing? run `ganzoo plugins`)."
        super().__init__(msg)


class DuplicateComponentError(GanZooError):
    """Two plugins registered the same component name."""

    def __init__(self, kind: str, name: str, first: str, second: str,
                 builtin: tuple[bool, bool] = (False, False)):
        """``first`` registered the name, ``second`` tried again; ``builtin`` says which of
        the two is one of gan-zoo's own plugins (those cannot be uninstalled or left out)."""
        by = [f"{'the built-in' if b else 'the'} plugin {shown(p)}"
              for p, b in zip((first, second), builtin, strict=True)]
        if builtin[0] != builtin[1]:
            other = shown(second if builtin[0] else first)
            advice = (f"rename the component in the plugin {other}, or uninstall it or leave "
                      "it out with GANZOO_PLUGINS")
        else:
            advice = "uninstall one of the two plugins or leave one out with GANZOO_PLUGINS"
        super().__init__(
            f"{kind} name {shown(name)} is registered twice: by {by[0]} and by {by[1]}. "
            f"Component names are global: {advice}."
        )


class DataError(GanZooError):
    """A dataset that cannot be used."""


class CheckpointError(GanZooError):
    """A checkpoint that cannot be loaded safely."""


class GanZooWarning(UserWarning):
    """Something the user should know that does not stop the command (shown as one line)."""


class PluginWarning(GanZooWarning):
    """A plugin failed to load or register; it is skipped."""


def install_warning_format() -> None:
    """Show gan-zoo's warnings on the command line as one "Warning: ..." line, without the file
    and source line Python adds (they point into gan-zoo, not at what the user can fix). Every
    warning's text is escaped and capped first: it may quote a file (textsafe)."""
    original = warnings.showwarning
    if getattr(original, "_ganzoo", False):
        return

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int,
             file: Any = None, line: str | None = None) -> None:
        if issubclass(category, GanZooWarning):
            print(message_block(f"Warning: {message}"), file=file or sys.stderr)
        else:
            original(safe_message(str(message)), category, filename, lineno, file, line)

    show._ganzoo = True  # type: ignore[attr-defined]
    warnings.showwarning = show
