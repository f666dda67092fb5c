"""fastgan32/64/128 (Liu et al. 2021): skip-layer excitation, the self-supervised D through the
aux contract (reconstruction on the real images only, decoders that learn), the trainer's
aux_recon statistic, bf16 autocast, eval-mode noise, and option errors on the command line.
Shapes, ranges and bit-exact resume are checked by tests/core/test_contracts.py."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from gan_zoo_plugins.fastgan import FastGANDiscriminator, FastGANGenerator, SkipLayerExcitation

from gan_zoo import api
from gan_zoo.cli import cli
from gan_zoo.data import ImageArray
from gan_zoo.training.assembly import build

TINY = {"ngf": 4, "ndf": 4, "latent_dim": 8, "decoder_width": 4, "max_channels": 16}


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors gain nothing from threads, and on a shared machine a second OpenMP thread
    spinning at every barrier cost 100x in CPU time here."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def nets(res: int = 32, **options):
    arch = build("arch", f"fastgan{res}", {**TINY, **options})
    return arch.build_generator(), arch.build_discriminator()


def smooth_images(n: int, res: int = 32, seed: int = 0) -> torch.Tensor:
    """Images in [-1, 1] with structure (blobs), not noise: something a decoder can learn."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(n, 3, 4, 4, generator=g) * 2 - 1
    return torch.nn.functional.interpolate(base, size=res, mode="bilinear", align_corners=False)


# ----------------------------------------------------------------------------- generator


def test_sle_multiplies_the_high_map_by_a_gate_from_the_low_map():
    torch.manual_seed(0)
    sle = SkipLayerExcitation(8, 6)
    low, high = torch.randn(2, 8, 8, 8), torch.randn(2, 6, 16, 16)
    gate = sle.gate(low)
    assert gate.shape == (2, 6, 1, 1) and gate.min() > 0 and gate.max() < 1
    torch.testing.assert_close(sle(low, high), high * gate)
    with torch.no_grad():
        sle.excite.weight.zero_()  # gate = sigmoid(0) = 1/2 for every channel
    torch.testing.assert_close(sle(low, high), high / 2)


def test_changing_an_sle_gate_changes_the_image():
    torch.manual_seed(0)
    G, _ = nets()
    assert isinstance(G, FastGANGenerator) and set(G.sles) == {"16", "32"}
    z = G.sample_latent(2)

    def image():
        torch.manual_seed(1)  # the same noise (train mode: batch statistics, global noise)
        return G(z)

    before = image()
    torch.testing.assert_close(image(), before, rtol=0, atol=0)
    with torch.no_grad():
        G.sles["32"].excite.weight.add_(1.0)
    assert (image() - before).abs().max() > 1e-3
    G_off, _ = nets(sle=False)
    assert len(G_off.sles) == 0 and G_off(z).shape == (2, 3, 32, 32)


def test_eval_mode_noise_follows_the_latent_and_leaves_the_global_generator_alone():
    torch.manual_seed(0)
    G, _ = nets()
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("strength"):
                p.fill_(0.5)  # noise matters (it starts at zero strength)
    G.eval()
    z = G.sample_latent(3)
    state = torch.get_rng_state()
    alone, in_batch = G(z[:1]), G(z)[:1]
    assert torch.equal(torch.get_rng_state(), state)
    torch.testing.assert_close(alone, in_batch)
    G.train()
    torch.manual_seed(1)
    a = G(z)
    torch.manual_seed(2)
    assert not torch.equal(a, G(z))  # training: fresh noise from the global generator


# ----------------------------------------------------------------------------- discriminator


@pytest.mark.parametrize("d_norm", ["none", "batch"])
def test_plain_forward_has_no_decoders_and_aux_uses_only_the_first_n_images(d_norm):
    torch.manual_seed(0)
    _, D = nets(d_norm=d_norm)
    assert isinstance(D, FastGANDiscriminator) and D.aux_losses == ("recon",)
    D.eval()  # fixed spectral-norm vectors and batch-norm statistics: calls are comparable
    calls = []
    for dec in (D.decode_whole, D.decode_part):
        dec.register_forward_hook(lambda *a: calls.append(1))
    x = smooth_images(5)
    logits = D(x)
    assert isinstance(logits, torch.Tensor) and logits.shape == (5,) and calls == []

    def recon(images):
        torch.manual_seed(3)  # the same quadrants
        out, terms = D(images, aux=2)
        assert set(terms) == {"recon"} and terms["recon"].dim() == 0
        torch.testing.assert_close(out, D(images))
        return terms["recon"]

    base = recon(x)
    assert len(calls) == 2 and base > 0
    other = x.clone()
    other[2:] = -other[2:]  # the fakes change: the loss on the reals does not
    torch.testing.assert_close(recon(other), base, rtol=0, atol=1e-6)
    other[1] = -other[1]  # a real image changes: so does the loss
    assert (recon(other) - base).abs() > 1e-4


def test_recon_loss_falls_when_d_trains_on_it_alone():
    torch.manual_seed(0)
    _, D = nets(ndf=8, decoder_width=8, d_norm="none")
    x = smooth_images(4)
    opt = torch.optim.Adam(D.parameters(), lr=1e-2)

    def loss():
        return D(x, aux=4)[1]["recon"]

    torch.manual_seed(1)
    first = loss().item()
    for _ in range(10):
        opt.zero_grad()
        loss().backward()
        opt.step()
    with torch.no_grad():
        torch.manual_seed(1)
        last = loss().item()
    assert last < 0.7 * first, (first, last)


def test_recon_weight_zero_turns_the_decoders_off():
    _, D = nets(recon_weight=0.0)
    logits, terms = D(smooth_images(3), aux=3)
    assert logits.shape == (3,) and terms["recon"].item() == 0


def test_bf16_autocast_channels_last_forward_and_backward_stay_finite():
    torch.manual_seed(0)
    G, D = nets(res=64)
    G = G.to(memory_format=torch.channels_last)
    D = D.to(memory_format=torch.channels_last)
    real = smooth_images(2, 64).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fake = G(G.sample_latent(2))
        logits, terms = D(torch.cat([real, fake]), aux=2)
        loss = logits.mean() + terms["recon"]
    assert logits.dtype == torch.float32 and logits.shape == (4,)
    loss.backward()
    assert torch.isfinite(loss)
    for name, p in [*G.named_parameters(), *D.named_parameters()]:
        assert p.grad is None or torch.isfinite(p.grad).all(), name
    G.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        one = G(G.sample_latent(1))
    assert torch.isfinite(one).all() and one.abs().max() <= 1


# ----------------------------------------------------------------------------- engine and CLI


@pytest.mark.parametrize(("loss", "d_update"), [("hinge", "separate"), ("bce", "joint"),
                                                ("bce", "alternating")])
def test_training_step_logs_aux_recon(tmp_path, loss, d_update):
    rng = np.random.default_rng(0)
    data = ImageArray(rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8), "test")
    tr = api.prepare_training(
        {"arch": "fastgan32", "batch_size": 4, "steps": 2, "loss": loss, "d_update": d_update,
         "precision": "fp32", "options": {"fastgan32": TINY}}, out=tmp_path / "run", data=data)
    stats = tr.train_step()
    assert "aux_recon" in stats and stats["aux_recon"] > 0
    assert all(math.isfinite(v) for v in stats.values())


def test_invalid_options_give_one_clear_message_on_the_command_line(tmp_path):
    runner = CliRunner()
    for option, words in (("fastgan32.recon_side=32", "must be 16"), ("fastgan64.ngf=2", "ngf"),
                          ("fastgan64.widht=8", "widht")):
        arch = option.split(".")[0]
        result = runner.invoke(cli, ["train", "--arch", arch, "-o", option, "--steps", "1",
                                     "--out", str(tmp_path / "run")])
        assert result.exit_code != 0, result.output
        assert f"{arch}." in result.output and words in result.output, result.output
        assert "Traceback" not in result.output
