"""Reading and writing the small TOML files gan-zoo uses (configs): tomllib reads (with a size
cap and regular files only), tomli-w writes."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import tomli_w

from ..errors import UsageError
from .regular_files import NotRegularFileError, read_regular_bytes
from .textsafe import QUOTE_LIMIT, cap, escape, shown

# Configs and recipes are a few kilobytes; anything larger is not one (and is not read whole).
MAX_TOML_BYTES = 1 << 20


def read_text(path: str | Path, what: str = "config file") -> str:
    """A small UTF-8 text file: regular files only (a FIFO never blocks), at most
    MAX_TOML_BYTES; any problem is one UsageError naming the file."""
    name = shown(str(path))
    try:
        data = read_regular_bytes(path, MAX_TOML_BYTES)
    except FileNotFoundError:
        raise UsageError(f"{what} {name} does not exist") from None
    except NotRegularFileError as exc:
        raise UsageError(f"cannot read {what} {name}: it {exc.strerror}") from None
    except OSError as exc:
        raise UsageError(f"cannot read {what} {name}: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"cannot read {what} {name}: not UTF-8 text (byte {exc.start})") from None


def read_toml(path: str | Path, what: str = "config file") -> dict[str, Any]:
    text = read_text(path, what)
    name = shown(str(path))
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{what} {name} is not valid TOML: {cap(escape(str(exc)), QUOTE_LIMIT)}") from None
    except RecursionError:
        raise UsageError(f"{what} {name} is nested too deeply") from None


def _without_none(value: Any) -> Any:
    """TOML has no null: a key set to None is left out (it reads back as its default); None
    inside a list has no TOML form at all."""
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        if any(v is None for v in value):
            raise UsageError(f"the value {shown(value)} cannot be stored in a TOML config")
        return [_without_none(v) for v in value]
    return value


def dumps_toml(data: dict[str, Any]) -> str:
    """TOML text of `data` (tomli-w writes it); keys whose value is None are left out."""
    try:
        return tomli_w.dumps(_without_none(data))
    except (TypeError, ValueError) as exc:
        raise UsageError(f"cannot store this config as TOML: {cap(escape(str(exc)), QUOTE_LIMIT)}") from None
