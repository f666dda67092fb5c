"""ganzoo-resgan: an example gan-zoo plugin package.

It adds three components, found by gan-zoo through the ``gan_zoo`` entry point in
pyproject.toml:

* ``resgan``   (architecture) a small residual GAN (ResNet blocks in G and D, as in
  Miyato et al. 2018 / Gulrajani et al. 2017), at 32, 64 or 128 pixels;
* ``dragan``   (loss) the non-saturating loss with the DRAGAN gradient penalty
  (Kodali et al. 2017) around perturbed real images;
* ``acc-noise`` (schedule) instance noise that follows the discriminator's accuracy.
"""

from __future__ import annotations

import gan_zoo

from .arch import ResGAN
from .loss import DraganLoss
from .schedule import AccuracyNoise

__version__ = "0.1.0"
# The gan-zoo plugin API this package is written for (see gan-zoo's docs/plugins.md).
GANZOO_PLUGIN_API = 1

__all__ = ["AccuracyNoise", "DraganLoss", "ResGAN"]


@gan_zoo.hookimpl
def register_architectures(register):
    register(ResGAN)


@gan_zoo.hookimpl
def register_losses(register):
    register(DraganLoss)


@gan_zoo.hookimpl
def register_schedules(register):
    register(AccuracyNoise)
