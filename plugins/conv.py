"""The DCGAN family: conv32, conv64, conv128.

Defaults follow DCGAN (Radford et al. 2016): transposed 4x4 convolutions with batch norm in G,
strided 4x4 convolutions with LeakyReLU in D, N(0, 0.02) init. Options reproduce the seeds:

* face seed (32/64): ``g_block=transpose g_kernel=5 d_kernel=5 dropout=0.2``
* aircraft seed (128): ``latent_dim=64 g_block=upsample g_start=8 width=32 d_kernel=3
  d_end=8 d_extra_convs=1 g_norm=none`` -- dense 512x8x8, upsample+conv blocks halving
  filters down to 32, a 3-channel conv and tanh; D with 5 convs 32->512 filters.
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, ValidationInfo, field_validator
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

import gan_zoo
from gan_zoo import (
    Architecture,
    ClassBatchNorm,
    ClassProjection,
    Discriminator,
    FastConv2d,
    FastConvTranspose2d,
    Generator,
    Options,
    check_labels,
)

_WIDTH_HELP = ("channel multiplier: G's last feature map and D's first conv have this many "
               "channels; each scale doubles it (capped at max_channels)")


class ConvOptions(Options):
    latent_dim: int = Field(128, ge=1, le=4096, description="size of the latent vector z")
    width: int = Field(64, ge=4, le=1024, description=_WIDTH_HELP)
    max_channels: int = Field(512, ge=8, le=4096, description="cap on channels of any layer")
    g_block: Literal["transpose", "upsample"] = Field(
        "transpose", description="G upsampling: strided transposed conv (DCGAN, face seed) or "
        "nearest upsample + conv (aircraft seed; avoids checkerboard artifacts)",
    )
    g_start: int = Field(4, ge=2, description="side of G's first feature map after the dense layer")
    g_kernel: Literal[4, 5] = Field(4, description="kernel size of G's transposed convs (4 or 5)")
    g_norm: Literal["batch", "none"] = Field("batch", description="normalization in G blocks")
    g_activation: Literal["relu", "leaky_relu"] = Field(
        "relu", description="activation in G blocks")
    d_kernel: int = Field(4, ge=3, le=7, description="kernel size of D's strided convs")
    d_norm: Literal["batch", "none", "spectral"] = Field(
        "batch", description="normalization of D's conv layers (spectral = spectral norm on "
        "every D layer, no batch norm)",
    )
    d_end: int = Field(4, ge=1, description="side of D's last feature map before the dense logit")
    d_extra_convs: int = Field(
        0, ge=0, le=4, description="stride-1 convs after the strided ones (aircraft seed: 1)")
    d_condition: Literal["projection", "acgan", "both"] = Field(
        "projection", description="conditional runs: how D uses the class: a projection term "
        "(Miyato & Koyama 2018), an auxiliary classifier (ACGAN, Odena et al. 2017), or both")
    acgan_weight: float = Field(
        1.0, ge=0.0, le=100.0, description="conditional runs with d_condition acgan or both: "
        "weight of the classifier's cross-entropy (D's on real images, G's on its fakes)")
    dropout: float = Field(
        0.0, ge=0.0, lt=1.0, description="dropout after each D conv block (face seed model 6: 0.2)")
    init: Literal["dcgan", "default"] = Field(
        "dcgan", description="weight init: N(0, 0.02) as DCGAN, or PyTorch's default")


def _check_pow2(side: int, res: int, what: str) -> None:
    if side >= res or res % side or not math.log2(res // side).is_integer():
        raise ValueError(f"{what} must be {res} divided by a power of two, got {side}")


def _activation(kind: str) -> nn.Module:
    return nn.ReLU(inplace=True) if kind == "relu" else nn.LeakyReLU(0.2, inplace=True)


def _dcgan_init(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d) and m.affine:
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
        elif isinstance(m, ClassBatchNorm):
            nn.init.normal_(m.gain.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias.weight)


class ConvGenerator(Generator):
    """Dense layer to a g_start x g_start map, then upsampling blocks to the resolution.

    Conditional (num_classes > 0): every batch norm becomes a ClassBatchNorm; without batch
    norm (g_norm none), a learned class embedding is concatenated to z (Mirza & Osindero 2014).
    """

    def __init__(self, o: ConvOptions, resolution: int, num_classes: int = 0):
        super().__init__()
        self.latent_dim, self.resolution, self.channels = o.latent_dim, resolution, 3
        self.num_classes = num_classes
        n_up = int(math.log2(resolution // o.g_start))
        # Channels per scale, from the first map down to full resolution; the upsample variant
        # keeps `width` channels at full resolution and adds a 3-channel conv, the transposed
        # variant's last block produces the 3 channels itself (as DCGAN).
        top = n_up if o.g_block == "upsample" else n_up - 1
        chans = [min(o.width * 2 ** (top - i), o.max_channels) for i in range(top + 1)]
        self.start = (chans[0], o.g_start)
        norm = o.g_norm == "batch"
        embed = num_classes > 0 and not norm
        # Without batch norm, the class enters as an embedding the size of z, next to it.
        self.embed = nn.Embedding(num_classes, o.latent_dim) if embed else None
        self.dense = nn.Linear(o.latent_dim * (2 if embed else 1), chans[0] * o.g_start**2,
                               bias=not norm)

        def batch_norm(c: int, dims: int = 2) -> nn.Module:
            if num_classes:
                return ClassBatchNorm(c, num_classes, dims)
            return nn.BatchNorm2d(c) if dims == 2 else nn.BatchNorm1d(c)

        self.dense_norm = batch_norm(chans[0] * o.g_start**2, 1) if norm else nn.Identity()
        self.dense_act = _activation(o.g_activation)
        layers: list[nn.Module] = []
        pad = (o.g_kernel - 1) // 2
        for i in range(n_up):
            c_in = chans[i]
            last = o.g_block == "transpose" and i == n_up - 1
            c_out = 3 if last else chans[i + 1]
            if o.g_block == "transpose":
                # Output side = 2 * input side for kernel 4 (pad 1) and kernel 5 (pad 2, out_pad 1).
                layers.append(FastConvTranspose2d(
                    c_in, c_out, o.g_kernel, 2, pad, output_padding=o.g_kernel % 2,
                    bias=last or not norm))
            else:
                layers += [nn.Upsample(scale_factor=2, mode="nearest"),
                           nn.Conv2d(c_in, c_out, 3, 1, 1, bias=not norm)]
            if not last:
                if norm:
                    layers.append(batch_norm(c_out))
                layers.append(_activation(o.g_activation))
        if o.g_block == "upsample":
            layers.append(nn.Conv2d(chans[-1], 3, 3, 1, 1))
        layers.append(nn.Tanh())
        self.blocks = nn.Sequential(*layers)
        if o.init == "dcgan":
            _dcgan_init(self)

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        check_labels(self, y)
        if y is None:
            h = self.dense_act(self.dense_norm(self.dense(z)))
            return self.blocks(h.view(z.shape[0], self.start[0], self.start[1], self.start[1]))
        if self.embed is not None:
            z = torch.cat([z, self.embed(y).to(z.dtype)], 1)
        h = self.dense(z)
        h = self.dense_norm(h, y) if isinstance(self.dense_norm, ClassBatchNorm) else h
        h = self.dense_act(h).view(z.shape[0], self.start[0], self.start[1], self.start[1])
        for layer in self.blocks:
            h = layer(h, y) if isinstance(layer, ClassBatchNorm) else layer(h)
        return h


class ConvDiscriminator(Discriminator):
    """Strided convs halving the side down to d_end, optional stride-1 convs, a dense logit.

    Conditional (num_classes > 0), by d_condition: a projection discriminator (Miyato & Koyama
    2018): the logit gains <embed(y), sum of the last features over space>, one learned vector
    per class (spectrally normalized with d_norm spectral, as in SNGAN-projection); and/or an
    ACGAN classifier head (Odena et al. 2017) on the same features, trained on real images,
    whose cross-entropy on G's fakes joins G's loss."""

    def __init__(self, o: ConvOptions, resolution: int, num_classes: int = 0):
        super().__init__()
        self.resolution, self.channels = resolution, 3
        self.num_classes = num_classes
        n_down = int(math.log2(resolution // o.d_end))
        n_convs = n_down + o.d_extra_convs
        chans = [min(o.width * 2**i, o.max_channels) for i in range(n_convs)]
        sn = spectral_norm if o.d_norm == "spectral" else (lambda m: m)
        layers: list[nn.Module] = []
        c_in = 3
        for i, c_out in enumerate(chans):
            stride = 2 if i < n_down else 1
            # Batch norm on every block but the first, as DCGAN.
            bn = o.d_norm == "batch" and i > 0
            layers.append(sn(FastConv2d(c_in, c_out, o.d_kernel, stride, (o.d_kernel - 1) // 2,
                                       bias=not bn)))
            if bn:
                layers.append(nn.BatchNorm2d(c_out))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            if o.dropout > 0:
                layers.append(nn.Dropout(o.dropout))
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.logit = sn(nn.Linear(c_in * o.d_end**2, 1))
        self.projection = self.classifier = None
        self.acgan_weight = o.acgan_weight
        if num_classes and o.d_condition in ("projection", "both"):
            self.projection = ClassProjection(num_classes, c_in, sn)
        if num_classes and o.d_condition in ("acgan", "both"):
            # ACGAN: a class head on the pooled features; D learns the classes of real images
            # (aux_losses), G is pushed toward fakes D classifies as asked (g_aux_losses). D does
            # not learn from the fakes' classes: that rewards D for spotting G's class errors
            # instead of teaching it the classes (the reals-only variant of later work).
            self.classifier = sn(nn.Linear(c_in, num_classes))
            self.aux_losses, self.g_aux_losses = ("cls_real",), ("cls_fake",)
        if o.init == "dcgan":
            _dcgan_init(self)

    def forward(self, x: Tensor, y: Tensor | None = None, aux: int | None = None,
                g_aux: int | None = None) -> Tensor | tuple[Tensor, dict[str, Tensor]]:
        check_labels(self, y)
        h = self.features(x)
        out = self._logit(h)
        if y is None:
            return out
        pooled = h.float().sum((2, 3)) if h.dim() == 4 else h.float()
        if self.projection is not None:
            out = out + self.projection(pooled, y).to(out.dtype)
        if self.classifier is None or (aux is None and g_aux is None):
            return out
        # The classifier reads the mean over space (the sum's scale grows with d_end).
        mean = pooled / (h.shape[2] * h.shape[3] if h.dim() == 4 else 1)
        part = slice(0, aux) if aux is not None else slice(g_aux, None)
        loss = F.cross_entropy(self.classifier(mean[part]).float(), y[part])
        return out, {("cls_real" if aux is not None else "cls_fake"): loss * self.acgan_weight}

    def _logit(self, h: Tensor) -> Tensor:
        if h.dim() == 4 and not h.is_contiguous() and h.is_contiguous(
                memory_format=torch.channels_last):
            # Channels-last: flatten in (h, w, c) memory order (a view; flatten() would copy to
            # (c, h, w) and send its gradient back in the other layout) with the logit's weight
            # columns put in the same order; the same sum.
            n, c, s1, s2 = h.shape
            w = self.logit.weight.view(1, c, s1, s2).permute(0, 2, 3, 1).reshape(1, -1)
            return F.linear(h.permute(0, 2, 3, 1).reshape(n, -1), w, self.logit.bias).squeeze(1)
        return self.logit(torch.flatten(h, 1)).squeeze(1)


class _ConvArchitecture(Architecture):
    """DCGAN-family architecture (set ``_resolution`` in subclasses)."""

    _resolution: ClassVar[int] = 0
    Options = ConvOptions
    contract_options: ClassVar[dict] = {"width": 8, "latent_dim": 16}  # fast contract tests

    conditional: ClassVar[bool] = True  # class-conditional BN in G, projection in D

    @property
    def resolution(self) -> int:
        return self._resolution

    def build_generator(self) -> ConvGenerator:
        return ConvGenerator(self.options, self._resolution, self.num_classes)

    def build_discriminator(self) -> ConvDiscriminator:
        return ConvDiscriminator(self.options, self._resolution, self.num_classes)


# Default width per resolution: the first feature map has 256 channels at 32 and 64 pixels,
# which trains in minutes on a laptop CPU; pass -o convN.width=64 for the DCGAN paper's size.
DEFAULT_WIDTH = {32: 64, 64: 32, 128: 32}


class _SizedConvOptions(ConvOptions):
    """ConvOptions for one image side: g_start and d_end must divide it by a power of two."""

    _side: ClassVar[int] = 0

    @field_validator("g_start", "d_end")
    @classmethod
    def _sides(cls, value: int, info: ValidationInfo) -> int:
        _check_pow2(value, cls._side, info.field_name or "side")
        return value


class Conv32Options(_SizedConvOptions):
    """Options of conv32."""

    _side: ClassVar[int] = 32
    width: int = Field(DEFAULT_WIDTH[32], ge=4, le=1024, description=_WIDTH_HELP)


class Conv64Options(_SizedConvOptions):
    """Options of conv64."""

    _side: ClassVar[int] = 64
    width: int = Field(DEFAULT_WIDTH[64], ge=4, le=1024, description=_WIDTH_HELP)


class Conv128Options(_SizedConvOptions):
    """Options of conv128."""

    _side: ClassVar[int] = 128
    width: int = Field(DEFAULT_WIDTH[128], ge=4, le=1024, description=_WIDTH_HELP)


class Conv32(_ConvArchitecture):
    """DCGAN-family GAN at 32x32 (transposed-conv G, strided-conv D)."""

    name = "conv32"
    _resolution = 32
    Options = Conv32Options


class Conv64(_ConvArchitecture):
    """DCGAN-family GAN at 64x64 (transposed-conv G, strided-conv D)."""

    name = "conv64"
    _resolution = 64
    Options = Conv64Options


class Conv128(_ConvArchitecture):
    """DCGAN-family GAN at 128x128 (transposed-conv G, strided-conv D)."""

    name = "conv128"
    _resolution = 128
    Options = Conv128Options


@gan_zoo.hookimpl
def register_architectures(register):
    for cls in (Conv32, Conv64, Conv128):
        register(cls)
