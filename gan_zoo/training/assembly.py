"""Building components by name from the registry and a config's options."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

from ..errors import CheckpointError, PluginWarning, UsageError
from ..interfaces import Architecture, Augmentation, Component, Loss, Schedule
from ..kinds import KIND_TITLES
from ..options import validate_options
from ..plugins import get_registry, missing_component_message, version_mismatch_message
from .config import TrainConfig
from .knobs import check_knob_owners


def build(kind: str, name: str, options: dict[str, Any] | None = None) -> Component:
    """One component by kind and name, its options validated against its model."""
    cls = get_registry().get(kind, name)
    return cls(validate_options(cls.Options, options or {}, name))


def build_recorded(kind: str, record: dict[str, Any], what: str = "this checkpoint") -> Component:
    """The component a checkpoint records (name, options, and the plugin, package and version
    that wrote it). The values are the file's, not the user's, so each problem is a
    CheckpointError: a plugin that is not available names the package to install, another
    version of it is a warning (the weights may still load), invalid options are the file's."""
    missing = missing_component_message({**record, "kind": kind}, what)
    if missing:
        raise CheckpointError(missing)
    mismatch = version_mismatch_message(record, get_registry().entry(kind, record["name"]))
    if mismatch:  # escaped: the file is a stranger's; stacklevel: the caller of our caller
        warnings.warn(mismatch, PluginWarning, stacklevel=3)
    try:
        return build(kind, record["name"], record.get("options"))
    except UsageError as exc:
        raise CheckpointError(
            f"the checkpoint's {KIND_TITLES[kind]} options are invalid: {exc}") from None


@dataclass
class Components:
    arch: Architecture
    loss: Loss
    schedules: list[Schedule]
    augments: list[Augmentation]

    def names(self) -> list[str]:
        return [self.arch.name, self.loss.name] + [c.name for c in self.schedules + self.augments]


def build_components(config: TrainConfig) -> Components:
    opts = config.options
    used = [config.arch, config.loss, *config.schedules, *config.augment]
    if config.eval_every is not None:  # the metric is built by the evaluation callback
        used.append(config.metric)
    for kind, names in (("schedule", config.schedules), ("augment", config.augment)):
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise UsageError(f"{kind} {sorted(dupes)[0]!r} is given twice")
    stray = sorted(set(opts) - set(used))
    if stray:
        raise UsageError(
            f"options were given for {stray[0]!r}, which this run does not use "
            f"(components in use: {', '.join(used)})"
        )
    comps = Components(
        arch=build("arch", config.arch, opts.get(config.arch)),  # type: ignore[arg-type]
        loss=build("loss", config.loss, opts.get(config.loss)),  # type: ignore[arg-type]
        schedules=[build("schedule", n, opts.get(n)) for n in config.schedules],  # type: ignore[misc]
        augments=[build("augment", n, opts.get(n)) for n in config.augment],  # type: ignore[misc]
    )
    if config.conditional and not comps.arch.conditional:
        able = [e.name for e in get_registry().entries("arch")
                if getattr(e.cls, "conditional", False)]
        raise UsageError(
            f"architecture {config.arch!r} is unconditional: it cannot take the class of a "
            f"--conditional run. Conditional architectures: {', '.join(able) or 'none installed'}")
    check_knob_owners(comps.schedules)
    if comps.loss.relativistic and config.d_update == "alternating":
        raise UsageError(
            f"loss {config.loss!r} is relativistic (it compares real and fake logits of the same "
            "step), so it cannot run with --d-update alternating; use separate or joint")
    return comps
