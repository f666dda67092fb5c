"""gan-zoo: a plugin-based zoo of generative adversarial networks for PyTorch."""

from __future__ import annotations

from .errors import GanZooError, UsageError
from .hookspecs import hookimpl
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

__version__ = "0.1.0"
# Bumped when a hook or interface changes incompatibly; see docs/plugins.md.
PLUGIN_API_VERSION = 1

__all__ = [
    "Architecture",
    "Augmentation",
    "Component",
    "Discriminator",
    "GanZooError",
    "Generator",
    "Loss",
    "Metric",
    "Options",
    "PLUGIN_API_VERSION",
    "Schedule",
    "TrainState",
    "UsageError",
    "__version__",
    "hookimpl",
]
