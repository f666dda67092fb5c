"""The base of every component's options model and parsing of `-o component.key=value`."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import UsageError


class Options(BaseModel):
    """Base options model: unknown fields are rejected, every field must be described."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class NoOptions(Options):
    """For components that take no options."""


def parse_value(text: str) -> Any:
    """Parse a command-line option value: JSON where it parses (numbers, bools, lists), else text."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "null":  # not "none": that is a legitimate choice value (d_norm=none)
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):  # not JSON (or absurdly nested): keep it as text
        return text


def parse_assignments(items: list[str] | tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """Turn ["conv64.dropout=0.2", ...] into {"conv64": {"dropout": 0.2}}."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        component, dot, field = key.strip().rpartition(".")
        if not sep or not dot or not component or not field:
            raise UsageError(
                f"option {item!r} is not of the form COMPONENT.KEY=VALUE "
                "(for example -o conv64.dropout=0.2)"
            )
        out.setdefault(component, {})[field] = parse_value(value)
    return out


def validate_options(model: type[Options], values: dict[str, Any], owner: str) -> Options:
    """Build an options model, turning pydantic's report into one message naming the option."""
    try:
        return model(**values)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            if err["type"] == "extra_forbidden":
                known = ", ".join(model.model_fields) or "none"
                problems.append(f"{owner}.{loc}: unknown option (known options: {known})")
            else:
                where = f"{owner}.{loc}" if loc else owner
                problems.append(f"{where}: {err['msg']} (got {err.get('input')!r})")
        raise UsageError("invalid option " + "; ".join(problems)) from None


def describe_options(model: type[Options]) -> list[dict[str, Any]]:
    """Each field's name, type, default and description, for `ganzoo show` and the docs."""
    rows = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if getattr(annotation, "__origin__", None) is Literal:
            type_name = "|".join(str(a) for a in annotation.__args__)
        else:
            type_name = getattr(annotation, "__name__", None) or str(annotation).replace(
                "typing.", "")
        default = None if field.is_required() else field.get_default(call_default_factory=True)
        rows.append(
            {
                "name": name,
                "type": type_name,
                "default": default,
                "required": field.is_required(),
                "description": field.description or "",
            }
        )
    return rows
