"""The StyleGAN2-lite family: stylegan2-32, stylegan2-64, stylegan2-128.

After Karras et al. 2020, "Analyzing and Improving the Image Quality of StyleGAN" (CVPR), sized
to train on a CPU. G: a mapping MLP (lr multiplier 0.01) from z to w, a learned constant 4x4
input, modulated/demodulated 3x3 convolutions driven by per-layer styles, per-layer noise with
learned strength, and the skip architecture (toRGB outputs upsampled and summed across
resolutions), a tanh on the sum so images lie in [-1, 1]. D: residual blocks, minibatch
standard deviation, one logit per image. Both use equalized learning rate. Training-mode extras:
style mixing regularization, a tracked ``w_avg`` (for truncation) and the lazy path-length
penalty through ``Generator.regularizer``; lazy R1 is the engine's (``r1_gamma``, ``r1_every``).

What "lite" changes, and why (docs/zoo.md has the whole list):

* 2 mapping layers and w of 128 (ADA's small-data configuration), widths for a 2-core CPU, and
  separate G and D widths (``width``, ``d_width``);
* resampling: G's upsampling layer convolves at the low resolution and then upsamples
  bilinearly (= zero insertion + the paper's [1,3,3,1] filter) instead of a stride-2
  transposed convolution + [1,3,3,1] blur; D average-pools 2x2 before its second 3x3
  convolution instead of blur + stride-2 convolution. On this CPU (oneDNN, bf16, fwd+bwd,
  a loaded machine) the transposed convolution ran 2-25x slower per FLOP and the stride-2 one
  on odd-sized blurred maps 1.1-8x slower; convolving before upsampling costs a quarter;
* modulation as scale-activations / shared-weight convolution / scale-outputs (the official
  code's "non-fused" path) rather than one grouped convolution with per-sample weights: at
  batch 64, 8-16 px and 64-128 channels it was 2-17x faster (fwd+bwd, fp32 and bf16: one GEMM
  over the batch instead of 64 small ones, and it stays channels-last), within +-25% at
  32-64 px; the arithmetic is the same (tests/plugins/test_stylegan2.py checks it);
* eval mode uses fixed noise maps (buffers, the official "const" noise): sampling is
  deterministic and never draws from torch's generator; training draws from it (resume is
  bit-exact).

Class-conditional (``--conditional``; the engine sets ``num_classes``), after StyleGAN2-ADA's
conditional model (Karras et al. 2020, "Training Generative Adversarial Networks with Limited
Data", NeurIPS): G's mapping network takes a learned class embedding of w_dim features, normalized
to unit second moment like z and concatenated with it, so every style (and both latents of a
style-mixed batch) carries the image's class; ``w_avg`` becomes one mean w per class, a
(num_classes, w_dim) buffer, so truncation pulls each image toward its own class's mean. The
path-length penalty runs on the labels of the step's G batch (see
StyleGAN2Generator.regularizer). D is a projection discriminator (Miyato & Koyama 2018, "cGANs
with Projection Discriminator", ICLR): the logit gains <embed(y), phi(x)> with phi(x) D's last
features (the output of its fully connected layer), where ADA projects a mapped class embedding
onto the same features. With num_classes 0 both networks are exactly the unconditional ones
(parameters, buffers, outputs and random draws), so earlier checkpoints load unchanged.

Cost: FLOPs per trained image, torch.utils.flop_counter over Trainer.train_step (batch 64,
bce, separate D update, R1 off), averaged over the 4 steps of one path-length interval:

=============  ================  ============  ======================  ==================
arch           width G / D       GFLOP/image   conv at default width   params G / D
=============  ================  ============  ======================  ==================
stylegan2-32   32 / 16           0.612         conv32 0.385 (1.59x)    1.39 M / 0.57 M
stylegan2-64   16 / 8            0.779         conv64 0.584 (1.33x)    1.41 M / 0.57 M
stylegan2-128  16 / 8            3.49          conv128 3.07 (1.14x)    2.69 M / 2.28 M
=============  ================  ============  ======================  ==================

Measured speed is in docs/zoo.md ("stylegan2 (lite)").
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import Tensor, nn

import gan_zoo
from gan_zoo import Architecture, ClassProjection, Discriminator, Generator, Options, check_labels

_SQRT2 = math.sqrt(2.0)

_WIDTH_HELP = ("channels of G's full-resolution layers; each halving of the side doubles "
               "them, up to max_channels")
_D_WIDTH_HELP = ("channels of D's full-resolution layers; each halving of the side doubles "
                 "them, up to max_channels")


class StyleGAN2Options(Options):
    """Options of the stylegan2 family (subclassed per resolution for the default widths)."""

    latent_dim: int = Field(128, ge=1, le=4096, description="size of the latent vector z")
    w_dim: int = Field(128, ge=1, le=4096,
                       description="size of the intermediate latent w that the styles come from")
    mapping_layers: int = Field(2, ge=1, le=8, description="fully connected layers of the "
                                "mapping network z -> w (the paper: 8; ADA's small-data setup: 2)")
    mapping_lr_mul: float = Field(0.01, gt=0, le=1, description="learning-rate multiplier of the "
                                  "mapping network (equalized lr; the paper's 0.01)")
    width: int = Field(16, ge=1, le=1024, description=_WIDTH_HELP)
    d_width: int = Field(16, ge=1, le=1024, description=_D_WIDTH_HELP)
    max_channels: int = Field(256, ge=1, le=4096, description="cap on the channels of any layer")
    style_mixing_prob: float = Field(
        0.9, ge=0, le=1, description="probability that a training batch takes its styles from "
        "two latents, switching at a random layer (style mixing regularization; 0 = off)")
    w_avg_beta: float = Field(0.995, ge=0, lt=1, description="decay of w_avg, the moving "
                              "average of w over training batches that truncation pulls toward")
    pl_weight: float = Field(2.0, ge=0, description="weight of the path-length penalty "
                             "(0 = off)")
    pl_every: int = Field(4, ge=1, le=1000, description="apply the path-length penalty every this "
                          "many G steps, multiplied by it (lazy regularization)")
    pl_decay: float = Field(0.01, gt=0, le=1, description="update rate of pl_mean, the running "
                            "mean of path lengths the penalty pulls toward")
    pl_batch_shrink: int = Field(2, ge=1, le=64, description="the path-length batch is the step's "
                                 "batch divided by this (at least one image)")
    mbstd_group: int = Field(4, ge=1, le=64, description="group size of D's minibatch standard "
                             "deviation layer (the largest divisor of the batch up to this)")

    @model_validator(mode="after")
    def _channels(self) -> StyleGAN2Options:
        if self.max_channels < max(self.width, self.d_width):
            raise ValueError(f"max_channels ({self.max_channels}) must be at least width "
                             f"({self.width}) and d_width ({self.d_width})")
        return self


# --------------------------------------------------------------------------- building blocks


# Every activation is a leaky ReLU times sqrt(2) (the gain that keeps the signal's scale under
# equalized lr). Since lrelu(g*z) = g*lrelu(z) for g > 0, the gain (and the residual blocks'
# 1/sqrt(2)) is folded into the small weights, biases and demodulation coefficients that produce
# z, and the activation runs in place: no extra pass over the feature maps for either.


class _EqLinear(nn.Module):
    """Linear layer with equalized learning rate: N(0, 1/lr_mul) weights scaled at run time by
    lr_mul/sqrt(fan_in), so Adam's step size is the same for every layer (Karras et al. 2018)."""

    def __init__(self, n_in: int, n_out: int, bias_init: float = 0.0, lr_mul: float = 1.0,
                 act: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_out, n_in) / lr_mul)
        self.bias = nn.Parameter(torch.full((n_out,), float(bias_init) / lr_mul))
        out = _SQRT2 if act else 1.0
        self.gain, self.bias_gain, self.act = lr_mul / math.sqrt(n_in) * out, lr_mul * out, act

    def forward(self, x: Tensor) -> Tensor:
        y = F.linear(x, self.weight * self.gain, self.bias * self.bias_gain)
        return F.leaky_relu(y, 0.2, inplace=True) if self.act else y


class _EqConv(nn.Module):
    """Convolution (stride 1, same padding) with equalized lr, times ``out_gain``."""

    def __init__(self, c_in: int, c_out: int, k: int, bias: bool = True, act: bool = True,
                 out_gain: float = 1.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(c_out, c_in, k, k))
        self.bias = nn.Parameter(torch.zeros(c_out)) if bias else None
        self.out_gain = out_gain * (_SQRT2 if act else 1.0)
        self.gain, self.act, self.k = self.out_gain / math.sqrt(c_in * k * k), act, k

    def forward(self, x: Tensor) -> Tensor:
        b = None if self.bias is None else self.bias * self.out_gain
        y = F.conv2d(x, self.weight * self.gain, b, padding=self.k // 2)
        return F.leaky_relu(y, 0.2, inplace=True) if self.act else y


class _ModConv(nn.Module):
    """A modulated convolution (StyleGAN2 Sec. 2.2): the style scales each input channel,
    demodulation divides each output channel by the norm its modulated weights would have, so
    the output's scale no longer depends on the style. Computed as x*s -> shared conv -> *d,
    equal to a convolution with per-sample weights w*s*d (see the module docstring).
    ``up`` upsamples the output 2x (bilinear; it commutes with *d), see StyleGAN2Generator."""

    def __init__(self, c_in: int, c_out: int, k: int, w_dim: int, demodulate: bool = True,
                 up: bool = False):
        super().__init__()
        self.affine = _EqLinear(w_dim, c_in, bias_init=1.0)  # styles start at 1
        self.weight = nn.Parameter(torch.randn(c_out, c_in, k, k))
        self.gain = 1 / math.sqrt(c_in * k * k)
        self.demodulate, self.up, self.k = demodulate, up, k

    def modulated(self, x: Tensor, w: Tensor) -> tuple[Tensor, Tensor | None]:
        """The convolution of the style-scaled input (upsampled with ``up``) and the
        demodulation coefficients (N, c_out, 1, 1) float32 to multiply it by (None without
        demodulation), left to the caller to fuse with what follows."""
        styles = self.affine(w).float() * self.gain  # (N, c_in)
        y = F.conv2d(x * styles.to(x.dtype)[:, :, None, None], self.weight, padding=self.k // 2)
        if self.up:
            y = F.interpolate(y, scale_factor=2, mode="bilinear", align_corners=False)
        if not self.demodulate:
            return y, None
        # The norm of each sample's modulated weights, from the (c_out, c_in) sums of squares:
        # float32 outside autocast, so bf16 rounding does not bias the normalization.
        with torch.autocast(x.device.type, enabled=False):
            sq = self.weight.float().square().sum((2, 3))
            d = torch.rsqrt(styles.square() @ sq.t() + 1e-8)  # (N, c_out)
        return y, d[:, :, None, None]

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        y, d = self.modulated(x, w)
        return y if d is None else y * d.to(y.dtype)


class _StyleLayer(nn.Module):
    """Modulated 3x3 conv, per-pixel noise with a learned strength, bias, activation."""

    def __init__(self, c_in: int, c_out: int, w_dim: int, side: int, up: bool = False):
        super().__init__()
        self.conv = _ModConv(c_in, c_out, 3, w_dim, up=up)
        self.noise_strength = nn.Parameter(torch.zeros(()))
        self.bias = nn.Parameter(torch.zeros(c_out))
        # Eval mode uses this fixed noise map ("const" noise in the official code): sampling is
        # deterministic and never draws from torch's generator, which training owns.
        self.register_buffer("noise_const", torch.randn(1, 1, side, side))

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        y, d = self.conv.modulated(x, w)
        if self.training:
            n, _, h, s = y.shape
            noise = torch.randn(n, 1, h, s, device=y.device, dtype=y.dtype)
        else:
            noise = self.noise_const.to(y.dtype)
        # sqrt(2) * lrelu(y*d + bias + noise*strength) in three passes over the map.
        dt = y.dtype
        y = torch.addcmul((self.bias * _SQRT2).to(dt)[:, None, None], y, (d * _SQRT2).to(dt))
        y = y.add_(noise * (self.noise_strength * _SQRT2).to(dt))
        return F.leaky_relu(y, 0.2, inplace=True)


class _ToRGB(nn.Module):
    """Modulated 1x1 conv to RGB, without demodulation (as in the paper)."""

    def __init__(self, c_in: int, w_dim: int):
        super().__init__()
        self.conv = _ModConv(c_in, 3, 1, w_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(3))

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        y = self.conv(x, w)
        return y + self.bias.to(y.dtype)[:, None, None]


def _channels(o: StyleGAN2Options, side: int, resolution: int, d: bool = False) -> int:
    return min((o.d_width if d else o.width) * resolution // side, o.max_channels)


# --------------------------------------------------------------------------- generator


class StyleGAN2Generator(Generator):
    """StyleGAN2 generator (Karras et al. 2020), skip architecture; see the module docstring.

    Conditional (num_classes > 0), as StyleGAN2-ADA's conditional G (Karras et al. 2020,
    "Training GANs with limited data"): a learned class embedding ``embed`` (num_classes, w_dim),
    normalized to unit second moment, is concatenated with the normalized z at the mapping
    network's input, and ``w_avg`` holds one mean w per class.
    """

    # `ganzoo sample --truncation PSI` calls forward(z, truncation_psi=PSI): w is pulled toward
    # the tracked w_avg (the truncation trick in w space; conditional: the class's w_avg), z is
    # the plain normal draw.
    truncation = "mapping"

    def __init__(self, o: StyleGAN2Options, resolution: int, num_classes: int = 0):
        super().__init__()
        self.o = o
        self.latent_dim, self.resolution, self.channels = o.latent_dim, resolution, 3
        self.num_classes = num_classes
        # The class enters next to z as w_dim more inputs (ADA's embed_features = w_dim).
        n_in = o.latent_dim + (o.w_dim if num_classes else 0)
        layers = [_EqLinear(n_in if i == 0 else o.w_dim, o.w_dim, lr_mul=o.mapping_lr_mul,
                            act=True) for i in range(o.mapping_layers)]
        self.mapping = nn.Sequential(*layers)
        c4 = _channels(o, 4, resolution)
        self.const = nn.Parameter(torch.randn(1, c4, 4, 4))
        self.convs = nn.ModuleList([_StyleLayer(c4, c4, o.w_dim, 4)])
        self.to_rgb = nn.ModuleList([_ToRGB(c4, o.w_dim)])
        side, c = 8, c4
        while side <= resolution:
            c_out = _channels(o, side, resolution)
            self.convs.append(_StyleLayer(c, c_out, o.w_dim, side, up=True))
            self.convs.append(_StyleLayer(c_out, c_out, o.w_dim, side))
            self.to_rgb.append(_ToRGB(c_out, o.w_dim))
            side, c = side * 2, c_out
        # One w per layer; a block's toRGB shares its w with the next block's first conv, as in
        # the official code: 2 per resolution.
        self.num_ws = 2 * len(self.to_rgb)
        # Conditional: one tracked mean w per class (truncation pulls toward the image's class).
        self.register_buffer("w_avg", torch.zeros((num_classes, o.w_dim) if num_classes
                                                  else (o.w_dim,)))
        self.register_buffer("pl_mean", torch.zeros(()))
        # nn.Embedding's N(0, 1) rows: ADA's one-hot fully connected embedding, equalized lr.
        self.embed = nn.Embedding(num_classes, o.w_dim) if num_classes else None

    def map(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        """z (and, conditional, the labels y) -> w through the mapping network: z normalized to
        unit second moment first, the class embedding too, then concatenated (ADA)."""
        z = z * torch.rsqrt(z.float().square().mean(1, keepdim=True) + 1e-8).to(z.dtype)
        if y is not None:
            assert self.embed is not None
            e = self.embed(y).float()
            e = e * torch.rsqrt(e.square().mean(1, keepdim=True) + 1e-8)
            z = torch.cat([z, e.to(z.dtype)], 1)
        return self.mapping(z)

    def _update_w_avg(self, w: Tensor, y: Tensor | None) -> None:
        """Move w_avg toward this batch's mean w; conditional: each class's row toward the mean
        of its images' w, classes absent from the batch unchanged."""
        with torch.no_grad():
            if y is None:
                self.w_avg.copy_(w.detach().float().mean(0).lerp(self.w_avg, self.o.w_avg_beta))
                return
            # Per-class sums as a one-hot matmul (not index_add_'s atomics: deterministic on
            # GPUs too), in float32 outside autocast.
            with torch.autocast(w.device.type, enabled=False):
                onehot = F.one_hot(y, self.num_classes).float()  # (N, C)
                counts = onehot.sum(0)[:, None]
                means = (onehot.t() @ w.detach().float()) / counts.clamp(min=1)
                moved = means.lerp(self.w_avg, self.o.w_avg_beta)
                self.w_avg.copy_(torch.where(counts > 0, moved, self.w_avg))

    def styles(self, z: Tensor, y: Tensor | None = None, update_w_avg: bool = False,
               truncation_psi: float = 1.0) -> Tensor:
        """The per-layer latents ws (N, num_ws, w_dim) for z (and, conditional, labels y):
        style-mixed in training mode (the second latent keeps the image's class), truncated
        toward w_avg (the class's row) when truncation_psi < 1."""
        w = self.map(z, y)
        if update_w_avg and self.training:
            self._update_w_avg(w, y)
        if truncation_psi != 1:
            w_avg = self.w_avg if y is None else self.w_avg[y]
            w = w_avg.to(w.dtype).lerp(w, truncation_psi)
        ws = w[:, None].expand(-1, self.num_ws, -1)
        if self.training and self.o.style_mixing_prob > 0:
            # One crossover layer per batch (as the official code), from torch's generator.
            cutoff = int(torch.randint(1, self.num_ws, ()))
            if float(torch.rand(())) < self.o.style_mixing_prob:
                w2 = self.map(torch.randn_like(z), y)
                ws = torch.cat([ws[:, :cutoff], w2[:, None].expand(-1, self.num_ws - cutoff, -1)],
                               1)
        return ws

    def synthesis(self, ws: Tensor) -> Tensor:
        x = self.const.expand(ws.shape[0], -1, -1, -1)
        x = self.convs[0](x, ws[:, 0])
        img = self.to_rgb[0](x, ws[:, 1])
        for b in range(1, len(self.to_rgb)):
            x = self.convs[2 * b - 1](x, ws[:, 2 * b - 1])
            x = self.convs[2 * b](x, ws[:, 2 * b])
            img = F.interpolate(img, scale_factor=2, mode="bilinear", align_corners=False)
            img = img + self.to_rgb[b](x, ws[:, 2 * b + 1])
        return torch.tanh(img)

    def forward(self, z: Tensor, y: Tensor | None = None, truncation_psi: float = 1.0) -> Tensor:
        check_labels(self, y)
        return self.synthesis(self.styles(z, y, update_w_avg=True, truncation_psi=truncation_psi))

    def _pl_labels(self, n: int, y: Tensor | None) -> Tensor | None:
        """Labels of the path-length batch: the first n of y (the G step's labels, which the
        engine passes), repeated if shorter; uniform random classes without them. None for an
        unconditional G."""
        if not self.num_classes:
            return None
        device = self.const.device
        if y is None or not len(y):
            return torch.randint(self.num_classes, (n,), device=device)
        return y.to(device)[torch.arange(n, device=device) % len(y)]

    def regularizer(self, step: int, batch_size: int, *, y: Tensor | None = None
                    ) -> dict[str, Tensor]:
        """Lazy path-length penalty (StyleGAN2 Sec. 3.2): the Jacobian J_w of G at random w, seen
        through a random image-space direction y, should have a constant length ||J_w^T y||;
        the penalty is its squared distance to the running mean ``pl_mean`` (a buffer, so
        resume is exact), weighted by pl_weight and multiplied by pl_every. It runs on the last
        step of each interval, (step + 1) % pl_every == 0: metrics.jsonl, written after every
        log_every-th step, then shows it as aux_pl (with the defaults, 10 and 4, every other
        line; on the first step of each interval, it never would).

        Conditional: the latents are mapped with the step's labels (``y``, which the engine
        passes), as ADA's path-length pass reuses the batch's conditioning; the one ws per
        image is then differentiated as before."""
        o = self.o
        if o.pl_weight <= 0 or (step + 1) % o.pl_every:
            return {}
        n = max(1, batch_size // o.pl_batch_shrink)
        z = self.sample_latent(n, device=self.const.device)
        ws = self.styles(z, self._pl_labels(n, y))
        if not ws.requires_grad:  # a G with frozen weights: still differentiate through ws
            ws = ws.detach().requires_grad_(True)
        img = self.synthesis(ws)
        h, s = img.shape[-2:]
        y = torch.randn_like(img) / math.sqrt(h * s)
        (grad,) = torch.autograd.grad((img * y).float().sum(), ws, create_graph=True)
        lengths = grad.float().square().sum(2).mean(1).sqrt()
        with torch.no_grad():
            self.pl_mean.copy_(self.pl_mean.lerp(lengths.mean(), o.pl_decay))
        penalty = (lengths - self.pl_mean).square().mean()
        return {"pl": penalty * (o.pl_weight * o.pl_every)}


# --------------------------------------------------------------------------- discriminator


def _minibatch_std(x: Tensor, group: int) -> Tensor:
    """ProGAN's minibatch standard deviation, (N,): the mean over features of the standard
    deviation within each image's group, so D can see a lack of variety. Groups are of the
    largest size up to `group` that divides N and take every (N/g)-th image."""
    n, c, h, s = x.shape
    g = min(group, n)
    while n % g:
        g -= 1
    y = x.float().reshape(g, n // g, c, h, s)
    y = (y - y.mean(0)).square().mean(0).add(1e-8).sqrt().mean((1, 2, 3))  # (n // g,)
    return y.repeat(g)


class _MbstdConv(_EqConv):
    """D's last 3x3 conv on its features plus the minibatch-std channel. That channel is one
    number per image over the whole map, so its part of the convolution is that number times
    the convolution of a map of ones with its weights: computed so, the main convolution keeps
    a channel count oneDNN runs fast (with c+1 channels its bf16 backward was 5-8x slower)."""

    def __init__(self, c: int, group: int):
        super().__init__(c + 1, c, 3)
        self.group = group

    def forward(self, x: Tensor) -> Tensor:
        w = self.weight * self.gain
        y = F.conv2d(x, w[:, :-1], self.bias * self.out_gain, padding=1)
        ones = torch.ones(1, 1, *x.shape[-2:], device=x.device, dtype=x.dtype)
        std = _minibatch_std(x, self.group).to(y.dtype)[:, None, None, None]
        y = y + std * F.conv2d(ones, w[:, -1:], padding=1).to(y.dtype)
        return F.leaky_relu(y, 0.2, inplace=True)


class _DBlock(nn.Module):
    """Residual block (StyleGAN2's residual D, Fig. 7): 3x3 conv, 2x2 average pool, 3x3 conv;
    shortcut 2x2 average pool + 1x1 conv; the sum scaled by 1/sqrt(2)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv0 = _EqConv(c_in, c_in, 3)
        self.conv1 = _EqConv(c_in, c_out, 3, out_gain=1 / _SQRT2)
        self.skip = _EqConv(c_in, c_out, 1, bias=False, act=False, out_gain=1 / _SQRT2)

    def forward(self, x: Tensor) -> Tensor:
        return self.skip(F.avg_pool2d(x, 2)) + self.conv1(F.avg_pool2d(self.conv0(x), 2))


class StyleGAN2Discriminator(Discriminator):
    """StyleGAN2 residual discriminator (Karras et al. 2020) with minibatch std.

    Conditional (num_classes > 0): a projection discriminator (Miyato & Koyama 2018): the logit
    gains <embed(y), phi(x)>, phi(x) the output of the fully connected layer (D's last
    features, what StyleGAN2-ADA projects its mapped class embedding onto), one learned vector
    per class (gan_zoo.ClassProjection; no spectral norm: the layers here use equalized lr)."""

    def __init__(self, o: StyleGAN2Options, resolution: int, num_classes: int = 0):
        super().__init__()
        self.resolution, self.channels = resolution, 3
        self.num_classes = num_classes
        self.from_rgb = _EqConv(3, _channels(o, resolution, resolution, d=True), 1)
        blocks, side = [], resolution
        while side > 4:
            blocks.append(_DBlock(_channels(o, side, resolution, d=True),
                                  _channels(o, side // 2, resolution, d=True)))
            side //= 2
        self.blocks = nn.Sequential(*blocks)
        c4 = _channels(o, 4, resolution, d=True)
        self.conv = _MbstdConv(c4, o.mbstd_group)
        self.fc = _EqLinear(c4 * 16, c4, act=True)
        self.out = _EqLinear(c4, 1)
        self.projection = ClassProjection(num_classes, c4) if num_classes else None

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        check_labels(self, y)
        h = self.blocks(self.from_rgb(x))
        h = self.conv(h)
        features = self.fc(h.flatten(1))
        out = self.out(features).squeeze(1)
        if self.projection is not None and y is not None:
            out = out + self.projection(features, y).to(out.dtype)
        return out


# --------------------------------------------------------------------------- architectures


class _StyleGAN2Architecture(Architecture):
    """StyleGAN2-lite architecture (set ``_resolution`` in subclasses)."""

    _resolution: ClassVar[int] = 0
    Options = StyleGAN2Options
    # Fast contract tests; pl_every=1 puts the path-length step (and pl_mean) in the resume check.
    contract_options: ClassVar[dict] = {"width": 4, "d_width": 4, "max_channels": 16,
                                        "latent_dim": 8, "w_dim": 8, "pl_every": 1}
    # Class-conditional runs: class embedding into the mapping network, per-class w_avg,
    # projection D (see the module docstring).
    conditional: ClassVar[bool] = True

    @property
    def resolution(self) -> int:
        return self._resolution

    def build_generator(self) -> StyleGAN2Generator:
        return StyleGAN2Generator(self.options, self._resolution, self.num_classes)

    def build_discriminator(self) -> StyleGAN2Discriminator:
        return StyleGAN2Discriminator(self.options, self._resolution, self.num_classes)


# Default widths per resolution (G, D): within 1-2x the FLOPs per trained image of convN at its
# default width (the table in the module docstring). Channel counts stay powers of two: oneDNN's
# bf16 convolutions ran 3-6x slower per FLOP with 12 or 24 channels than with 16 or 32.
DEFAULT_WIDTHS = {32: (32, 16), 64: (16, 8), 128: (16, 8)}


class StyleGAN2_32Options(StyleGAN2Options):
    """Options of stylegan2-32."""

    width: int = Field(DEFAULT_WIDTHS[32][0], ge=1, le=1024, description=_WIDTH_HELP)
    d_width: int = Field(DEFAULT_WIDTHS[32][1], ge=1, le=1024, description=_D_WIDTH_HELP)


class StyleGAN2_64Options(StyleGAN2Options):
    """Options of stylegan2-64."""

    width: int = Field(DEFAULT_WIDTHS[64][0], ge=1, le=1024, description=_WIDTH_HELP)
    d_width: int = Field(DEFAULT_WIDTHS[64][1], ge=1, le=1024, description=_D_WIDTH_HELP)


class StyleGAN2_128Options(StyleGAN2Options):
    """Options of stylegan2-128."""

    width: int = Field(DEFAULT_WIDTHS[128][0], ge=1, le=1024, description=_WIDTH_HELP)
    d_width: int = Field(DEFAULT_WIDTHS[128][1], ge=1, le=1024, description=_D_WIDTH_HELP)


class StyleGAN2_32(_StyleGAN2Architecture):
    """StyleGAN2-lite at 32x32 (Karras et al. 2020): mapping net, modulated convs, skip G, residual D."""

    name = "stylegan2-32"
    _resolution = 32
    Options = StyleGAN2_32Options


class StyleGAN2_64(_StyleGAN2Architecture):
    """StyleGAN2-lite at 64x64 (Karras et al. 2020): mapping net, modulated convs, skip G, residual D."""

    name = "stylegan2-64"
    _resolution = 64
    Options = StyleGAN2_64Options


class StyleGAN2_128(_StyleGAN2Architecture):
    """StyleGAN2-lite at 128x128 (Karras et al. 2020): mapping net, modulated convs, skip G, residual D."""

    name = "stylegan2-128"
    _resolution = 128
    Options = StyleGAN2_128Options


@gan_zoo.hookimpl
def register_architectures(register):
    for cls in (StyleGAN2_32, StyleGAN2_64, StyleGAN2_128):
        register(cls)
