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
        return json.dumps(value, ensure_ascii=False)  # JSON string escapes are valid TOML
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_scalar(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} to TOML")


def _key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() else json.dumps(key)


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
