"""stylegan2-32/64/128 (StyleGAN2-lite, Karras et al. 2020): demodulation, the lazy
path-length regularizer, style mixing, w_avg, the minibatch-std conv, bf16 and channels-last,
option errors through the CLI, the class-conditional variant (class embedding into the mapping
network, per-class w_avg, projection D; labels in style mixing and the path-length pass, a
bit-exact resume). Tiny widths: the whole file runs in seconds."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from gan_zoo_plugins.stylegan2 import _MbstdConv, _minibatch_std, _ModConv

from gan_zoo import api
from gan_zoo.cli import cli
from gan_zoo.data import ImageArray
from gan_zoo.training.assembly import build, build_components
from gan_zoo.training.config import make_config
from gan_zoo.training.trainer import Trainer

from ..reliability.helpers import assert_bit_identical, final_checkpoint, labelled_data, stop_at

TINY = {"width": 4, "d_width": 4, "max_channels": 16, "latent_dim": 8, "w_dim": 8}


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors gain nothing from a second thread, and on a shared 2-core machine every
    parallel region then waits for a descheduled partner: this file took 27 s instead of 8."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _pair(res: int = 32, num_classes: int = 0, **options):
    torch.manual_seed(0)
    arch = build("arch", f"stylegan2-{res}", {**TINY, **options})
    arch.num_classes = num_classes  # what the engine does in a conditional run
    return arch.build_generator(), arch.build_discriminator()


def test_demodulation_normalizes_output_scale():
    torch.manual_seed(0)
    conv = _ModConv(16, 16, 3, w_dim=8)
    nn_bias = conv.affine.bias
    with torch.no_grad():
        nn_bias.zero_()  # styles = A w: scaling w scales every style by the same factor
    x = torch.randn(4, 16, 12, 12)
    w = torch.randn(4, 8)
    y, y_big = conv(x, w), conv(x, w * 100)
    # Demodulated: the style's overall scale cancels, and unit-variance inputs give outputs
    # of unit variance (interior pixels, where the whole 3x3 kernel sees data).
    torch.testing.assert_close(y, y_big, rtol=1e-4, atol=1e-4)
    std = y[:, :, 1:-1, 1:-1].std().item()
    assert 0.85 < std < 1.15, std
    # Without demodulation the output scales with the styles.
    conv.demodulate = False
    ratio = conv(x, w * 100).std() / conv(x, w).std()
    assert ratio.item() == pytest.approx(100, rel=1e-3)


def test_modconv_equals_per_sample_weights():
    """x*s -> shared conv -> *d is the paper's convolution with per-sample weights w*s*d."""
    torch.manual_seed(1)
    conv = _ModConv(6, 5, 3, w_dim=8)
    x, w = torch.randn(3, 6, 7, 7), torch.randn(3, 8)
    s = conv.affine(w) * conv.gain  # (3, 6)
    weights = conv.weight[None] * s[:, None, :, None, None]  # (3, 5, 6, 3, 3)
    weights = weights * torch.rsqrt(weights.square().sum((2, 3, 4), keepdim=True) + 1e-8)
    ref = F.conv2d(x.reshape(1, 18, 7, 7), weights.reshape(15, 6, 3, 3), padding=1, groups=3)
    torch.testing.assert_close(conv(x, w), ref.reshape(3, 5, 7, 7), rtol=1e-4, atol=1e-5)


def test_regularizer_is_lazy_weighted_and_keeps_pl_mean_in_state():
    G, _ = _pair(pl_every=3, pl_weight=2.0)
    G.train()
    assert G.regularizer(0, 4) == {} and G.regularizer(3, 4) == {}  # the last of 3 steps only
    assert "pl_mean" in G.state_dict() and G.pl_mean.item() == 0
    terms = G.regularizer(5, 4)
    assert set(terms) == {"pl"}
    pl = terms["pl"]
    assert pl.dim() == 0 and math.isfinite(pl.item()) and pl.item() > 0
    assert G.pl_mean.item() > 0 and torch.equal(G.state_dict()["pl_mean"], G.pl_mean)
    pl.backward()  # the penalty trains G's synthesis weights
    assert G.convs[-1].conv.weight.grad is not None and G.convs[-1].conv.weight.grad.any()
    before = G.pl_mean.clone()
    G.regularizer(8, 4)
    assert not torch.equal(G.pl_mean, before)  # the running mean moves every regularized step
    G_off, _ = _pair(pl_weight=0.0)
    assert G_off.regularizer(0, 4) == {}


def test_style_mixing_only_in_training_mode():
    G, _ = _pair(style_mixing_prob=1.0)
    z = torch.randn(3, 8)
    G.eval()
    ws = G.styles(z)
    assert torch.equal(ws, ws[:, :1].expand_as(ws))
    G.train()
    ws = G.styles(z)
    assert not torch.equal(ws[:, 0], ws[:, -1])  # the last layer always comes from z2
    G_plain, _ = _pair(style_mixing_prob=0.0)
    G_plain.train()
    ws = G_plain.styles(z)
    assert torch.equal(ws, ws[:, :1].expand_as(ws))


def test_w_avg_tracks_training_batches_only_and_eval_is_deterministic():
    G, _ = _pair()
    z = torch.randn(4, 8)
    G.train()
    G(z)
    trained = G.w_avg.clone()
    assert trained.abs().sum() > 0
    assert G.regularizer(3, 4)  # the path-length pass leaves it alone
    assert torch.equal(G.w_avg, trained)
    G.eval()
    rng = torch.get_rng_state()
    a, b = G(z), G(z)
    assert torch.equal(G.w_avg, trained)
    # Eval mode uses the fixed noise buffers: same image for the same z, and torch's generator
    # (which training owns) is untouched.
    assert torch.equal(a, b) and torch.equal(torch.get_rng_state(), rng)
    # Truncation toward w_avg: psi = 0 gives every z the same image.
    t = G(torch.randn(2, 8), truncation_psi=0.0)
    torch.testing.assert_close(t[0], t[1])


def test_mbstd_conv_equals_conv_on_concatenated_channel():
    torch.manual_seed(2)
    conv = _MbstdConv(8, group=4)
    x = torch.randn(6, 8, 4, 4)  # 6 is not a multiple of 4: groups of 3
    std = _minibatch_std(x, 4)
    assert std.shape == (6,)  # image i is in group i % 2
    assert torch.equal(std[0::2], std[0].expand(3)) and torch.equal(std[1::2], std[1].expand(3))
    cat = torch.cat([x, std[:, None, None, None].expand(6, 1, 4, 4)], 1)
    with torch.no_grad():
        conv.bias.normal_()
    # Equalized lr: weights / sqrt(fan_in), fan_in = 9 channels x 9 taps; lrelu with gain sqrt 2.
    ref = F.leaky_relu(F.conv2d(cat, conv.weight / 9, conv.bias, padding=1), 0.2) * math.sqrt(2)
    torch.testing.assert_close(conv(x), ref, rtol=1e-4, atol=1e-5)


def test_bf16_channels_last_training_steps_stay_finite():
    """Two engine steps under bf16 autocast with channels-last, R1 in both, path length in the
    second."""
    torch.manual_seed(0)
    cfg = make_config({"arch": "stylegan2-32", "batch_size": 4, "steps": 2, "device": "cpu",
                       "precision": "bf16", "channels_last": True, "r1_gamma": 0.1,
                       "options": {"stylegan2-32": {**TINY, "pl_every": 2}}, "ema_decay": 0.9})
    images = torch.randint(0, 256, (8, 32, 32, 3), dtype=torch.uint8).numpy()
    tr = Trainer(cfg, build_components(cfg), ImageArray(images, "tiny"), None)
    first, second = tr.train_step(), tr.train_step()
    assert "aux_pl" not in first and "aux_pl" in second
    for stats in (first, second):
        assert all(math.isfinite(v) for v in stats.values()), stats
    for p in [*tr.G.parameters(), *tr.D.parameters()]:
        assert torch.isfinite(p).all()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        x = tr.G(tr.G.sample_latent(3))
    assert x.min() >= -1 and x.max() <= 1 and torch.isfinite(x).all()


@pytest.mark.parametrize(("option", "words"), [
    ("stylegan2-32.style_mixing_prob=1.5", "stylegan2-32.style_mixing_prob"),
    ("stylegan2-64.max_channels=8", "max_channels"),
    ("stylegan2-32.pl_evry=2", "pl_evry"),
])
def test_invalid_options_give_one_clear_message(tmp_path, option, words):
    arch = option.split(".")[0]
    result = CliRunner().invoke(cli, ["train", "--arch", arch, "-o", option, "--steps", "1",
                                      "--out", str(tmp_path / "run")])
    assert result.exit_code != 0
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)
    assert words in result.output, result.output


# --------------------------------------------------------------------------- class-conditional


def _labels(*values: int) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.long)


def test_the_class_changes_the_images_and_the_logits():
    G, D = _pair(num_classes=3)
    assert (G.num_classes, D.num_classes) == (3, 3)
    with torch.no_grad():
        D.projection.embed.weight.normal_()  # it starts small (std 0.02), not zero
    z = torch.randn(2, 8)
    for mode in (False, True):
        G.train(mode)
        D.train(mode)
        torch.manual_seed(1)
        with torch.no_grad():
            a = G(z, y=_labels(0, 0))
        torch.manual_seed(1)  # the same noise and style mixing draws: only the class differs
        with torch.no_grad():
            b = G(z, y=_labels(2, 2))
            assert a.shape == (2, 3, 32, 32) and not torch.allclose(a, b)
            assert not torch.allclose(D(a, y=_labels(0, 0)), D(a, y=_labels(2, 2)))
    with pytest.raises(ValueError, match="without labels"):
        G(z)
    with pytest.raises(ValueError, match="without labels"):
        D(a)
    G_plain, D_plain = _pair()
    with pytest.raises(ValueError, match="with labels"):
        G_plain(z, y=_labels(0, 1))
    with pytest.raises(ValueError, match="with labels"):
        D_plain(a, y=_labels(0, 1))


def test_unconditional_state_dict_is_unchanged_and_conditional_adds_the_class_parts():
    G, D = _pair()
    G3, D3 = _pair(num_classes=3)
    g, d = G.state_dict(), D.state_dict()
    assert not any(k.startswith(("embed", "projection")) for k in [*g, *d])
    assert G.num_classes == D.num_classes == 0 and G.embed is None and D.projection is None
    # The unconditional shapes (what existing checkpoints hold).
    assert g["w_avg"].shape == (8,) and g["mapping.0.weight"].shape == (8, 8)
    assert d["out.weight"].shape == (1, 16)
    # Conditional: the same names plus the class embedding of G and the projection of D;
    # only the first mapping layer (z and the embedding) and w_avg (one row per class) grow.
    g3, d3 = G3.state_dict(), D3.state_dict()
    assert set(g3) - set(g) == {"embed.weight"} and set(g) <= set(g3)
    assert set(d3) - set(d) == {"projection.embed.weight"} and set(d) <= set(d3)
    assert g3["embed.weight"].shape == (3, 8) and d3["projection.embed.weight"].shape == (3, 16)
    grown = {k for k in g if g[k].shape != g3[k].shape}
    assert grown == {"mapping.0.weight", "w_avg"}
    assert g3["mapping.0.weight"].shape == (8, 16) and g3["w_avg"].shape == (3, 8)
    assert all(d[k].shape == d3[k].shape for k in d)


def test_w_avg_is_tracked_per_class_and_truncation_gives_the_class_mean_image():
    G, _ = _pair(num_classes=3)
    beta = G.o.w_avg_beta
    z, y = torch.randn(3, 8), _labels(0, 0, 1)  # class 2 is not in the batch
    G.train()
    with torch.no_grad():
        G(z, y=y)
        w = G.map(z, y)  # the mapping network has no noise: the w the forward saw
    expected = torch.stack([w[:2].mean(0) * (1 - beta), w[2] * (1 - beta), torch.zeros(8)])
    torch.testing.assert_close(G.w_avg, expected)
    with torch.no_grad():
        G(torch.randn(2, 8), y=_labels(2, 2))
    assert G.w_avg[2].abs().sum() > 0
    G.eval()
    with torch.no_grad():
        t = G(torch.randn(6, 8), y=_labels(0, 0, 1, 1, 2, 2), truncation_psi=0.0)
        # psi = 0: every latent of a class gives that class's mean image...
        for c in range(3):
            torch.testing.assert_close(t[2 * c], t[2 * c + 1])
            mean_image = G.synthesis(G.w_avg[c].expand(1, G.num_ws, -1))
            torch.testing.assert_close(t[2 * c:2 * c + 1], mean_image)
        # ...and different classes have different ones.
        assert (t[0] - t[2]).abs().amax() > 1e-3 and (t[2] - t[4]).abs().amax() > 1e-3
        half = G(z, y=y, truncation_psi=0.5)
        w_half = G.w_avg[y].lerp(G.map(z, y), 0.5)
        torch.testing.assert_close(half, G.synthesis(w_half[:, None].expand(-1, G.num_ws, -1)))


def test_style_mixing_keeps_the_class_of_the_image():
    G, _ = _pair(num_classes=3, style_mixing_prob=1.0)
    G.train()
    z, y = torch.randn(4, 8), _labels(0, 1, 2, 1)
    torch.manual_seed(5)
    ws = G.styles(z, y)
    torch.manual_seed(5)  # replay the draws of styles(): crossover layer, coin, second latent
    cutoff = int(torch.randint(1, G.num_ws, ()))
    torch.rand(())
    z2 = torch.randn_like(z)
    torch.testing.assert_close(ws[:, 0], G.map(z, y))
    torch.testing.assert_close(ws[:, -1], G.map(z2, y))  # the second latent, the same labels
    assert not torch.allclose(ws[:, -1], G.map(z2, _labels(2, 2, 0, 0)))
    assert torch.equal(ws[:, :cutoff], ws[:, :1].expand(-1, cutoff, -1))


def test_the_path_length_pass_maps_with_the_labels_of_the_step():
    G, _ = _pair(num_classes=3, pl_every=1)
    G.train()
    seen = []
    original = G.map

    def spy(z, y=None):
        seen.append(None if y is None else y.clone())
        return original(z, y)

    G.map = spy  # type: ignore[method-assign]
    assert G.regularizer(0, 4)  # no labels given: random classes
    assert seen[0] is not None and len(seen[0]) == 2 and ((seen[0] >= 0) & (seen[0] < 3)).all()
    seen.clear()
    terms = G.regularizer(0, 4, y=_labels(2, 1, 0, 0))  # the step's labels, as the engine passes
    assert torch.equal(seen[0], _labels(2, 1))  # batch 4 / pl_batch_shrink 2: the first two
    assert all(torch.equal(s, _labels(2, 1)) for s in seen)  # style mixing's latent too
    terms["pl"].backward()
    assert G.embed.weight.grad is not None and G.embed.weight.grad.any()
    seen.clear()
    G.regularizer(0, 6, y=_labels(1, 2))  # shorter than the batch: repeated
    assert torch.equal(seen[0], _labels(1, 2, 1))


def _conditional_config(steps: int) -> dict:
    # Style mixing on every step and the path-length pass too (pl_every 1), R1 as well.
    options = {**TINY, "style_mixing_prob": 1.0, "pl_every": 1}
    return {"arch": "stylegan2-32", "conditional": True, "batch_size": 4, "steps": steps,
            "seed": 3, "options": {"stylegan2-32": options}, "ema_decay": 0.9, "r1_gamma": 0.1,
            "checkpoint_every": 100, "sample_every": 1000, "sample_grid": 6, "log_every": 1}


def test_conditional_training_runs_and_resumes_bit_exactly(tmp_path):
    data = labelled_data(12)
    straight = api.train(_conditional_config(3), out=tmp_path / "straight", data=data)
    assert straight.step == 3 and "aux_pl" in straight.last
    assert all(math.isfinite(v) for v in straight.last.values())
    G = straight.trainer.G
    assert G.num_classes == 3 and G.w_avg.shape == (3, 8) and (G.w_avg.abs().sum(1) > 0).all()

    api.train(_conditional_config(3), out=tmp_path / "split", data=data,
              callbacks=stop_at(2))
    assert api.train(resume=tmp_path / "split", data=data).step == 3
    (ta, ma), (tb, mb) = final_checkpoint(tmp_path / "straight"), final_checkpoint(tmp_path / "split")
    assert_bit_identical(ta, tb)
    assert ma["sampler"] == mb["sampler"]
    assert (tmp_path / "straight" / "samples.png").read_bytes() == \
        (tmp_path / "split" / "samples.png").read_bytes()
    G_loaded, _ = api.load_generator(tmp_path / "split")
    assert G_loaded.num_classes == 3 and G_loaded.class_names == ("a", "b", "c")
    truncated = api.sample(G_loaded, 2, seed=0, truncation=0.5, classes=["c"])
    assert truncated.shape == (2, 3, 32, 32) and torch.isfinite(truncated).all()
