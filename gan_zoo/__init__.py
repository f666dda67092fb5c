"""gan-zoo: a plugin-based zoo of generative adversarial networks for PyTorch."""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING

from .errors import GanZooError, GanZooWarning, UsageError
from .hookspecs import hookimpl
from .util.lazy import lazy_attributes

if TYPE_CHECKING:
    from .interfaces import (
        Architecture,
        Augmentation,
        Component,
        Discriminator,
        Generator,
        Loss,
        Metric,
        Schedule,
        TrainState,
    )
    from .options import Options
    from .util.conditioning import ClassBatchNorm, ClassProjection, check_labels
    from .util.fastconv import FastConv2d, FastConvTranspose2d

__version__ = "0.1.0"
# Bumped when a hook or interface changes incompatibly; see docs/plugins.md.
PLUGIN_API_VERSION = 1

# The interfaces import PyTorch (seconds); they load on first use so that commands which do
# not need it (`ganzoo fid` without weights, `ganzoo recipes`) answer at once.
def _interfaces() -> ModuleType:
    from . import interfaces

    return interfaces


def _options() -> ModuleType:
    from . import options

    return options


def _conditioning() -> ModuleType:
    from .util import conditioning

    return conditioning


def _fastconv() -> ModuleType:
    from .util import fastconv

    return fastconv


_LAZY = {name: _interfaces for name in (
    "Architecture", "Augmentation", "Component", "Discriminator", "Generator", "Loss", "Metric",
    "Schedule", "TrainState")} | {"Options": _options, "FastConv2d": _fastconv,
                                   "FastConvTranspose2d": _fastconv} | {
    name: _conditioning for name in ("ClassBatchNorm", "ClassProjection", "check_labels")}
__getattr__ = lazy_attributes(__name__, _LAZY)


def __dir__() -> list[str]:
    """The public names (the lazy base classes included: `dir(gan_zoo)`, completion) and the
    module's own globals."""
    return sorted({*__all__, *globals()})

__all__ = [
    "Architecture",
    "Augmentation",
    "ClassBatchNorm",
    "ClassProjection",
    "Component",
    "Discriminator",
    "FastConv2d",
    "FastConvTranspose2d",
    "GanZooError",
    "GanZooWarning",
    "Generator",
    "Loss",
    "Metric",
    "Options",
    "PLUGIN_API_VERSION",
    "Schedule",
    "TrainState",
    "UsageError",
    "__version__",
    "check_labels",
    "hookimpl",
]
