"""Reading and writing the small TOML files gan-zoo uses (configs): tomllib reads, a tiny
writer covers what configs hold (scalars, lists of scalars, one level of nested tables)."""

from __future__ import annotations

import json
import math
import tomllib
from pathlib import Path
from typing import Any

from .errors import UsageError


def read_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"config file {str(path)!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read config file {str(path)!r}: {exc}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"config file {str(path)!r} is not valid TOML: {exc}") from None
    except RecursionError:
        raise UsageError(f"config file {str(path)!r} is nested too deeply") from None


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
