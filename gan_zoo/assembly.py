"""Building components by name from the registry and a config's options."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .config import TrainConfig
from .errors import UsageError
from .interfaces import Architecture, Augmentation, Component, Loss, Schedule
from .knobs import check_knob_owners
from .options import validate_options
from .plugins import get_registry


def build(kind: str, name: str, options: dict[str, Any] | None = None) -> Component:
    """One component by kind and name, its options validated against its model."""
    cls = get_registry().get(kind, name)
    return cls(validate_options(cls.Options, options or {}, name))


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
    check_knob_owners(comps.schedules)
    return comps
