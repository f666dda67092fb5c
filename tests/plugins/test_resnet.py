"""resnet32/64/128: spectral norm in D, where attention goes, option errors, shapes and ranges,
bf16 autocast and R1's double backward through attention. Tiny widths: a few seconds in all."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner
from gan_zoo_plugins.resnet import SelfAttention
from torch import nn
from torch.nn.utils import parametrize

from gan_zoo.cli import cli
from gan_zoo.errors import UsageError
from gan_zoo.training.assembly import build

TINY = {"width": 4, "d_width": 4, "latent_dim": 8}


@pytest.fixture(autouse=True)
def _one_thread():
    """These tensors are tiny: a second thread only adds synchronization, which on a busy
    shared machine made the file 5x slower. Restored after each test."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _pair(res: int, **options):
    arch = build("arch", f"resnet{res}", {**TINY, **options})
    return arch.build_generator(), arch.build_discriminator()


def _weight_layers(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if isinstance(m, nn.Conv2d | nn.Linear)]


def _spectral(m: nn.Module) -> bool:
    return parametrize.is_parametrized(m, "weight") and any(
        type(p).__name__ == "_SpectralNorm" for p in m.parametrizations.weight)


def test_spectral_norm_on_every_discriminator_weight_layer():
    G, D = _pair(32, attention=8)
    layers = _weight_layers(D)
    assert len(layers) > 10 and all(_spectral(m) for m in layers)
    # Its power-iteration state is in the state dict (resume is bit-exact).
    assert sum(k.endswith("parametrizations.weight.0._u") for k in D.state_dict()) == len(layers)
    assert not any(_spectral(m) for m in _weight_layers(G))  # G: only when asked
    G_sn, _ = _pair(32, g_spectral_norm=True)
    assert all(_spectral(m) for m in _weight_layers(G_sn))


def _attention_sides(module: nn.Module, x: torch.Tensor) -> list[int]:
    sides: list[int] = []
    hooks = [m.register_forward_pre_hook(lambda _, args: sides.append(args[0].shape[-1]))
             for m in module.modules() if isinstance(m, SelfAttention)]
    with torch.no_grad():
        module(x)
    for h in hooks:
        h.remove()
    return sides


@pytest.mark.parametrize(("res", "side"), [(32, 0), (32, 4), (32, 16), (64, 32)])
def test_attention_only_when_asked_and_at_its_side(res, side):
    G, D = _pair(res, attention=side)
    G.eval()
    z = G.sample_latent(1)
    expected = [side] if side else []
    assert _attention_sides(G, z) == expected
    assert _attention_sides(D, torch.zeros(1, 3, res, res)) == expected


@pytest.mark.parametrize("value", [5, 2, 32, 64])
def test_invalid_attention_side_is_one_clear_cli_error(tmp_path, value):
    result = CliRunner().invoke(cli, ["train", "--arch", "resnet32", "-o",
                                      f"resnet32.attention={value}", "--steps", "1",
                                      "--out", str(tmp_path / "run")])
    assert result.exit_code != 0
    assert "Traceback" not in result.output and not isinstance(result.exception, TypeError)
    assert "resnet32.attention" in result.output
    assert "4, 8, 16" in result.output  # the sides that exist at 32 px
    assert not (tmp_path / "run").exists()


def test_attention_side_checked_per_resolution():
    assert build("arch", "resnet128", {**TINY, "attention": 64}).options.attention == 64
    with pytest.raises(UsageError, match=r"resnet64\.attention.*4, 8, 16, 32"):
        build("arch", "resnet64", {"attention": 64})


@pytest.mark.parametrize("res", [32, 64, 128])
def test_shapes_and_range(res):
    G, D = _pair(res, width=2, d_width=2)
    assert (G.latent_dim, G.resolution, G.channels, D.resolution) == (8, res, 3, res)
    for mode in (True, False):
        G.train(mode)
        D.train(mode)
        with torch.no_grad():
            x = G(G.sample_latent(2) * 10)  # large latents still land in [-1, 1]
            logits = D(x)
        assert x.shape == (2, 3, res, res)
        assert torch.isfinite(x).all() and x.min() >= -1 and x.max() <= 1
        assert logits.shape == (2,) and torch.isfinite(logits).all()


def test_bf16_autocast_channels_last_forward_backward_is_finite():
    G, D = (m.to(memory_format=torch.channels_last) for m in _pair(32, attention=8))
    dtypes: list[torch.dtype] = []
    for m in (*G.modules(), *D.modules()):
        if isinstance(m, SelfAttention):
            m.register_forward_hook(lambda _, __, out: dtypes.append(out.dtype))
    real = torch.rand(3, 3, 32, 32).mul(2).sub(1).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fake = G(G.sample_latent(3))
        assert fake.is_contiguous(memory_format=torch.channels_last)
        # A loss that never saturates (hinge can give all-zero gradients at init).
        loss = D(fake).float().mean() - D(real).float().mean()
    loss.backward()
    assert torch.isfinite(loss)
    assert dtypes == [torch.bfloat16] * 3  # G once, D twice; attention keeps bf16 (no float32 promotion)
    for net in (G, D):
        grads = [p.grad for p in net.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads)
        assert any(g.abs().sum() > 0 for g in grads)


def test_r1_double_backward_through_attention():
    _, D = _pair(32, attention=16)
    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    (grad,) = torch.autograd.grad(D(x).sum(), x, create_graph=True)
    grad.pow(2).sum().backward()
    gains = [m.gain.grad for m in D.modules() if isinstance(m, SelfAttention)]
    assert len(gains) == 1 and gains[0] is not None and torch.isfinite(gains[0])
