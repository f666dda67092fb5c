"""fastgan32/64/128 (Liu et al. 2021): skip-layer excitation, the self-supervised D through the
aux contract (reconstruction on the real images only, decoders that learn), the trainer's
aux_recon statistic, bf16 autocast, eval-mode noise, option errors on the command line, and the
class-conditional variant (conditional batch norm in G, projection in D, unconditional modules
unchanged, conditional training resumes bit for bit). Shapes, ranges and bit-exact resume are
checked by tests/core/test_contracts.py."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from gan_zoo_plugins.fastgan import FastGANDiscriminator, FastGANGenerator, SkipLayerExcitation

import gan_zoo
from gan_zoo import api
from gan_zoo.cli import cli
from gan_zoo.data import ImageArray
from gan_zoo.training.assembly import build

from ..reliability.helpers import assert_bit_identical, final_checkpoint, labelled_data, stop_at

TINY = {"ngf": 4, "ndf": 4, "latent_dim": 8, "decoder_width": 4, "max_channels": 16}


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors gain nothing from threads, and on a shared machine a second OpenMP thread
    spinning at every barrier cost 100x in CPU time here."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def nets(res: int = 32, num_classes: int = 0, **options):
    arch = build("arch", f"fastgan{res}", {**TINY, **options})
    arch.num_classes = num_classes  # as the engine sets it in a conditional run
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


# ----------------------------------------------------------------------------- class-conditional


def _shapes_digest(module: torch.nn.Module) -> tuple[int, str]:
    items = sorted((k, tuple(v.shape)) for k, v in module.state_dict().items())
    return len(items), hashlib.sha256(repr(items).encode()).hexdigest()[:16]


def test_unconditional_modules_keep_their_state_dict_so_old_checkpoints_load():
    G, D = nets()
    assert G.num_classes == 0 and D.num_classes == 0 and D.projection is None
    # Names and shapes of fastgan32's tensors at TINY, recorded before the conditional variant
    # existed: a change here means existing checkpoints no longer load.
    assert _shapes_digest(G) == (46, "32347cab70ebfa3c")
    assert _shapes_digest(D) == (64, "7c3cdad00a787954")
    for key in [*G.state_dict(), *D.state_dict()]:
        assert not any(w in key for w in ("projection", "gain", "embed")), key
    with pytest.raises(ValueError, match="with labels"):
        G(G.sample_latent(2), y=torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="with labels"):
        D(smooth_images(2), y=torch.zeros(2, dtype=torch.long), aux=2)


@pytest.mark.parametrize("res", [32, 64])
def test_conditional_modules_swap_g_norms_and_add_d_projection(res):
    G0, _ = nets(res)
    G, D = nets(res, num_classes=3)
    assert G.num_classes == 3 and D.num_classes == 3
    # G: each batch norm's affine scale/shift becomes a per-class gain/bias, nothing else.
    plain = {k: v.shape for k, v in G0.state_dict().items()}
    labelled = {k: v.shape for k, v in G.state_dict().items()}
    norms = {k.rsplit(".", 1)[0] for k in plain if k.endswith("running_mean")}
    assert len(norms) >= 3 and all(isinstance(G.get_submodule(n), gan_zoo.ClassBatchNorm)
                                   for n in norms)
    for n in norms:
        c = plain[f"{n}.weight"][0]
        assert labelled[f"{n}.gain.weight"] == labelled[f"{n}.bias.weight"] == (3, c)
        assert labelled[f"{n}.norm.running_mean"] == (c,)
    # Every other tensor keeps its name and shape ("ups.8.norms.0.weight" is a norm's own,
    # "ups.8.norms.0.gain.weight" a conditional norm's).
    assert {k: v for k, v in plain.items() if k.rsplit(".", 1)[0] not in norms} == \
        {k: v for k, v in labelled.items() if k.rsplit(".", 2)[0] not in norms}
    # D: the unconditional weights (same draws for the same seed) plus the projection.
    def d_from_seed(num_classes: int) -> dict[str, torch.Tensor]:
        arch = build("arch", f"fastgan{res}", TINY)
        arch.num_classes = num_classes
        torch.manual_seed(0)
        return arch.build_discriminator().state_dict()

    d0, d = d_from_seed(0), d_from_seed(3)
    assert set(d) - set(d0) == {k for k in d if k.startswith("projection.")} != set()
    for k, v in d0.items():
        assert torch.equal(d[k], v), k
    assert D.projection.embed.weight.shape == (3, D.head[0].in_channels)


def test_labels_change_images_and_logits_and_aux_losses_come_with_them():
    torch.manual_seed(0)
    G, D = nets(num_classes=3)
    z = G.sample_latent(2)
    y_a, y_b = torch.tensor([0, 1]), torch.tensor([2, 2])

    def image(y):
        torch.manual_seed(1)  # the same noise
        return G(z, y=y)

    with torch.no_grad():
        xa, xb = image(y_a), image(y_b)
        torch.testing.assert_close(image(y_a), xa, rtol=0, atol=0)
    assert xa.shape == (2, 3, 32, 32) and (xa - xb).abs().max() > 1e-4
    G.eval()
    with torch.no_grad():
        ea, eb = G(z, y=y_a), G(z, y=y_b)
    assert not torch.equal(ea, eb) and torch.isfinite(ea).all()

    D.eval()  # fixed spectral-norm vectors and batch-norm statistics: calls are comparable
    x = torch.cat([smooth_images(2), xa])
    ya, yb = torch.cat([y_a, y_a]), torch.cat([y_b, y_b])
    la, lb = D(x, y=ya), D(x, y=yb)
    assert la.shape == (4,) and (la - lb).abs().max() > 1e-6
    # The class term is the projection of D's 8x8 map summed over space (Miyato & Koyama 2018).
    with torch.no_grad():
        f8 = D.features(x)[1]
        plain = D.head(f8).float().mean((1, 2, 3))
        emb = D.projection.embed.weight
    torch.testing.assert_close(la - plain, (emb[ya] * f8.sum((2, 3))).sum(1))

    def with_aux(y):
        torch.manual_seed(3)  # the same quadrants
        out, terms = D(x, y=y, aux=2)
        assert set(terms) == {"recon"} and terms["recon"].dim() == 0 and terms["recon"] > 0
        return out, terms["recon"]

    (oa, ra), (ob, rb) = with_aux(ya), with_aux(yb)
    torch.testing.assert_close(oa, la)
    torch.testing.assert_close(ob, lb)
    torch.testing.assert_close(ra, rb)  # the decoders do not see the class
    for call in (lambda: G(z), lambda: D(x), lambda: D(x, aux=2)):
        with pytest.raises(ValueError, match="without labels"):
            call()


def test_conditional_bf16_autocast_keeps_g_maps_in_bf16():
    torch.manual_seed(0)
    G, D = nets(num_classes=3)
    dtypes = []
    G.ups["8"].register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))
    y = torch.tensor([0, 2])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fake = G(G.sample_latent(2), y=y)
        logits, terms = D(torch.cat([smooth_images(2), fake]), y=torch.cat([y, y]), aux=2)
        loss = logits.mean() + terms["recon"]
    loss.backward()
    assert dtypes == [torch.bfloat16] and logits.dtype == torch.float32
    assert torch.isfinite(loss)
    assert G.dense_norm.gain.weight.grad is not None and D.projection.embed.parametrizations
    for name, p in [*G.named_parameters(), *D.named_parameters()]:
        assert p.grad is None or torch.isfinite(p.grad).all(), name


def _conditional_config(**extra) -> dict:
    return {"arch": "fastgan32", "conditional": True, "batch_size": 4, "steps": 3, "seed": 2,
            "options": {"fastgan32": TINY}, "ema_decay": 0.9, "checkpoint_every": 100,
            "sample_every": 1000, "precision": "fp32", **extra}


@pytest.mark.parametrize("extra", [{}, {"loss": "hinge", "d_update": "joint", "r1_gamma": 1.0}])
def test_conditional_training_runs_and_resumes_bit_for_bit(tmp_path, extra):
    data = labelled_data(12)
    straight = api.train(_conditional_config(**extra), out=tmp_path / "straight", data=data)
    assert straight.step == 3 and all(math.isfinite(v) for v in straight.last.values())
    assert straight.last["aux_recon"] > 0

    api.train(_conditional_config(**extra), out=tmp_path / "split", data=data,
              callbacks=stop_at(1))
    assert api.train(resume=tmp_path / "split", data=data).step == 3
    (ta, ma), (tb, mb) = final_checkpoint(tmp_path / "straight"), final_checkpoint(tmp_path / "split")
    assert any(k.startswith("D.projection.") for k in ta)
    assert any(".gain." in k for k in ta if k.startswith("G."))
    assert_bit_identical(ta, tb)
    assert ma["classes"] == mb["classes"] == {"names": ["a", "b", "c"], "counts": [4, 4, 4]}
    assert (tmp_path / "straight" / "samples.png").read_bytes() == \
        (tmp_path / "split" / "samples.png").read_bytes()
    G, _ = api.load_generator(tmp_path / "split")
    z = G.sample_latent(2, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = G(z, y=torch.tensor([0, 0])), G(z, y=torch.tensor([2, 2]))
    assert G.num_classes == 3 and not torch.equal(a, b)
