"""The bf16 CPU fast path of 4x4 stride-2 convolutions (gan_zoo.util.fastconv): the same
outputs and gradients as the ordinary convolution up to bf16 rounding, taken only where it
applies, exact under double backward (R1)."""

from __future__ import annotations

import sys

import pytest
import torch
from torch import Tensor, nn

from gan_zoo import FastConv2d as _Conv2d
from gan_zoo import FastConvTranspose2d as _ConvTranspose2d
from gan_zoo.training.assembly import build
from gan_zoo.util import fastconv

CL = torch.channels_last


@pytest.fixture(autouse=True)
def _narrow_layers_take_the_fast_path(monkeypatch):
    """Small test layers go through the fast path (real ones need MIN_CHANNELS)."""
    monkeypatch.setattr(fastconv, "MIN_CHANNELS", 1)


def test_layers_narrower_than_min_channels_take_the_plain_path(monkeypatch):
    monkeypatch.setattr(fastconv, "MIN_CHANNELS", 16)
    x = torch.randn(2, 8, 8, 8).to(torch.bfloat16, memory_format=CL)
    narrow, wide = _Conv2d(8, 16, 4, 2, 1).to(torch.bfloat16), _Conv2d(16, 16, 4, 2, 1).to(torch.bfloat16)
    assert fastconv.conv2d(narrow, x) is None
    assert fastconv.conv2d(wide, torch.randn(2, 16, 8, 8).to(torch.bfloat16, memory_format=CL)) is not None


def _run(module: nn.Module, x: Tensor, fast: bool, autocast: bool):
    """Output and gradients (input, weight, bias) in float32, for one fixed output gradient."""
    module.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        y = module(x) if fast else type(module).__mro__[1].forward(module, x)
    g = torch.randn(y.shape, generator=torch.Generator().manual_seed(1)).to(memory_format=CL)
    y.float().backward(g)
    bias = None if module.bias is None else module.bias.grad
    return y, [y.float(), x.grad.float(), module.weight.grad, bias]


def _fast(y: Tensor) -> bool:
    return type(y.grad_fn).__name__ in ("_ConvBackward", "_ConvTransposeBackward")


def _rel(a: Tensor, b: Tensor) -> float:
    a, b = a.detach().float(), b.detach().float()
    return float((a - b).norm() / b.norm())


CASES = [  # module, input side: both products of each kind through matmuls, and only one
    (lambda: _Conv2d(64, 96, 4, 2, 1, bias=False), 8),
    (lambda: _Conv2d(32, 48, 4, 2, 1, bias=True), 16),
    (lambda: _ConvTranspose2d(96, 64, 4, 2, 1, bias=False), 4),
    (lambda: _ConvTranspose2d(48, 32, 4, 2, 1, bias=True), 8),
]


@pytest.mark.parametrize(("make", "side"), CASES)
def test_fast_path_matches_the_convolution_up_to_bf16_rounding(make, side):
    torch.manual_seed(0)
    module = make().to(memory_format=CL)
    x = torch.randn(4, module.in_channels, side, side).to(memory_format=CL)
    _, exact = _run(module, x, fast=False, autocast=False)  # float32 reference
    _, ordinary = _run(module, x, fast=False, autocast=True)
    y, fast = _run(module, x, fast=True, autocast=True)
    assert _fast(y)  # the fast path ran
    for name, ref, ord_, new in zip(("y", "grad x", "grad w", "grad b"), exact, ordinary, fast,
                                    strict=True):
        if ref is None:
            continue
        assert new.shape == ref.shape and new.stride() == ref.stride(), name
        # As close to float32 as oneDNN's own bf16 convolution is (bf16 has 8 mantissa bits).
        assert _rel(new, ref) < 1.5 * _rel(ord_, ref) + 1e-3, name
        assert _rel(new, ref) < 1e-2, name


def test_fast_path_only_for_bf16_on_small_maps():
    conv = _Conv2d(8, 8, 4, 2, 1).to(memory_format=CL)
    small = torch.randn(2, 8, 8, 8).to(memory_format=CL)
    assert conv(small).grad_fn.name() == "ConvolutionBackward0"  # float32: oneDNN as before
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert _fast(conv(small))
        big = torch.randn(2, 8, 64, 64).to(memory_format=CL)
        assert conv(big).grad_fn.name() == "ConvolutionBackward0"
        other = _Conv2d(8, 8, 3, 1, 1)
        assert other(small).grad_fn.name() == "ConvolutionBackward0"


@pytest.mark.parametrize(("make", "side"), CASES[:3:2])
def test_double_backward_is_the_ordinary_one(make, side):
    """R1 differentiates a gradient: the fast path's backward must itself be differentiable."""
    torch.manual_seed(0)
    module = make().to(memory_format=CL)
    x0 = torch.randn(2, module.in_channels, side, side).to(memory_format=CL)
    results = []
    for fast in (False, True):
        module.zero_grad(set_to_none=True)
        x = x0.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = module(x) if fast else type(module).__mro__[1].forward(module, x)
        (gx,) = torch.autograd.grad(y.float().square().sum(), x, create_graph=True)
        gx.float().square().sum().backward()
        results.append(module.weight.grad.clone())
    assert _rel(results[1], results[0]) < 1e-2
    assert results[1].abs().sum() > 0


def test_channels_last_discriminator_logit_is_the_flattened_one():
    arch = build("arch", "conv32", {"width": 8})
    d = arch.build_discriminator().eval()
    x = torch.randn(3, 3, 32, 32)
    plain = d(x)  # contiguous: torch.flatten, as before
    d_cl = d.to(memory_format=CL)
    x_cl = x.to(memory_format=CL).requires_grad_()
    grads = []
    d_cl.features.register_forward_hook(lambda m, i, o: (o.register_hook(grads.append), o)[1])
    out = d_cl(x_cl)
    assert torch.allclose(out, plain, atol=1e-5, rtol=1e-5)
    out.sum().backward()
    assert x_cl.grad is not None and x_cl.grad.shape == x.shape
    # The gradient reaches the features in their own layout (flatten() sent it back NCHW,
    # which made every elementwise backward below it take a slow mixed-layout path).
    assert grads[0].is_contiguous(memory_format=CL) and not grads[0].is_contiguous()


def _plain_modules(monkeypatch) -> None:
    """Build conv architectures with torch's own convolution classes (the modules before the
    fast path existed), as a checkpoint written by an older gan-zoo holds."""
    conv_plugin = sys.modules[type(build("arch", "conv32", {})).__module__]  # as registered
    monkeypatch.setattr(conv_plugin, "FastConv2d", nn.Conv2d)
    monkeypatch.setattr(conv_plugin, "FastConvTranspose2d", nn.ConvTranspose2d)


@pytest.mark.parametrize("d_norm", ["batch", "spectral"])
def test_checkpoints_of_plain_and_fast_modules_load_both_ways(monkeypatch, d_norm):
    opts = {"width": 8, "d_norm": d_norm}
    fast_arch = build("arch", "conv32", opts)
    fast_g, fast_d = fast_arch.build_generator(), fast_arch.build_discriminator()
    with monkeypatch.context() as m:
        _plain_modules(m)
        plain_arch = build("arch", "conv32", opts)
        plain_g, plain_d = plain_arch.build_generator(), plain_arch.build_discriminator()
    assert isinstance(plain_d.features[0], nn.Conv2d) and not isinstance(
        plain_d.features[0], _Conv2d)
    for fast, plain in ((fast_g, plain_g), (fast_d, plain_d)):
        assert fast.state_dict().keys() == plain.state_dict().keys()
        plain.load_state_dict(fast.state_dict())  # new checkpoint, old code
        fast.load_state_dict(plain.state_dict())  # old checkpoint, new code
        z = fast_g.sample_latent(2) if fast is fast_g else torch.randn(2, 3, 32, 32)
        fast.eval(), plain.eval()
        assert torch.equal(fast(z), plain(z))  # float32: the very same computation


def test_whole_networks_agree_with_the_plain_path_in_bf16(monkeypatch):
    """conv64 at batch 8: G and D under bf16 autocast, channels-last (as the trainer runs them),
    fast path on and off: outputs and every parameter gradient agree up to bf16 rounding."""
    torch.manual_seed(0)
    arch = build("arch", "conv64", {"width": 16})
    g = arch.build_generator().to(memory_format=CL)
    d = arch.build_discriminator().to(memory_format=CL)
    z = g.sample_latent(8)
    results = []
    for sides in ((fastconv.FWD_MAX_SIDE, fastconv.WGRAD_MAX_SIDE), (0, 0)):
        monkeypatch.setattr(fastconv, "FWD_MAX_SIDE", sides[0])
        monkeypatch.setattr(fastconv, "WGRAD_MAX_SIDE", sides[1])
        g.zero_grad(set_to_none=True)
        d.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = d(g(z)).float()
        out.square().sum().backward()
        grads = [p.grad.clone() for p in (*g.parameters(), *d.parameters())]
        results.append((out.detach(), grads))
    (fast_out, fast_grads), (plain_out, plain_grads) = results
    assert _rel(fast_out, plain_out) < 2e-2
    for a, b in zip(fast_grads, plain_grads, strict=True):
        assert _rel(a, b) < 5e-2


def test_fast_output_takes_an_in_place_activation():
    """D's first block: convolution, then LeakyReLU(inplace=True) on its output."""
    block = nn.Sequential(_Conv2d(16, 32, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True))
    block = block.to(memory_format=CL)
    x = torch.randn(2, 16, 8, 8).to(memory_format=CL).requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = block(x)
    assert y.is_contiguous(memory_format=CL)
    y.float().sum().backward()
    assert x.grad is not None and block[0].weight.grad is not None
