"""Reading and writing the small TOML files gan-zoo uses (configs): tomllib reads, a tiny
writer covers what configs hold (scalars, lists of scalars, one level of nested tables)."""

from __future__ import annotations

import json
import math
import tomllib
from pathlib import Path
from typing import Any

from .errors import UsageError
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


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        # JSON string escapes are valid TOML; DEL is the one control character JSON leaves raw.
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_scalar(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key(k)} = {_scalar(v)}" for k, v in value.items()) + "}"
    raise UsageError(f"the value {value!r} cannot be stored in a TOML config")


def _key(key: str) -> str:
    bare = key.isascii() and key.replace("_", "").replace("-", "").isalnum()  # TOML bare keys
    return key if bare else _scalar(key)


def dumps_toml(data: dict[str, Any]) -> str:
    """Scalars first, then one [table] per nested dict (nested dicts in them as dotted tables)."""
    lines: list[str] = []
    tables: list[tuple[str, dict]] = []
    for key, value in data.items():
        if value is None:
            continue
        if isinstance(value, dict):
            tables.append((_key(key), value))
        else:
            lines.append(f"{_key(key)} = {_scalar(value)}")
    while tables:
        prefix, table = tables.pop(0)
        sub = []
        lines.append(f"\n[{prefix}]")
        for key, value in table.items():
            if value is None:
                continue
            if isinstance(value, dict):
                sub.append((f"{prefix}.{_key(key)}", value))
            else:
                lines.append(f"{_key(key)} = {_scalar(value)}")
        tables[:0] = sub
    return "\n".join(lines) + "\n"
