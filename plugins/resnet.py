"""The residual family: resnet32, resnet64, resnet128 (SNGAN / BigGAN, optional SAGAN attention).

The generator and discriminator of Miyato et al. 2018, "Spectral Normalization for Generative
Adversarial Networks" (the ResNet models of its appendix), in the form BigGAN (Brock et al. 2019,
"Large Scale GAN Training for High Fidelity Natural Image Synthesis") made standard, with the
optional self-attention block of SAGAN (Zhang et al. 2019, "Self-Attention Generative
Adversarial Networks"), unconditional or class-conditional:

* G: a dense layer from z to a 4x4 map, residual up-blocks (BN, ReLU, nearest 2x upsample,
  3x3 conv, BN, ReLU, 3x3 conv; a 1x1 conv shortcut where the channels change), then BN, ReLU,
  a 3x3 conv to RGB and tanh.
* D: spectral normalization on every conv and linear layer (torch's parametrization, so its
  power-iteration vectors are buffers in the state dict and resume is bit-exact); an
  "optimized" first block (conv, ReLU, conv, 2x2 average pool; shortcut pool then 1x1 conv),
  residual down-blocks (ReLU, conv, ReLU, conv, pool; shortcut 1x1 conv and pool) to a 4x4 map,
  one block at 4x4 without pooling (SNGAN/BigGAN's last block; ``d_extra_block``), ReLU, a sum
  over positions and a linear layer: one logit per image.
* Class-conditional (``--conditional``; the engine sets ``num_classes``), as SNGAN-projection
  (Miyato & Koyama 2018, "cGANs with Projection Discriminator") and BigGAN condition theirs:
  every batch norm inside G's residual blocks becomes a conditional batch norm
  (``gan_zoo.ClassBatchNorm``: shared statistics, a gain and a bias per class; G's last BN
  before to_rgb stays unconditional, as in both papers), and D's logit gains the projection
  term <embed(y), h> on the same sum-pooled features (``gan_zoo.ClassProjection``, spectrally
  normalized like the rest of D). G always has batch norm here, so z is not concatenated with
  a class embedding. With ``num_classes`` 0 the modules are exactly the unconditional ones.

Channels double at every halving of the side, as in the conv family: ``width`` channels at G's
full resolution, ``d_width`` in D's first block (at half resolution), capped at
``max_channels``. Shortcut 1x1 convs run on the smaller of their two maps (pool-then-conv in D,
conv-then-upsample in G), which is the same linear map for a quarter of the work.

Default widths are sized for a CPU and far narrower than the papers' (SNGAN: 256 channels in
G and 128 in D at 32 px). Every 3x3 convolution here runs at stride 1 on its block's input
side, so equal width costs much more than the DCGAN family: at width 32 for G and D, resnet64
is 6.49 GFLOP per trained image, 11x conv64's default. FLOPs per trained image, as
benchmarks/worker.py ``count_flops`` counts them (``torch.utils.flop_counter.FlopCounterMode``
over one ``Trainer.train_step``: G forward and backward, D on real and fake images, the G step
through D; hinge loss, ``--d-update separate``; multiply-adds of convolutions and matrix
products, x2), at the defaults:

=========  ==============  ============  ===================  =====  ===================
arch       width G / D     GFLOP/image   conv, default width  ratio  params G / D
=========  ==============  ============  ===================  =====  ===================
resnet32   16 / 16         0.310         conv32: 0.385        0.81x  0.42M / 0.15M
resnet64   10 / 10         0.648         conv64: 0.584        1.11x  0.58M / 0.23M
resnet128  8 / 8           2.07          conv128: 3.07        0.68x  1.16M / 0.60M
=========  ==============  ============  ===================  =====  ===================

Attention adds little: resnet32 at 16 px 0.318, resnet64 at 16 px 0.659 and at 32 px 0.700,
resnet128 at 64 px 2.72 GFLOP/image. D's width defaults to G's (``d_width`` null), the channel
ratio of SNGAN's and BigGAN's 64 and 128 px models (D has half of G's channels at each side).
resnet64's width 10 keeps it within 1-1.5x conv64's FLOPs (8 would be 0.72x, 12 1.6x); its
images/s per CPU-second were within noise of a width 8 G with a width 12 D (1.21x). Measured speed:
docs/zoo.md.

``gan_zoo.FastConv2d`` is not used: it speeds up only 4x4 stride-2 convolutions, and this family
has none (3x3 and 1x1 convolutions at stride 1, with pooling and upsampling around them).
Recommended training flags (hinge loss): docs/zoo.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator
from pydantic_core import PydanticCustomError
from torch import Tensor, nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm

import gan_zoo
from gan_zoo import (
    Architecture,
    ClassBatchNorm,
    ClassProjection,
    Discriminator,
    Generator,
    Options,
    check_labels,
)

Init = Literal["xavier", "orthogonal", "default"]
Wrap = Callable[[nn.Module], nn.Module]


def _identity(module: nn.Module) -> nn.Module:
    return module


def _layer(module: nn.Conv2d | nn.Linear, init: Init, gain: float, wrap: Wrap) -> nn.Module:
    """Initialize a layer's weight (SNGAN: Xavier, gain sqrt(2) on residual convs; BigGAN:
    orthogonal), then wrap it (spectral norm), so the power iteration starts on the final
    weight."""
    if init == "xavier":
        nn.init.xavier_uniform_(module.weight, gain)
    elif init == "orthogonal":
        nn.init.orthogonal_(module.weight, gain)
    if init != "default" and module.bias is not None:
        nn.init.zeros_(module.bias)
    return wrap(module)


def _conv(c_in: int, c_out: int, k: int, init: Init, wrap: Wrap, gain: float = math.sqrt(2),
          bias: bool = True) -> nn.Module:
    return _layer(nn.Conv2d(c_in, c_out, k, 1, k // 2, bias=bias), init, gain, wrap)


def _weight(conv: nn.Module) -> Tensor:
    """A conv's stored weight (the original under a parametrization)."""
    if parametrize.is_parametrized(conv, "weight"):
        return conv.parametrizations.weight.original
    return conv.weight


def _channels_last(x: Tensor, like: nn.Module) -> Tensor:
    """x in the memory format of ``like``'s weight (channels-last when the trainer made the
    module so): the dense layer's output is an NCHW view, converted once here on the 4x4 map
    rather than by every layer after it."""
    w = _weight(like)
    if w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous():
        return x.contiguous(memory_format=torch.channels_last)
    return x


class SelfAttention(nn.Module):
    """SAGAN's self-attention (Zhang et al. 2019) as BigGAN uses it: 1x1 convs to queries and
    keys (C/8 channels) and values (C/2), keys and values max-pooled 2x2, softmax over the
    pooled positions, a 1x1 conv back to C, added to the input with a learned gain that starts
    at 0 (the block starts as the identity).

    Written with matrix products (no fused attention kernel) so that R1's double backward works
    and FlopCounterMode sees the work; layout-agnostic, a view in channels-last; the softmax is
    taken in float32 under bf16/fp16 autocast.
    """

    def __init__(self, c: int, init: Init, wrap: Wrap):
        super().__init__()
        c_qk, c_v = max(1, c // 8), max(1, c // 2)
        self.query = _conv(c, c_qk, 1, init, wrap, gain=1.0, bias=False)
        self.key = _conv(c, c_qk, 1, init, wrap, gain=1.0, bias=False)
        self.value = _conv(c, c_v, 1, init, wrap, gain=1.0, bias=False)
        self.out = _conv(c_v, c, 1, init, wrap, gain=1.0, bias=False)
        # 0-dim, so it does not promote bf16 activations to float32 under autocast.
        self.gain = nn.Parameter(torch.zeros(()))

    @staticmethod
    def _rows(x: Tensor) -> Tensor:
        """(N, C, H, W) -> (N, H*W, C); a view when x is channels-last."""
        return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1, x.shape[1])

    def forward(self, x: Tensor) -> Tensor:
        n, _, h, w = x.shape
        q = self._rows(self.query(x))
        k = self._rows(F.max_pool2d(self.key(x), 2))
        v = self._rows(F.max_pool2d(self.value(x), 2))
        logits = torch.bmm(q, k.transpose(1, 2))  # (N, HW, HW/4)
        attn = torch.softmax(logits.float(), dim=-1).to(v.dtype)
        o = torch.bmm(attn, v)  # (N, HW, C/2), rows in (h, w) order
        o = o.view(n, h, w, -1).permute(0, 3, 1, 2)  # a channels-last view
        return x + self.gain * self.out(o)


class UpBlock(nn.Module):
    """G's residual block doubling the side (SNGAN's GenBlock). With ``num_classes`` > 0 both
    batch norms are class-conditional (SNGAN-projection's conditional GenBlock), called
    ``block(x, y)``."""

    def __init__(self, c_in: int, c_out: int, init: Init, wrap: Wrap, num_classes: int = 0):
        super().__init__()
        if num_classes:
            self.bn1: nn.Module = ClassBatchNorm(c_in, num_classes)
            self.bn2: nn.Module = ClassBatchNorm(c_out, num_classes)
        else:
            self.bn1, self.bn2 = nn.BatchNorm2d(c_in), nn.BatchNorm2d(c_out)
        self.conv1 = _conv(c_in, c_out, 3, init, wrap)
        self.conv2 = _conv(c_out, c_out, 3, init, wrap)
        # Learned shortcut only where the channels change; computed before upsampling (a 1x1
        # conv and nearest upsampling commute).
        self.shortcut = _conv(c_in, c_out, 1, init, wrap, gain=1.0) if c_in != c_out else None

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        if y is None:
            h = F.relu(self.bn1(x), inplace=True)
            h = self.conv1(F.interpolate(h, scale_factor=2, mode="nearest"))
            h = self.conv2(F.relu(self.bn2(h), inplace=True))
        else:
            h = F.relu(self.bn1(x, y), inplace=True)
            h = self.conv1(F.interpolate(h, scale_factor=2, mode="nearest"))
            h = self.conv2(F.relu(self.bn2(h, y), inplace=True))
        s = self.shortcut(x) if self.shortcut is not None else x
        return h + F.interpolate(s, scale_factor=2, mode="nearest")


class DownBlock(nn.Module):
    """D's residual block (SNGAN's DisBlock / OptimizedDisBlock), halving the side unless
    ``down`` is False. The ``first`` ("optimized") block takes images: no ReLU before its first
    conv, and its shortcut pools before the 1x1 conv."""

    def __init__(self, c_in: int, c_out: int, init: Init, wrap: Wrap, *, first: bool = False,
                 down: bool = True):
        super().__init__()
        self.first, self.down = first, down
        self.conv1 = _conv(c_in, c_out, 3, init, wrap)
        self.conv2 = _conv(c_out, c_out, 3, init, wrap)
        learned = first or down or c_in != c_out
        self.shortcut = _conv(c_in, c_out, 1, init, wrap, gain=1.0) if learned else None

    def forward(self, x: Tensor) -> Tensor:
        h = x if self.first else F.relu(x)  # not in place: x also feeds the shortcut
        h = self.conv2(F.relu(self.conv1(h), inplace=True))
        s = x
        if self.down:
            h = F.avg_pool2d(h, 2)
            # Pool, then the 1x1 conv: the same linear map as conv-then-pool, a quarter of the
            # work (SNGAN's optimized block orders it so; its other blocks conv first).
            s = F.avg_pool2d(s, 2)
        if self.shortcut is not None:
            s = self.shortcut(s)
        return h + s


_WIDTH_HELP = ("channel multiplier of G: its full-resolution feature map has this many channels, "
               "each halving of the side doubles them (capped at max_channels)")
_D_WIDTH_HELP = ("channels of D's first block (at half the image side), doubled at each halving "
                 "(capped at max_channels); null = width")


class ResNetOptions(Options):
    """Options of the resnet family (the resolution comes from the architecture's name)."""

    latent_dim: int = Field(128, ge=1, le=4096, description="size of the latent vector z")
    width: int = Field(16, ge=1, le=1024, description=_WIDTH_HELP)
    d_width: int | None = Field(None, ge=1, le=1024, description=_D_WIDTH_HELP)
    max_channels: int = Field(512, ge=1, le=4096, description="cap on the channels of any block")
    attention: int = Field(
        0, ge=0, description="side of the feature map where G and D get a SAGAN self-attention "
        "block (after G's block that produces that side, after D's block that produces it); "
        "0 = none. A power of two from 4 to half the image side")
    d_extra_block: bool = Field(
        True, description="a last D block at 4x4 without pooling (SNGAN, BigGAN)")
    g_spectral_norm: bool = Field(
        False, description="spectral norm on G's layers too (SAGAN, BigGAN); D always has it")
    init: Init = Field(
        "xavier", description="weight init: xavier (SNGAN: gain sqrt(2) on residual convs, 1 "
        "elsewhere), orthogonal (BigGAN) or PyTorch's default")

    _side: ClassVar[int] = 0  # set by the per-resolution subclasses

    @classmethod
    def attention_sides(cls) -> list[int]:
        """Feature-map sides that G and D both have: 4, 8, ... up to half the image side."""
        return [4 * 2**i for i in range(int(math.log2(cls._side // 4)))] if cls._side else []

    @field_validator("attention")
    @classmethod
    def _attention_side(cls, value: int) -> int:
        sides = cls.attention_sides()
        if value and sides and value not in sides:
            raise PydanticCustomError(
                "attention_side",
                "must be 0 (no attention) or a feature-map side of this network: {sides}",
                {"sides": ", ".join(map(str, sides))})
        return value

    @property
    def discriminator_width(self) -> int:
        return self.width if self.d_width is None else self.d_width


def _n_scales(resolution: int) -> int:
    return int(math.log2(resolution // 4))


class ResNetGenerator(Generator):
    """SNGAN/BigGAN residual generator (Miyato et al. 2018; Brock et al. 2019): dense to 4x4,
    residual up-blocks, BN-ReLU-conv-tanh; optional SAGAN attention (Zhang et al. 2019).

    Conditional (num_classes > 0), as SNGAN-projection (Miyato & Koyama 2018) and BigGAN: the
    up-blocks' batch norms are ClassBatchNorm (a gain and a bias per class); the last BN stays
    unconditional. Called ``G(z, y=labels)``."""

    def __init__(self, o: ResNetOptions, resolution: int, num_classes: int = 0):
        super().__init__()
        self.latent_dim, self.resolution, self.channels = o.latent_dim, resolution, 3
        self.num_classes = num_classes
        n = _n_scales(resolution)
        chans = [min(o.width * 2 ** (n - i), o.max_channels) for i in range(n + 1)]
        wrap: Wrap = spectral_norm if o.g_spectral_norm else _identity
        self.c0 = chans[0]
        self.dense = _layer(nn.Linear(o.latent_dim, chans[0] * 16), o.init, 1.0, wrap)
        blocks: list[nn.Module] = []
        for i in range(n):
            blocks.append(UpBlock(chans[i], chans[i + 1], o.init, wrap, num_classes))
            if o.attention == 8 * 2**i:  # this block's output side
                blocks.append(SelfAttention(chans[i + 1], o.init, wrap))
        if o.attention == 4:
            blocks.insert(0, SelfAttention(chans[0], o.init, wrap))
        self.blocks = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(chans[-1])
        self.to_rgb = _conv(chans[-1], 3, 3, o.init, wrap, gain=1.0)

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        check_labels(self, y)
        h = _channels_last(self.dense(z).view(z.shape[0], self.c0, 4, 4), self.to_rgb)
        if y is None:
            h = self.blocks(h)
        else:
            for block in self.blocks:
                h = block(h, y) if isinstance(block, UpBlock) else block(h)
        return torch.tanh(self.to_rgb(F.relu(self.bn(h), inplace=True)))


class ResNetDiscriminator(Discriminator):
    """SNGAN/BigGAN residual discriminator (Miyato et al. 2018; Brock et al. 2019): spectral
    norm on every layer, optimized first block, down-blocks to 4x4, ReLU, sum pooling, linear;
    optional SAGAN attention (Zhang et al. 2019).

    Conditional (num_classes > 0): a projection discriminator (Miyato & Koyama 2018, as in
    BigGAN): the logit gains <embed(y), h> on the sum-pooled features h that feed the linear
    layer, the class embedding spectrally normalized. Called ``D(x, y=labels)``."""

    def __init__(self, o: ResNetOptions, resolution: int, num_classes: int = 0):
        super().__init__()
        self.resolution, self.channels = resolution, 3
        self.num_classes = num_classes
        n, dw = _n_scales(resolution), o.discriminator_width
        chans = [min(dw * 2**j, o.max_channels) for j in range(n)]  # after block j: side res/2^(j+1)
        blocks: list[nn.Module] = []
        c_in = 3
        for j, c in enumerate(chans):
            blocks.append(DownBlock(c_in, c, o.init, spectral_norm, first=j == 0))
            if o.attention == resolution // 2 ** (j + 1):
                blocks.append(SelfAttention(c, o.init, spectral_norm))
            c_in = c
        if o.d_extra_block:
            blocks.append(DownBlock(c_in, c_in, o.init, spectral_norm, down=False))
        self.blocks = nn.Sequential(*blocks)
        self.logit = _layer(nn.Linear(c_in, 1), o.init, 1.0, spectral_norm)
        # Created last, so an unconditional build draws its initial weights exactly as before.
        self.projection = ClassProjection(num_classes, c_in, spectral_norm) if num_classes else None

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        check_labels(self, y)
        h = F.relu(self.blocks(x), inplace=True).sum(dim=(2, 3))  # global sum pooling
        out = self.logit(h).squeeze(1)
        if self.projection is not None and y is not None:
            out = out + self.projection(h, y).to(out.dtype)
        return out


class _ResNetArchitecture(Architecture):
    """Residual-family architecture (set ``_resolution`` and ``Options`` in subclasses)."""

    _resolution: ClassVar[int] = 0
    Options = ResNetOptions
    # Class-conditional BN in G, projection in D (Miyato & Koyama 2018).
    conditional: ClassVar[bool] = True
    # Attention on, so the contract's one step and bit-exact resume cover it too.
    contract_options: ClassVar[dict[str, Any]] = {
        "width": 4, "d_width": 4, "latent_dim": 16, "attention": 8}

    @property
    def resolution(self) -> int:
        return self._resolution

    def build_generator(self) -> ResNetGenerator:
        return ResNetGenerator(self.options, self._resolution, self.num_classes)

    def build_discriminator(self) -> ResNetDiscriminator:
        return ResNetDiscriminator(self.options, self._resolution, self.num_classes)


class ResNet32Options(ResNetOptions):
    """Options of resnet32."""

    _side: ClassVar[int] = 32
    width: int = Field(16, ge=1, le=1024, description=_WIDTH_HELP)


class ResNet64Options(ResNetOptions):
    """Options of resnet64."""

    _side: ClassVar[int] = 64
    width: int = Field(10, ge=1, le=1024, description=_WIDTH_HELP)


class ResNet128Options(ResNetOptions):
    """Options of resnet128."""

    _side: ClassVar[int] = 128
    width: int = Field(8, ge=1, le=1024, description=_WIDTH_HELP)


class ResNet32(_ResNetArchitecture):
    """Residual SNGAN/BigGAN at 32x32 (Miyato 2018; Brock 2019), spectral-norm D, opt. attention.

    The self-attention block (``attention``) is SAGAN's (Zhang et al. 2019). Class-conditional
    with ``--conditional``: conditional batch norm in G, a projection discriminator (Miyato &
    Koyama 2018).
    """

    name = "resnet32"
    _resolution = 32
    Options = ResNet32Options


class ResNet64(_ResNetArchitecture):
    """Residual SNGAN/BigGAN at 64x64 (Miyato 2018; Brock 2019), spectral-norm D, opt. attention.

    The self-attention block (``attention``) is SAGAN's (Zhang et al. 2019). Class-conditional
    with ``--conditional``: conditional batch norm in G, a projection discriminator (Miyato &
    Koyama 2018).
    """

    name = "resnet64"
    _resolution = 64
    Options = ResNet64Options


class ResNet128(_ResNetArchitecture):
    """Residual SNGAN/BigGAN at 128x128 (Miyato 2018; Brock 2019), spectral-norm D, opt. attention.

    The self-attention block (``attention``) is SAGAN's (Zhang et al. 2019). Class-conditional
    with ``--conditional``: conditional batch norm in G, a projection discriminator (Miyato &
    Koyama 2018).
    """

    name = "resnet128"
    _resolution = 128
    Options = ResNet128Options


@gan_zoo.hookimpl
def register_architectures(register):
    for cls in (ResNet32, ResNet64, ResNet128):
        register(cls)
