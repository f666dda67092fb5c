"""Built-in adversarial losses."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

import gan_zoo
from gan_zoo.interfaces import Loss


class BCELoss(Loss):
    """Non-saturating GAN loss (Goodfellow et al. 2014) on logits; the default."""

    name = "bce"

    def real_loss(self, real_logits: Tensor, real_target: float = 1.0) -> Tensor:
        return F.binary_cross_entropy_with_logits(
            real_logits, real_logits.new_full(real_logits.shape, real_target))

    def fake_loss(self, fake_logits: Tensor) -> Tensor:
        return F.softplus(fake_logits).mean()  # = BCE with target 0

    def generator_loss(self, fake_logits: Tensor) -> Tensor:
        return F.softplus(-fake_logits).mean()  # = BCE with target 1: -log D(G(z))


@gan_zoo.hookimpl
def register_losses(register):
    register(BCELoss)
