"""The component kinds: one table from which every other list of kinds is derived.

``KIND_TABLE`` is the only place a kind is spelled out. The hook specifications
(``hookspecs``), the registry's tables, the base-class names in registration errors
(``plugins``), the CLI's kind names (``cli.KIND_ALIASES``) and the contract checks
(``testing.check_component``) are all built from it; tests/core/test_registry.py checks each
consumer against it, and that each base class's ``kind`` is its row's ``name``. This module
imports nothing heavy: the CLI reads it at start (no PyTorch before a command needs it).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Kind:
    """One kind of component."""

    name: str  # the key in configs, checkpoints and `ganzoo list KIND`: "arch"
    title: str  # in messages: "architecture"
    plural: str  # "architectures"; the hook is register_<plural>
    base: str  # the base class exported by gan_zoo: "Architecture"
    flag: str  # the `ganzoo train` option that picks one: "--arch"
    describes: str  # what the classes are, for the hook's docstring
    aliases: tuple[str, ...] = ()  # further names `ganzoo list` accepts

    @property
    def hook(self) -> str:
        """The plugin hook that registers this kind's classes."""
        return f"register_{self.plural}"

    def names(self) -> tuple[str, ...]:
        """Every name the CLI accepts for this kind."""
        return tuple(dict.fromkeys((self.name, self.title, self.plural, *self.aliases)))


KIND_TABLE: tuple[Kind, ...] = (
    Kind("arch", "architecture", "architectures", "Architecture", "--arch",
         "generator + discriminator pairs", ("archs",)),
    Kind("loss", "loss", "losses", "Loss", "--loss", "adversarial objectives"),
    Kind("schedule", "schedule", "schedules", "Schedule", "--sched", "per-step knob settings",
         ("sched",)),
    Kind("augment", "augmentation", "augmentations", "Augmentation", "--augment",
         "batch image transforms", ("augments",)),
    Kind("metric", "metric", "metrics", "Metric", "--metric", "quality measures"),
)

KIND_BY_NAME: dict[str, Kind] = {k.name: k for k in KIND_TABLE}
KINDS: tuple[str, ...] = tuple(KIND_BY_NAME)
KIND_TITLES: dict[str, str] = {k.name: k.title for k in KIND_TABLE}
KIND_BASES: dict[str, str] = {k.name: k.base for k in KIND_TABLE}
HOOK_KINDS: dict[str, str] = {k.hook: k.name for k in KIND_TABLE}  # hook name -> kind
KIND_ALIASES: dict[str, str] = {alias: k.name for k in KIND_TABLE for alias in k.names()}
