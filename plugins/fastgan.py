"""The FastGAN family: fastgan32, fastgan64, fastgan128.

FastGAN (Liu et al. 2021, "Towards Faster and Stabilized GAN Training for High-fidelity
Few-shot Image Synthesis", ICLR) is built to learn from a few hundred to a few thousand images
with little compute:

* G: z -> 4x4 (a dense layer, the same as the paper's 4x4 transposed conv on a 1x1 map), then
  up-blocks (nearest upsample, 3x3 conv, batch norm, GLU); as in the paper, the blocks at 8,
  32 and 128 px have two convs with a noise input of learned strength each, those at 16 and
  64 px one conv. Skip-layer excitation (SLE) gates the two largest maps channel-wise with the
  4x4 and 8x8 maps: (4 -> R/2, 8 -> R) for R = 32, 64, 128; the paper's 128 px pairs are
  (4 -> 64, 8 -> 128), the same rule. A 3x3 conv and tanh give the image.
* D: a strided 4x4 stem to R/2, then DownBlockComp blocks (a strided 4x4 + 3x3 path averaged
  with an avg-pool + 1x1 path) down to 8x8, spectral norm on every conv; patch logits (a 1x1
  conv and a 4x4 valid conv, 5x5 patches) averaged to one logit per image.
* Self-supervised D: two small decoders reconstruct the real image from D's 8x8 map and one
  quadrant of the image from a randomly chosen 8x8 quadrant of D's 16x16 map. They run only
  on D's updates through the aux contract (``aux_losses = ("recon",)``, ``forward(x, aux=n)``);
  a plain ``forward(x)`` never computes them.
* Class-conditional (``--conditional``; ``num_classes`` set by the engine): every batch norm of G
  (the 4x4 map's and the up-blocks') becomes conditional batch norm, shared batch statistics
  with a gain and a bias per class (de Vries et al. 2017, "Modulating early visual processing
  by language"; as in SNGAN-projection); D adds the projection term of Miyato & Koyama 2018
  ("cGANs with Projection Discriminator"), <embed(y), D's 8x8 map summed over space>, to the
  logit, the embedding spectrally normalized like the rest of D. The decoders stay
  class-agnostic: they reconstruct the image whatever its class. With ``num_classes`` 0 the
  modules are exactly the unconditional ones (same parameters, outputs and random draws).

Differences from the paper, and why:

* Reconstruction loss: the paper uses LPIPS, whose VGG/AlexNet weights this project cannot
  download. The substitute is L1 (or MSE, ``recon_loss``) against the image area-downscaled to
  the decoders' output side (``recon_side``): at 16-32 px what the decoders can reproduce is
  the layout and colours, which a pixel loss measures directly; L1 blurs less than MSE.
* The paper's D also has a second branch on a 128 px copy of the image with its own decoder,
  and SLE modules inside D; at <= 128 px the main branch already sees the whole image at low
  resolution, so both are left out to save compute.
* Decoders output ``recon_side`` (16 at 32 px, 32 at 64 and 128 px) instead of 128 px, and the
  crop is chosen per image (the paper picks one quadrant per batch): same cost, less variance.
* In eval mode (sampling, evaluation) G's noise is drawn from a generator seeded by each
  latent's bits: the same z gives the same image in any batch, and sampling never consumes the
  global generator (training's random stream, saved in checkpoints, stays untouched). In
  training mode the noise and the crops come from torch's global generator, so resume is exact.
* Widths are sized for a 2-core CPU (the paper's 256-1024 px models have 10-100x more).

Cost, FLOPs per trained image of one ``Trainer.train_step`` (default options and training
config, batch 64, counted as ``benchmarks.worker.count_flops`` does), against the DCGAN family
at its default width: fastgan32 358 M (conv32 385 M, 0.93x), fastgan64 740 M (conv64 584 M,
1.27x), fastgan128 3.73 G (conv128 3.07 G, 1.22x); the decoders are 95 M of fastgan64's. Time
per image is higher than the FLOPs say (1.6-1.8x conv64's in bf16 on a Zen 4 CPU, one thread):
GLU, batch norm, noise and upsampling are elementwise work on maps with few channels, which
the FLOP count leaves out. Numbers and the recommended flags: docs/zoo.md, "fastgan".
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
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
    Generator,
    Options,
    check_labels,
)

_NGF_HELP = ("G width: channels of G's full-resolution map; each halving of the side doubles "
             "them (capped at max_channels)")
_NDF_HELP = ("D width: channels of D's first (R/2) map; each halving of the side doubles them "
             "(capped at max_channels)")
_RECON_SIDE_HELP = ("side in pixels of the decoders' reconstructions (a power of two from 16 to "
                    "half the resolution); the targets are the real image and its quadrant "
                    "area-downscaled to it")

# Draws a noise map (N, 1, h, w) like the given activation (device, dtype).
NoiseDraw = Callable[[int, int, Tensor], Tensor]


class FastGANOptions(Options):
    latent_dim: int = Field(128, ge=1, le=4096, description="size of the latent vector z")
    ngf: int = Field(16, ge=4, le=1024, description=_NGF_HELP)
    ndf: int = Field(16, ge=4, le=1024, description=_NDF_HELP)
    max_channels: int = Field(512, ge=8, le=4096, description="cap on channels of any layer")
    sle: bool = Field(True, description="skip-layer excitation in G: the 4x4 map gates the R/2 "
                      "map and the 8x8 map gates the R map, channel-wise")
    noise: bool = Field(True, description="noise inputs with a learned strength in G's "
                        "two-conv up-blocks (8, 32, 128 px)")
    d_norm: Literal["batch", "none"] = Field(
        "batch", description="batch norm after D's convs (as the paper; spectral norm is always "
        "on) or none")
    recon_weight: float = Field(
        1.0, ge=0.0, le=1000.0, description="weight of the decoders' reconstruction loss in D's "
        "loss (0 turns the self-supervision off: no decoders run)")
    recon_loss: Literal["l1", "mse"] = Field(
        "l1", description="reconstruction distance (the paper's LPIPS needs downloaded weights)")
    recon_side: int = Field(32, description=_RECON_SIDE_HELP)
    decoder_width: int = Field(
        16, ge=4, le=1024, description="channels of the decoders' 16x16 map, halved at each "
        "larger side (at least 4)")

    _side: ClassVar[int] = 0

    @field_validator("recon_side")
    @classmethod
    def _recon_side(cls, value: int, info: ValidationInfo) -> int:
        top = max(cls._side // 2, 16)
        if value < 16 or value > top or not math.log2(value).is_integer():
            choices = [str(2**k) for k in range(4, int(math.log2(top)) + 1)]
            listed = " or ".join([", ".join(choices[:-1]), choices[-1]] if len(choices) > 1
                                 else choices)
            raise ValueError(f"must be {listed}: a power of two from 16 to half the image side")
        return value


def _init(module: nn.Module) -> None:
    """N(0, 0.02) conv/linear weights and N(1, 0.02) batch-norm scales, as the paper's code; a
    conditional batch norm's per-class gains likewise (its own batch norm has no affine)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d) and m.affine:
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
        elif isinstance(m, ClassBatchNorm):
            nn.init.normal_(m.gain.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias.weight)


# --------------------------------------------------------------------------- generator


def glu(x: Tensor) -> Tensor:
    """GLU over channels: first half times the sigmoid of the second. On channels-last maps
    the two-op form ran 2-3x faster than F.glu's kernel (forward + backward, bf16 and fp32)."""
    if x.is_contiguous():
        return F.glu(x, dim=1)
    a, b = x.chunk(2, dim=1)
    return a * torch.sigmoid(b)


class GLU(nn.Module):
    """`glu` as a module, for nn.Sequential."""

    def forward(self, x: Tensor) -> Tensor:
        return glu(x)


def _g_norm(channels: int, num_classes: int) -> nn.Module:
    """G's batch norm: plain, or conditional (ClassBatchNorm, called ``norm(x, y)``)."""
    return ClassBatchNorm(channels, num_classes) if num_classes else nn.BatchNorm2d(channels)


def _class_norm(norm: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """A ClassBatchNorm's output in x's dtype: its fp32 gains would otherwise promote the bf16
    maps of an autocast run to fp32 (twice the memory for the following GLU)."""
    return norm(x, y).to(x.dtype)


class NoiseInjection(nn.Module):
    """Adds a per-pixel noise map scaled by a learned strength (zero at first, as the paper)."""

    def __init__(self) -> None:
        super().__init__()
        self.strength = nn.Parameter(torch.zeros(()))

    def forward(self, x: Tensor, draw: NoiseDraw) -> Tensor:
        return x + self.strength.to(x.dtype) * draw(x.shape[-2], x.shape[-1], x)


class UpBlock(nn.Module):
    """Nearest 2x upsample, then one or two (3x3 conv [+ noise] + batch norm + GLU) stages; with
    num_classes, conditional batch norm (``forward(x, draw, y)``)."""

    def __init__(self, c_in: int, c_out: int, convs: int, noise: bool, num_classes: int = 0):
        super().__init__()
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        self.noises = nn.ModuleList()
        for i in range(convs):
            self.convs.append(nn.Conv2d(c_in if i == 0 else c_out, 2 * c_out, 3, 1, 1, bias=False))
            self.norms.append(_g_norm(2 * c_out, num_classes))
            if noise:
                self.noises.append(NoiseInjection())

    def forward(self, x: Tensor, draw: NoiseDraw, y: Tensor | None = None) -> Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms, strict=True)):
            x = conv(x)
            if self.noises:
                x = self.noises[i](x, draw)
            x = glu(norm(x) if y is None else _class_norm(norm, x, y))
        return x


class SkipLayerExcitation(nn.Module):
    """SLE: a low-resolution map gives one sigmoid gate per channel of a high-resolution map.

    Pool the small map to 4x4, a 4x4 valid conv to 1x1, Swish, a 1x1 conv, sigmoid; the large
    map is multiplied by the gate. Long-range, cheap, and like a style modulation per channel.
    """

    def __init__(self, c_low: int, c_high: int):
        super().__init__()
        self.squeeze = nn.Conv2d(c_low, c_high, 4, 1, 0, bias=False)
        self.excite = nn.Conv2d(c_high, c_high, 1, 1, 0, bias=False)

    def gate(self, low: Tensor) -> Tensor:
        """(N, c_high, 1, 1) in (0, 1)."""
        h = F.adaptive_avg_pool2d(low, 4) if low.shape[-1] != 4 else low
        return torch.sigmoid(self.excite(F.silu(self.squeeze(h))))

    def forward(self, low: Tensor, high: Tensor) -> Tensor:
        return high * self.gate(low)


def _latent_seed(row: Tensor) -> int:
    digest = hashlib.blake2b(row.numpy().tobytes(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1  # manual_seed takes < 2**63


class FastGANGenerator(Generator):
    """Dense 4x4 map, up-blocks to the resolution, SLE on the two largest maps, conv + tanh.

    Conditional (num_classes > 0; ``G(z, y=labels)``): every batch norm is a ClassBatchNorm, a
    gain and a bias per class (de Vries et al. 2017; Miyato & Koyama 2018). FastGAN's G always
    has batch norm, so the class needs no embedding next to z."""

    def __init__(self, o: FastGANOptions, resolution: int, num_classes: int = 0):
        super().__init__()
        self.latent_dim, self.resolution, self.channels = o.latent_dim, resolution, 3
        self.num_classes = num_classes
        sides = [2**k for k in range(2, int(math.log2(resolution)) + 1)]  # 4, 8, ..., R
        ch = {s: min(o.ngf * resolution // s, o.max_channels) for s in sides}
        self.c4 = ch[4]
        self.dense = nn.Linear(o.latent_dim, 2 * ch[4] * 16, bias=False)
        self.dense_norm = _g_norm(2 * ch[4], num_classes)
        self.ups = nn.ModuleDict()
        for s in sides[1:]:
            two = int(math.log2(s)) % 2 == 1  # 8, 32, 128: the paper's UpBlockComp
            self.ups[str(s)] = UpBlock(ch[s // 2], ch[s], 2 if two else 1, o.noise and two,
                                       num_classes)
        # SLE pairs: (4 -> R/2) and (8 -> R), as (4 -> 64) and (8 -> 128) at the paper's 128 px.
        self.sle_pairs = [(4, resolution // 2), (8, resolution)] if o.sle else []
        self.sles = nn.ModuleDict(
            {str(high): SkipLayerExcitation(ch[low], ch[high]) for low, high in self.sle_pairs})
        self.to_rgb = nn.Conv2d(ch[resolution], 3, 3, 1, 1)
        _init(self)

    def _noise(self, z: Tensor) -> NoiseDraw:
        if self.training:  # torch's global generator: saved in checkpoints, resume is exact
            return lambda h, w, like: torch.randn(
                z.shape[0], 1, h, w, device=like.device, dtype=like.dtype)
        # Eval: each image's noise from a generator seeded by its latent's bits.
        gens = [torch.Generator().manual_seed(_latent_seed(r)) for r in z.detach().float().cpu()]
        return lambda h, w, like: torch.stack(
            [torch.randn(1, h, w, generator=g) for g in gens]).to(like.device, like.dtype)

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        check_labels(self, y)
        draw = self._noise(z)
        x = self.dense(z).view(z.shape[0], 2 * self.c4, 4, 4)
        feats = {4: glu(self.dense_norm(x) if y is None else _class_norm(self.dense_norm, x, y))}
        x = feats[4]
        for key, block in self.ups.items():
            side = int(key)
            x = block(x, draw) if y is None else block(x, draw, y)
            if key in self.sles:
                low = next(lo for lo, hi in self.sle_pairs if hi == side)
                x = self.sles[key](feats[low], x)
            feats[side] = x
        return torch.tanh(self.to_rgb(x))


# --------------------------------------------------------------------------- discriminator


def _sn(module: nn.Module) -> nn.Module:
    return spectral_norm(module)


def _norm(c: int, on: bool) -> nn.Module:
    return nn.BatchNorm2d(c) if on else nn.Identity()


class DownBlockComp(nn.Module):
    """Halves the side: (strided 4x4 conv, 3x3 conv) averaged with (2x2 avg pool, 1x1 conv)."""

    def __init__(self, c_in: int, c_out: int, norm: bool):
        super().__init__()
        self.main = nn.Sequential(
            _sn(FastConv2d(c_in, c_out, 4, 2, 1, bias=not norm)), _norm(c_out, norm),
            nn.LeakyReLU(0.2, inplace=True),
            _sn(nn.Conv2d(c_out, c_out, 3, 1, 1, bias=not norm)), _norm(c_out, norm),
            nn.LeakyReLU(0.2))
        self.direct = nn.Sequential(
            nn.AvgPool2d(2, 2), _sn(nn.Conv2d(c_in, c_out, 1, 1, 0, bias=not norm)),
            _norm(c_out, norm), nn.LeakyReLU(0.2))

    def forward(self, x: Tensor) -> Tensor:
        return (self.main(x) + self.direct(x)) / 2


class Decoder(nn.Module):
    """D's self-supervision: an 8x8 feature map -> an image of side `side` in [-1, 1]."""

    def __init__(self, c_in: int, width: int, side: int, norm: bool):
        super().__init__()
        layers: list[nn.Module] = []
        s, c = 8, c_in
        while s < side:
            s *= 2
            c_out = max(width * 16 // s, 4)
            layers += [nn.Upsample(scale_factor=2.0, mode="nearest"),
                       _sn(nn.Conv2d(c, 2 * c_out, 3, 1, 1, bias=not norm)), _norm(2 * c_out, norm),
                       GLU()]
            c = c_out
        layers += [_sn(nn.Conv2d(c, 3, 3, 1, 1)), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def _quadrants(x: Tensor, which: Tensor) -> Tensor:
    """Per image, one quadrant of x (N, C, H, W): 0 top-left, 1 top-right, 2 bottom-left,
    3 bottom-right."""
    h, w = x.shape[-2] // 2, x.shape[-1] // 2
    four = torch.stack([x[..., :h, :w], x[..., :h, w:], x[..., h:, :w], x[..., h:, w:]], 1)
    return four[torch.arange(x.shape[0], device=x.device), which.to(x.device)]


def _downscale(x: Tensor, side: int) -> Tensor:
    k = x.shape[-1] // side
    return F.avg_pool2d(x, k) if k > 1 else x


class FastGANDiscriminator(Discriminator):
    """Strided stem, DownBlockComp blocks to 8x8, averaged 5x5 patch logits; reconstruction
    decoders on real images as the auxiliary loss ``recon`` (``forward(x, aux=n)``).

    Conditional (num_classes > 0; ``D(x, y=labels)``, ``D(x, y=labels, aux=n)``): a projection
    discriminator (Miyato & Koyama 2018): the logit gains <embed(y), the 8x8 map the logit head
    reads, summed over space>, one spectrally normalized vector per class. The decoders do not
    see the class."""

    aux_losses: ClassVar[tuple[str, ...]] = ("recon",)

    def __init__(self, o: FastGANOptions, resolution: int, num_classes: int = 0):
        super().__init__()
        self.resolution, self.channels = resolution, 3
        self.num_classes = num_classes
        norm = o.d_norm == "batch"
        sides = [2**k for k in range(3, int(math.log2(resolution)))]  # 8, ..., R/2
        ch = {s: min(o.ndf * (resolution // 2) // s, o.max_channels) for s in sides}
        self.stem = nn.Sequential(_sn(FastConv2d(3, ch[resolution // 2], 4, 2, 1)),
                                  nn.LeakyReLU(0.2, inplace=True))
        self.downs = nn.ModuleList(
            DownBlockComp(ch[s], ch[s // 2], norm) for s in reversed(sides[1:]))
        self.head = nn.Sequential(
            _sn(nn.Conv2d(ch[8], ch[8], 1, 1, 0, bias=not norm)), _norm(ch[8], norm),
            nn.LeakyReLU(0.2, inplace=True), _sn(nn.Conv2d(ch[8], 1, 4, 1, 0)))
        self.recon_weight, self.recon_loss, self.recon_side = (
            o.recon_weight, o.recon_loss, o.recon_side)
        self.decode_whole = Decoder(ch[8], o.decoder_width, o.recon_side, norm)
        self.decode_part = Decoder(ch[16], o.decoder_width, o.recon_side, norm)
        _init(self)
        # Built after the init: the weights D shares with the unconditional one get the same
        # random draws for the same seed.
        self.projection = ClassProjection(num_classes, ch[8], _sn) if num_classes else None

    def features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """D's 16x16 and 8x8 maps."""
        h = self.stem(x)
        f16 = h
        for block in self.downs:
            h = block(h)
            if h.shape[-1] == 16:
                f16 = h
        return f16, h

    def _distance(self, rec: Tensor, target: Tensor) -> Tensor:
        diff = rec.float() - target.float()
        return diff.abs().mean() if self.recon_loss == "l1" else diff.pow(2).mean()

    def reconstruction(self, x: Tensor, f16: Tensor, f8: Tensor) -> Tensor:
        """The weighted reconstruction loss of the images x from their 16x16 and 8x8 maps."""
        # One quadrant per image, from torch's global generator (saved: resume is exact).
        which = torch.randint(0, 4, (x.shape[0],))
        whole = self._distance(self.decode_whole(f8), _downscale(x, self.recon_side))
        part = self._distance(self.decode_part(_quadrants(f16, which)),
                              _downscale(_quadrants(x, which), self.recon_side))
        return self.recon_weight * (whole + part)

    def forward(self, x: Tensor, y: Tensor | None = None, aux: int | None = None
                ) -> Tensor | tuple[Tensor, dict[str, Tensor]]:
        check_labels(self, y)
        f16, f8 = self.features(x)
        logits = self.head(f8).float().mean((1, 2, 3))
        if self.projection is not None and y is not None:
            logits = logits + self.projection(f8.float().sum((2, 3)), y)
        if aux is None:
            return logits
        if not 0 < aux <= x.shape[0]:
            raise ValueError(f"aux must be the number of real images, 1 to {x.shape[0]}, got {aux}")
        if self.recon_weight == 0:
            return logits, {"recon": logits.new_zeros(())}
        return logits, {"recon": self.reconstruction(x[:aux], f16[:aux], f8[:aux])}


# --------------------------------------------------------------------------- architectures


class _FastGANArchitecture(Architecture):
    """FastGAN-family architecture (set ``_resolution`` in subclasses)."""

    _resolution: ClassVar[int] = 0
    Options = FastGANOptions
    contract_options: ClassVar[dict] = {"ngf": 4, "ndf": 4, "latent_dim": 16, "decoder_width": 8,
                                         "max_channels": 16}

    conditional: ClassVar[bool] = True  # class-conditional BN in G, projection in D

    @property
    def resolution(self) -> int:
        return self._resolution

    def build_generator(self) -> FastGANGenerator:
        return FastGANGenerator(self.options, self._resolution, self.num_classes)

    def build_discriminator(self) -> FastGANDiscriminator:
        return FastGANDiscriminator(self.options, self._resolution, self.num_classes)


# Defaults per resolution, sized for a 2-core CPU (module docstring: the FLOPs per image).
DEFAULTS = {32: {"ngf": 16, "ndf": 32, "recon_side": 16},
            64: {"ngf": 8, "ndf": 24, "recon_side": 32},
            128: {"ngf": 8, "ndf": 24, "recon_side": 32}}


class FastGAN32Options(FastGANOptions):
    """Options of fastgan32."""

    _side: ClassVar[int] = 32
    ngf: int = Field(DEFAULTS[32]["ngf"], ge=4, le=1024, description=_NGF_HELP)
    ndf: int = Field(DEFAULTS[32]["ndf"], ge=4, le=1024, description=_NDF_HELP)
    recon_side: int = Field(DEFAULTS[32]["recon_side"], description=_RECON_SIDE_HELP)


class FastGAN64Options(FastGANOptions):
    """Options of fastgan64."""

    _side: ClassVar[int] = 64
    ngf: int = Field(DEFAULTS[64]["ngf"], ge=4, le=1024, description=_NGF_HELP)
    ndf: int = Field(DEFAULTS[64]["ndf"], ge=4, le=1024, description=_NDF_HELP)
    recon_side: int = Field(DEFAULTS[64]["recon_side"], description=_RECON_SIDE_HELP)


class FastGAN128Options(FastGANOptions):
    """Options of fastgan128."""

    _side: ClassVar[int] = 128
    ngf: int = Field(DEFAULTS[128]["ngf"], ge=4, le=1024, description=_NGF_HELP)
    ndf: int = Field(DEFAULTS[128]["ndf"], ge=4, le=1024, description=_NDF_HELP)
    recon_side: int = Field(DEFAULTS[128]["recon_side"], description=_RECON_SIDE_HELP)


class FastGAN32(_FastGANArchitecture):
    """FastGAN at 32x32: SLE generator, self-supervised D (Liu et al. 2021)."""

    name = "fastgan32"
    _resolution = 32
    Options = FastGAN32Options


class FastGAN64(_FastGANArchitecture):
    """FastGAN at 64x64: SLE generator, self-supervised D (Liu et al. 2021)."""

    name = "fastgan64"
    _resolution = 64
    Options = FastGAN64Options


class FastGAN128(_FastGANArchitecture):
    """FastGAN at 128x128: SLE generator, self-supervised D (Liu et al. 2021)."""

    name = "fastgan128"
    _resolution = 128
    Options = FastGAN128Options


@gan_zoo.hookimpl
def register_architectures(register):
    for cls in (FastGAN32, FastGAN64, FastGAN128):
        register(cls)
