"""The plugin hooks: one ``register_*`` hook per component kind (plugin API version 1).

A plugin module implements any of these with ``@gan_zoo.hookimpl`` and calls ``register(cls)``
once per component class. Plugins are found through the ``gan_zoo`` entry-point group. Each
hook is called once per process, when the registry is first needed. docs/plugins.md documents
every hook (a test fails when one is missing there).
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
    """Register the plugin's Architecture subclasses (generator + discriminator pairs).

    Call ``register(cls)`` once per class; users pick them with ``--arch NAME``.
    """


@hookspec
def register_losses(register: Register) -> None:
    """Register the plugin's Loss subclasses (adversarial objectives).

    Call ``register(cls)`` once per class; users pick them with ``--loss NAME``.
    """


@hookspec
def register_schedules(register: Register) -> None:
    """Register the plugin's Schedule subclasses (per-step knob settings).

    Call ``register(cls)`` once per class; users pick them with ``--sched NAME``.
    """


@hookspec
def register_augmentations(register: Register) -> None:
    """Register the plugin's Augmentation subclasses (batch image transforms).

    Call ``register(cls)`` once per class; users pick them with ``--augment NAME``.
    """


@hookspec
def register_metrics(register: Register) -> None:
    """Register the plugin's Metric subclasses (quality measures).

    Call ``register(cls)`` once per class; users pick them with ``--metric NAME``.
    """


# Hook name -> component kind it registers.
HOOK_KINDS: dict[str, str] = {
    "register_architectures": "arch",
    "register_losses": "loss",
    "register_schedules": "schedule",
    "register_augmentations": "augment",
    "register_metrics": "metric",
}
