"""Built-in adversarial losses: bce (the default), hinge, lsgan, wgan-gp, and the relativistic
rsgan and rahinge.

Every loss works on raw discriminator outputs (logits / critic scores) and is a mean over its
batch, so real-only and fake-only updates are well defined (see gan_zoo.interfaces.Loss).
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

import gan_zoo
from gan_zoo import Loss, Options


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


class HingeLoss(Loss):
    """Hinge loss (Lim & Ye 2017; SAGAN, BigGAN): margins at +-1 for D, -D(G(z)) for G."""

    name = "hinge"

    def real_loss(self, real_logits: Tensor, real_target: float = 1.0) -> Tensor:
        # Labels mean nothing to a margin loss: real_target (label smoothing) is ignored.
        return F.relu(1.0 - real_logits).mean()

    def fake_loss(self, fake_logits: Tensor) -> Tensor:
        return F.relu(1.0 + fake_logits).mean()

    def generator_loss(self, fake_logits: Tensor) -> Tensor:
        return -fake_logits.mean()


class LSGANOptions(Options):
    fake_target: float = Field(0.0, description="D's target for generated images (a in the paper)")
    generator_target: float = Field(
        1.0, description="the value G wants D to output on its images (c in the paper)")


class LSGANLoss(Loss):
    """Least-squares GAN (Mao et al. 2017): half squared distance of D's output to its targets."""

    name = "lsgan"
    Options = LSGANOptions

    def real_loss(self, real_logits: Tensor, real_target: float = 1.0) -> Tensor:
        # real_target is b in the paper: 1, or 0.9 with label smoothing.
        return 0.5 * (real_logits - real_target).pow(2).mean()

    def fake_loss(self, fake_logits: Tensor) -> Tensor:
        return 0.5 * (fake_logits - self.options.fake_target).pow(2).mean()

    def generator_loss(self, fake_logits: Tensor) -> Tensor:
        return 0.5 * (fake_logits - self.options.generator_target).pow(2).mean()

    def decision_threshold(self) -> float:
        return (self.options.fake_target + 1.0) / 2  # real target b = 1 (0.9 when smoothed)


class WGANGPOptions(Options):
    gp_weight: float = Field(10.0, ge=0, description="weight of the gradient penalty (lambda)")
    drift: float = Field(
        0.0, ge=0, description="weight of E[D(x)^2] on real scores, keeping them near 0 "
        "(Karras et al. 2018 used 0.001)")


class WGANGPLoss(Loss):
    """Wasserstein loss with gradient penalty (Gulrajani et al. 2017); use a D without batch norm."""

    name = "wgan-gp"
    Options = WGANGPOptions

    def __init__(self, options: Options | None = None):
        super().__init__(options)
        self._warned = False

    def real_loss(self, real_logits: Tensor, real_target: float = 1.0) -> Tensor:
        # A critic score has no label: real_target is ignored.
        loss = -real_logits.mean()
        if self.options.drift > 0:
            loss = loss + self.options.drift * real_logits.pow(2).mean()
        return loss

    def fake_loss(self, fake_logits: Tensor) -> Tensor:
        return fake_logits.mean()

    def generator_loss(self, fake_logits: Tensor) -> Tensor:
        return -fake_logits.mean()

    def penalty(self, discriminator: nn.Module, real: Tensor, fake: Tensor) -> Tensor | None:
        if self.options.gp_weight == 0:
            return None
        if not self._warned and any(isinstance(m, nn.modules.batchnorm._BatchNorm)
                                    for m in discriminator.modules()):
            # The penalty is per image; batch norm mixes images, so the penalised gradient is not
            # the one of each score. It still runs, but the paper's guarantee is gone.
            warnings.warn("wgan-gp with batch norm in the discriminator: use a D without it "
                          "(for conv*: -o convN.d_norm=none or spectral)", gan_zoo.GanZooWarning,
                          stacklevel=2)
            self._warned = True
        return self.options.gp_weight * gradient_penalty(discriminator, real, fake)


def gradient_penalty(discriminator: nn.Module, real: Tensor, fake: Tensor,
                     alpha: Tensor | None = None) -> Tensor:
    """E[(||grad_x D(x)|| - 1)^2] at random points x between real and fake images.

    ``alpha`` (shape (N,)) fixes the interpolation weights (tests); by default uniform in [0, 1].
    """
    n = min(len(real), len(fake))
    real, fake = real[:n].detach(), fake[:n].detach()
    if alpha is None:
        alpha = torch.rand(n, device=real.device, dtype=real.dtype)
    alpha = alpha.view(n, *([1] * (real.dim() - 1)))
    x = torch.lerp(fake, real, alpha).requires_grad_(True)
    scores = discriminator(x).float()
    # create_graph: the penalty is part of D's loss, so its gradient must reach D's weights.
    (grad,) = torch.autograd.grad(scores.sum(), x, create_graph=True)
    # The epsilon keeps the norm differentiable where a gradient is exactly zero.
    norm = (grad.float().flatten(1).pow(2).sum(1) + 1e-12).sqrt()
    return (norm - 1.0).pow(2).mean()


class _Relativistic(Loss):
    """Base of the relativistic losses (Jolicoeur-Martineau 2019, "The relativistic
    discriminator: a key element missing from standard GAN"): D estimates how much more
    realistic a real image is than a fake one, so its terms only exist for real and fake logits
    together, and G's term also reads D's logits on the step's real images."""

    relativistic = True

    def real_loss(self, real_logits: Tensor, real_target: float = 1.0) -> Tensor:
        raise TypeError(f"{self.name} is relativistic: D's loss is discriminator_loss(real, fake)")

    def fake_loss(self, fake_logits: Tensor) -> Tensor:
        raise TypeError(f"{self.name} is relativistic: D's loss is discriminator_loss(real, fake)")

    @staticmethod
    def _need_real(real_logits: Tensor | None, name: str) -> Tensor:
        if real_logits is None:
            raise TypeError(f"{name} is relativistic: generator_loss needs real_logits")
        return real_logits


class RSGANLoss(_Relativistic):
    """Relativistic standard GAN (Jolicoeur-Martineau 2019): sigmoid(D(real) - D(fake)), paired."""

    name = "rsgan"

    @staticmethod
    def _pairs(a: Tensor, b: Tensor) -> Tensor:
        n = min(len(a), len(b))  # D's batches may be cut to d_batch_fraction; pair what exists
        return a[:n] - b[:n]

    def discriminator_loss(self, real_logits: Tensor, fake_logits: Tensor,
                           real_target: float = 1.0) -> Tensor:
        # real_target < 1 smooths the pairwise label as in bce: -t log s(d) - (1-t) log s(-d).
        d = self._pairs(real_logits, fake_logits)
        return (real_target * F.softplus(-d) + (1 - real_target) * F.softplus(d)).mean()

    def generator_loss(self, fake_logits: Tensor, real_logits: Tensor | None = None) -> Tensor:
        real = self._need_real(real_logits, self.name)
        return F.softplus(-self._pairs(fake_logits, real)).mean()


class RaHingeLoss(_Relativistic):
    """Relativistic average hinge loss (Jolicoeur-Martineau 2019): margins on each image's logit
    minus the mean logit of the other kind; G's term is symmetric."""

    name = "rahinge"

    def discriminator_loss(self, real_logits: Tensor, fake_logits: Tensor,
                           real_target: float = 1.0) -> Tensor:
        # A margin loss: real_target (label smoothing) means nothing here and is ignored.
        return (F.relu(1.0 - (real_logits - fake_logits.mean())).mean()
                + F.relu(1.0 + (fake_logits - real_logits.mean())).mean())

    def generator_loss(self, fake_logits: Tensor, real_logits: Tensor | None = None) -> Tensor:
        real = self._need_real(real_logits, self.name)
        return (F.relu(1.0 - (fake_logits - real.mean())).mean()
                + F.relu(1.0 + (real - fake_logits.mean())).mean())


@gan_zoo.hookimpl
def register_losses(register):
    for cls in (BCELoss, HingeLoss, LSGANLoss, WGANGPLoss, RSGANLoss, RaHingeLoss):
        register(cls)
