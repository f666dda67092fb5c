"""Building blocks for class-conditional architectures (docs/plugins.md, "Conditional
architectures"): conditional batch norm for G, the projection term for D, and the check that a
module got labels exactly when it is conditional. Public as gan_zoo.ClassBatchNorm,
gan_zoo.ClassProjection and gan_zoo.check_labels."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class ClassBatchNorm(nn.Module):
    """Conditional batch norm (de Vries et al. 2017; as in SNGAN-projection, Miyato & Koyama
    2018): batch statistics shared by all classes, a gain and a bias per class. Called
    ``norm(x, y)``; dims 1 for (N, C) inputs, 2 for (N, C, H, W). Its inner batch norm has
    no affine weights (``norm.weight`` is None): an init loop over BatchNorm modules must
    skip ``affine=False`` ones."""

    def __init__(self, channels: int, num_classes: int, dims: int = 2):
        super().__init__()
        norm = nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d
        self.norm = norm(channels, affine=False)
        self.gain = nn.Embedding(num_classes, channels)
        self.bias = nn.Embedding(num_classes, channels)
        nn.init.ones_(self.gain.weight)
        nn.init.zeros_(self.bias.weight)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        shape = (len(y), -1) + (1,) * (x.dim() - 2)
        h = self.norm(x)  # the embeddings are fp32: cast, so a bf16 map stays bf16
        return h * self.gain(y).view(shape).to(h.dtype) + self.bias(y).view(shape).to(h.dtype)


class ClassProjection(nn.Module):
    """The class term of a projection discriminator (Miyato & Koyama 2018): <embed(y), h> for
    pooled features h of shape (N, C), added to D's logit. The embedding starts small (std
    0.02), so a conditional D starts close to the unconditional one; `wrap` (e.g. spectral_norm)
    is applied to it, as SNGAN-projection normalizes it with the rest of D. Computed in fp32."""

    def __init__(self, num_classes: int, channels: int, wrap=None):
        super().__init__()
        embed = nn.Embedding(num_classes, channels)
        nn.init.normal_(embed.weight, 0.0, 0.02)
        self.embed = wrap(embed) if wrap is not None else embed

    def forward(self, h: Tensor, y: Tensor) -> Tensor:
        return (self.embed(y) * h.float()).sum(1)


def check_labels(module: nn.Module, y: Tensor | None) -> None:
    """A conditional module (num_classes > 0) needs labels, an unconditional one takes none: a
    ValueError naming the module otherwise (a wrong call is a bug, not a user error)."""
    k = getattr(module, "num_classes", 0)
    if (y is None) != (k == 0):
        raise ValueError(f"{type(module).__name__} with num_classes={k} was called "
                         f"{'without' if y is None else 'with'} labels")
    if y is not None and (y.dtype != torch.long or y.dim() != 1):
        raise ValueError(f"{type(module).__name__}: labels must be int64 of shape (N,), got "
                         f"{y.dtype} {tuple(y.shape)}")
