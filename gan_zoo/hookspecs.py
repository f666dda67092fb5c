"""The plugin hooks: one ``register_*`` hook per component kind.

A plugin module implements any of these with ``@gan_zoo.hookimpl`` and calls ``register(cls)``
once per component class. Plugins are found through the ``gan_zoo`` entry-point group.
"""

from __future__ import annotations

from collections.abc import Callable

import pluggy

PROJECT = "gan_zoo"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

Register = Callable[[type], None]


@hookspec
def register_architectures(register: Register) -> None:
    """Register Architecture subclasses (generator + discriminator pairs)."""


@hookspec
def register_losses(register: Register) -> None:
    """Register Loss subclasses (adversarial objectives)."""


@hookspec
def register_schedules(register: Register) -> None:
    """Register Schedule subclasses (per-step knob settings)."""


@hookspec
def register_augmentations(register: Register) -> None:
    """Register Augmentation subclasses (batch image transforms)."""


@hookspec
def register_metrics(register: Register) -> None:
    """Register Metric subclasses (quality measures)."""


# Hook name -> component kind it registers.
HOOK_KINDS: dict[str, str] = {
    "register_architectures": "arch",
    "register_losses": "loss",
    "register_schedules": "schedule",
    "register_augmentations": "augment",
    "register_metrics": "metric",
}
