"""``dragan``: the non-saturating GAN loss plus the DRAGAN gradient penalty.

DRAGAN (Kodali et al. 2017, "On Convergence and Stability of GANs") penalizes the norm of D's
gradient away from 1 at points near the real data, x + noise, which discourages the sharp
gradients around real images that go with mode collapse.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from gan_zoo import Loss, Options


class DraganOptions(Options):
    """Options of dragan."""

    gp_weight: float = Field(10.0, ge=0, description="weight of the gradient penalty (lambda)")
    perturb: float = Field(
        0.5, gt=0, description="size of the perturbation of real images, in units of their std")


class DraganLoss(Loss):
    """Non-saturating loss with the DRAGAN gradient penalty around perturbed real images."""

    name = "dragan"
    Options = DraganOptions

    def real_loss(self, real_logits: Tensor, real_target: float = 1.0) -> Tensor:
        return F.binary_cross_entropy_with_logits(
            real_logits, real_logits.new_full(real_logits.shape, real_target))

    def fake_loss(self, fake_logits: Tensor) -> Tensor:
        return F.softplus(fake_logits).mean()

    def generator_loss(self, fake_logits: Tensor) -> Tensor:
        return F.softplus(-fake_logits).mean()

    def penalty(self, discriminator: nn.Module, real: Tensor, fake: Tensor) -> Tensor | None:
        if self.options.gp_weight == 0:
            return None
        real = real.detach().float()
        noise = self.options.perturb * real.std() * torch.rand_like(real)
        alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device)
        x = (real + alpha * noise).requires_grad_(True)
        out = discriminator(x).float()
        (grad,) = torch.autograd.grad(out.sum(), x, create_graph=True)
        norm = grad.flatten(1).norm(dim=1)
        return self.options.gp_weight * ((norm - 1) ** 2).mean()
