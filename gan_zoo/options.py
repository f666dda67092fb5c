"""The base of every component's options model and parsing of `-o component.key=value`."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
)

from .errors import UsageError
from .util.textsafe import escape, shown


class Options(BaseModel):
    """Base options model: unknown fields are rejected, every field must be described.

    Values are typed strictly where pydantic's lax mode would change their meaning without a
    word: true/false is not a number (`latent_dim=true` is not 1), a number is not true/false,
    text is not a number (`width = "8"` in a TOML file), and NaN/infinity are refused in every
    field (JSON, which checkpoint metadata uses, cannot hold them, so they were silently
    dropped). An int where a float is expected stays fine (`-o lr.final=0`)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)
    # Fields whose values another model validates strictly (TrainConfig.options: each
    # component's own Options, which names the option in its message).
    _checked_elsewhere: ClassVar[frozenset[str]] = frozenset()

    @field_validator("*", mode="wrap")
    @classmethod
    def _strict_values(cls, value: Any, handler: ValidatorFunctionWrapHandler,
                       info: ValidationInfo) -> Any:
        validated = handler(value)
        if info.field_name in cls._checked_elsewhere:
            return validated
        try:
            problem = _changed_meaning(value, validated)
        except RecursionError:  # an absurdly nested value in an Any field
            problem = "nested too deeply"
        if problem:
            raise ValueError(problem)
        return validated


class NoOptions(Options):
    """For components that take no options."""


def _changed_meaning(raw: Any, validated: Any, path: str = "") -> str | None:
    """Why lax validation turned `raw` into something it does not mean, or None (walks lists,
    tuples and dicts in step; a nested model checks its own fields)."""
    where = f"{path}: " if path else ""
    if isinstance(validated, BaseModel):
        return None
    if isinstance(validated, float) and not math.isfinite(validated):
        return f"{where}expected a finite number, not NaN or infinity"
    if isinstance(validated, bool):
        return None if isinstance(raw, bool) else f"{where}expected true or false"
    if isinstance(raw, bool) and type(validated) in (int, float):
        return f"{where}expected a number, not true/false"
    if isinstance(raw, str | bytes) and type(validated) in (int, float):
        return f"{where}expected a number, not text (write numbers without quotes)"
    if isinstance(validated, list | tuple):
        same = isinstance(raw, list | tuple) and len(raw) == len(validated)
        for i, item in enumerate(validated):
            where_i = f"{path}.{i}" if path else str(i)
            problem = _changed_meaning(raw[i] if same else item, item, where_i)
            if problem:
                return problem
    elif isinstance(validated, dict):
        for key, item in validated.items():
            source = raw.get(key, item) if isinstance(raw, dict) else item
            problem = _changed_meaning(source, item, f"{path}.{key}" if path else str(key))
            if problem:
                return problem
    return None


def parse_value(text: str) -> Any:
    """Parse a command-line option value: JSON where it parses (numbers, bools, lists), else text.

    A bare non-finite number (NaN, Infinity, 1e999) stays text: a text option may be spelled
    so, and a number option refuses it by name."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "null":  # not "none": that is a legitimate choice value (d_norm=none)
        return None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):  # not JSON (or absurdly nested): keep it as text
        return text
    if isinstance(value, float) and not math.isfinite(value):
        return text
    return value


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
        known = ", ".join(model.model_fields) or "none"
        raise UsageError("invalid option " + explain_validation(
            exc, lambda key: f"{key}: unknown option (known options: {known})", escape(owner),
        )) from None


def explain_validation(exc: ValidationError, unknown: Callable[[str], str], owner: str = "") -> str:
    """pydantic's report as one line (options and configs alike): each problem names its key
    (`owner.key`) and what was given, shown escaped and capped since it may come from a file;
    `unknown(key)` phrases an unknown key; a whole-model check gives just its reason."""
    problems = []
    for err in exc.errors():
        loc = escape(".".join(str(p) for p in err["loc"]))
        where = ".".join(part for part in (owner, loc) if part)
        if err["type"] == "extra_forbidden":
            problems.append(unknown(where))
        elif not loc:  # its input is every value, not worth echoing
            reason = err["msg"].removeprefix("Value error, ")
            problems.append(f"{owner}: {reason}" if owner else reason)
        else:
            problems.append(f"{where}: {err['msg']} (got {shown(err.get('input'))})")
    return "; ".join(problems)


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
