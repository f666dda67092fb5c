"""resnet32/64/128: spectral norm in D, where attention goes, option errors, shapes and ranges,
bf16 autocast and R1's double backward through attention, the class-conditional variant
(conditional BN in G, projection D) and its unchanged unconditional parameters. Tiny widths: a
few seconds in all."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner
from gan_zoo_plugins.resnet import SelfAttention, UpBlock
from torch import nn
from torch.nn.utils import parametrize

from gan_zoo import ClassBatchNorm, ClassProjection, api
from gan_zoo.cli import cli
from gan_zoo.errors import UsageError
from gan_zoo.training.assembly import build

from ..reliability.helpers import labelled_data

TINY = {"width": 4, "d_width": 4, "latent_dim": 8}


@pytest.fixture(autouse=True)
def _one_thread():
    """These tensors are tiny: a second thread only adds synchronization, which on a busy
    shared machine made the file 5x slower. Restored after each test."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _pair(res: int, num_classes: int = 0, **options):
    arch = build("arch", f"resnet{res}", {**TINY, **options})
    arch.num_classes = num_classes  # what the engine does for a --conditional run
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


# ------------------------------------------------------------------- class-conditional


def test_conditional_modules_take_labels_and_the_label_changes_the_outputs():
    G, D = _pair(32, num_classes=3, attention=8)
    assert (G.num_classes, D.num_classes) == (3, 3)
    # Every batch norm inside the up-blocks is per class; G's last one stays shared.
    ups = [b for b in G.blocks if isinstance(b, UpBlock)]
    assert len(ups) == 3 and all(isinstance(b.bn1, ClassBatchNorm)
                                 and isinstance(b.bn2, ClassBatchNorm) for b in ups)
    assert type(G.bn) is nn.BatchNorm2d
    # D's projection is on its last features' channels, spectrally normalized as all of D.
    assert isinstance(D.projection, ClassProjection) and _spectral(D.projection.embed)
    assert D.projection.embed.weight.shape == (3, D.logit.weight.shape[1])
    with torch.no_grad():  # fresh per-class gains are all 1: make the classes differ
        for b in ups:
            b.bn2.gain.weight.normal_(1.0, 0.3)
            b.bn2.bias.weight.normal_(0.0, 0.3)
    z = G.sample_latent(2, generator=torch.Generator().manual_seed(0))
    y0, y2 = torch.tensor([0, 0]), torch.tensor([2, 2])
    for mode in (True, False):
        G.train(mode)
        D.train(mode)
        with torch.no_grad():
            x0, x2 = G(z, y=y0), G(z, y=y2)
            l0, l2 = D(x0, y=y0), D(x0, y=y2)
        assert x0.shape == (2, 3, 32, 32) and x0.min() >= -1 and x0.max() <= 1
        assert not torch.allclose(x0, x2)  # the class changes the image
        assert l0.shape == (2,) and torch.isfinite(l0).all()
        assert not torch.allclose(l0, l2)  # ... and D's logit
    # The projection term is exactly what separates the two logits.
    with torch.no_grad():
        h = nn.functional.relu(D.blocks(x0)).sum((2, 3))
        assert torch.allclose(l0 - l2, D.projection(h, y0) - D.projection(h, y2), atol=1e-5)
    with pytest.raises(ValueError, match="without labels"):
        G(z)
    with pytest.raises(ValueError, match="without labels"):
        D(x0)
    G_plain, D_plain = _pair(32, attention=8)
    with pytest.raises(ValueError, match="with labels"):
        G_plain(z, y=y0)
    with pytest.raises(ValueError, match="with labels"):
        D_plain(x0, y=y0)


def _bn_keys(prefix: str) -> list[str]:
    return [f"{prefix}.{k}" for k in ("weight", "bias", "running_mean", "running_var",
                                      "num_batches_tracked")]


def _linear_keys(prefix: str, sn: bool) -> list[str]:
    if not sn:
        return [f"{prefix}.weight", f"{prefix}.bias"]
    return [f"{prefix}.bias", *(f"{prefix}.parametrizations.weight.{k}"
                                for k in ("original", "0._u", "0._v"))]


def test_unconditional_modules_keep_their_parameters():
    """num_classes 0 builds the modules that existing checkpoints hold: no new key, none
    renamed, the same shapes."""
    G, D = _pair(32, attention=8)
    assert G.num_classes == D.num_classes == 0 and D.projection is None
    expected_g = [*_linear_keys("dense", False)]
    for b in ("blocks.0", "blocks.2", "blocks.3"):  # blocks.1: the attention at side 8
        expected_g += [*_bn_keys(f"{b}.bn1"), *_bn_keys(f"{b}.bn2"),
                       *_linear_keys(f"{b}.conv1", False), *_linear_keys(f"{b}.conv2", False),
                       *_linear_keys(f"{b}.shortcut", False)]
    expected_g += [f"blocks.1.{k}.weight" for k in ("query", "key", "value", "out")]
    expected_g += ["blocks.1.gain", *_bn_keys("bn"), *_linear_keys("to_rgb", False)]
    assert sorted(G.state_dict()) == sorted(expected_g)
    assert not any(isinstance(m, ClassBatchNorm | ClassProjection)
                   for net in (G, D) for m in net.modules())
    assert G.blocks[0].bn1.weight.shape == (32,) and G.bn.running_mean.shape == (4,)
    # D: the conditional D has the same tensors plus the projection, nothing else.
    _, D_cond = _pair(32, num_classes=3, attention=8)
    plain, cond = D.state_dict(), D_cond.state_dict()
    assert {k for k in cond if not k.startswith("projection.")} == set(plain)
    assert all(cond[k].shape == v.shape for k, v in plain.items())
    assert sorted(k for k in cond if k.startswith("projection.")) == [
        "projection.embed.parametrizations.weight.0._u",
        "projection.embed.parametrizations.weight.0._v",
        "projection.embed.parametrizations.weight.original"]
    assert not any("projection" in k or ".norm." in k for k in [*plain, *G.state_dict()])


def test_a_fresh_conditional_pair_is_the_unconditional_one_plus_the_projection():
    """The conditional modules extend the unconditional ones: with the conditional pair's
    weights copied into an unconditional pair (only the block BNs' affine weights, 1 and 0 at
    init, have no counterpart), G's images are the same and D's logits differ by exactly the
    projection term."""
    G, D = _pair(32, attention=8)
    Gc, Dc = _pair(32, num_classes=3, attention=8)
    for plain, cond in ((G, Gc), (D, Dc)):
        c = {k.replace(".norm.", "."): v for k, v in cond.state_dict().items()}
        missing = plain.load_state_dict({k: c[k] for k in plain.state_dict() if k in c},
                                        strict=False).missing_keys
        assert all(k.startswith("blocks.") and k.endswith((".bn1.weight", ".bn1.bias",
                                                           ".bn2.weight", ".bn2.bias"))
                   for k in missing)
        assert len(missing) == (12 if plain is G else 0)
    D.eval(), Dc.eval()  # no power-iteration step between the calls compared
    z, y = torch.randn(3, 8), torch.tensor([0, 1, 2])
    with torch.no_grad():
        x = G(z)  # train mode: batch statistics
        torch.testing.assert_close(Gc(z, y=y), x)
        h = nn.functional.relu(D.blocks(x)).sum((2, 3))
        torch.testing.assert_close(Dc(x, y=y), D(x) + Dc.projection(h, y))


def test_a_conditional_run_with_attention_trains_and_samples_by_class(tmp_path):
    config = {"arch": "resnet32", "conditional": True, "batch_size": 6, "steps": 2, "seed": 2,
              "options": {"resnet32": {**TINY, "attention": 8}}, "ema_decay": 0.9,
              "checkpoint_every": 100, "sample_every": 1000}
    result = api.train(config, out=tmp_path / "r", data=labelled_data(12))
    trainer = result.trainer
    assert trainer.G.num_classes == trainer.D.num_classes == 3
    assert any(isinstance(m, SelfAttention) for m in trainer.G.modules())
    assert any(isinstance(m, SelfAttention) for m in trainer.D.modules())
    G, _ = api.load_generator(tmp_path / "r")
    assert G.num_classes == 3 and G.class_names == ("a", "b", "c")
    z = torch.randn(2, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = G(z, y=torch.tensor([0, 0])), G(z, y=torch.tensor([2, 2]))
    assert a.shape == (2, 3, 32, 32) and torch.isfinite(a).all()
    assert not torch.equal(a, b)  # two steps already made the classes' gains differ
    images = api.sample(G, 3, classes=["a", "c", "b"])
    assert images.shape == (3, 3, 32, 32) and images.abs().max() <= 1
