"""``resgan``: a small residual GAN.

G: a dense layer to a 4x4 map, then residual up-blocks (BN-ReLU-upsample-conv3-BN-ReLU-conv3,
with an upsample + 1x1-conv shortcut) halving the channels at each doubling of the side, and a
BN-ReLU-conv3-tanh head. D: residual down-blocks (the first one "optimized": conv-ReLU-conv
then average pooling), ReLU, a sum over positions and a linear logit, optionally with spectral
normalization on every layer (the default).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

from gan_zoo import Architecture, Discriminator, Generator, Options


class ResGANOptions(Options):
    """Options of resgan."""

    resolution: Literal[32, 64, 128] = Field(32, description="image side in pixels")
    latent_dim: int = Field(128, ge=1, le=4096, description="size of the latent vector z")
    width: int = Field(
        32, ge=4, le=1024,
        description="channels at full resolution; each halving of the side doubles them "
        "(capped at max_channels)")
    max_channels: int = Field(256, ge=8, le=4096, description="cap on the channels of any block")
    spectral_norm: bool = Field(True, description="spectral normalization on every D layer")
    g_norm: Literal["batch", "none"] = Field("batch", description="normalization in G's blocks")


def _channels(o: ResGANOptions) -> list[int]:
    """Channels from the 4x4 map up to full resolution."""
    n = int(math.log2(o.resolution // 4))
    return [min(o.width * 2 ** (n - i), o.max_channels) for i in range(n + 1)]


def _norm(kind: str, c: int) -> nn.Module:
    return nn.BatchNorm2d(c) if kind == "batch" else nn.Identity()


class UpBlock(nn.Module):
    """Pre-activation residual block that doubles the side."""

    def __init__(self, c_in: int, c_out: int, norm: str):
        super().__init__()
        self.main = nn.Sequential(
            _norm(norm, c_in), nn.ReLU(), nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(c_in, c_out, 3, 1, 1), _norm(norm, c_out), nn.ReLU(),
            nn.Conv2d(c_out, c_out, 3, 1, 1))
        self.shortcut = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                      nn.Conv2d(c_in, c_out, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.main(x) + self.shortcut(x)


class DownBlock(nn.Module):
    """Residual block that halves the side; the first block takes raw images (no pre-ReLU)."""

    def __init__(self, c_in: int, c_out: int, first: bool, sn: Any):
        super().__init__()
        pre: list[nn.Module] = [] if first else [nn.ReLU()]
        self.main = nn.Sequential(*pre, sn(nn.Conv2d(c_in, c_out, 3, 1, 1)), nn.ReLU(),
                                  sn(nn.Conv2d(c_out, c_out, 3, 1, 1)), nn.AvgPool2d(2))
        self.shortcut = nn.Sequential(nn.AvgPool2d(2), sn(nn.Conv2d(c_in, c_out, 1)))

    def forward(self, x: Tensor) -> Tensor:
        return self.main(x) + self.shortcut(x)


class ResGenerator(Generator):
    def __init__(self, o: ResGANOptions):
        super().__init__()
        self.latent_dim, self.resolution, self.channels = o.latent_dim, o.resolution, 3
        chans = _channels(o)
        self.c0 = chans[0]
        self.dense = nn.Linear(o.latent_dim, chans[0] * 16)
        pairs = zip(chans, chans[1:], strict=False)
        self.blocks = nn.Sequential(*[UpBlock(a, b, o.g_norm) for a, b in pairs])
        self.head = nn.Sequential(_norm(o.g_norm, chans[-1]), nn.ReLU(),
                                  nn.Conv2d(chans[-1], 3, 3, 1, 1), nn.Tanh())

    def forward(self, z: Tensor) -> Tensor:
        return self.head(self.blocks(self.dense(z).view(z.shape[0], self.c0, 4, 4)))


class ResDiscriminator(Discriminator):
    def __init__(self, o: ResGANOptions):
        super().__init__()
        self.resolution, self.channels = o.resolution, 3
        sn = spectral_norm if o.spectral_norm else (lambda m: m)
        # Full resolution first: w, 2w, ... channels while halving the side down to 4x4.
        chans = [3, *list(reversed(_channels(o)))[:-1]]
        self.blocks = nn.Sequential(*[DownBlock(a, b, i == 0, sn)
                                      for i, (a, b) in enumerate(zip(chans, chans[1:], strict=False))])
        self.logit = sn(nn.Linear(chans[-1], 1))

    def forward(self, x: Tensor) -> Tensor:
        h = torch.relu(self.blocks(x)).sum(dim=(2, 3))
        return self.logit(h).squeeze(1)


class ResGAN(Architecture):
    """Small residual GAN (ResNet blocks in G and D, spectral-norm D) at 32, 64 or 128 px."""

    name = "resgan"
    Options = ResGANOptions
    contract_options: ClassVar[dict[str, Any]] = {"width": 8, "latent_dim": 16}

    @property
    def resolution(self) -> int:
        return self.options.resolution

    def build_generator(self) -> ResGenerator:
        return ResGenerator(self.options)

    def build_discriminator(self) -> ResDiscriminator:
        return ResDiscriminator(self.options)
