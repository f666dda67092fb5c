"""The engine's stabilizers that are options rather than plugins: D dropout (training mode only),
spectral norm on D, R1 on a known case, and the generator's EMA (arithmetic, used for sampling,
kept in the checkpoint)."""

from __future__ import annotations

import torch
from torch import nn

from gan_zoo import api
from gan_zoo.training.assembly import build

from .test_training_step import TINY, tiny_data


def trainer(tmp_path, **cfg):
    values = {"arch": "conv32", "batch_size": 8, "steps": 2, "options": TINY, **cfg}
    return api.prepare_training(values, out=tmp_path / "run", data=tiny_data())


def test_dropout_active_only_in_training_mode():
    d = build("arch", "conv32", {"width": 8, "dropout": 0.5}).build_discriminator()
    x = torch.randn(4, 3, 32, 32)
    d.train()
    assert not torch.equal(d(x), d(x))  # new dropout masks each call
    d.eval()
    assert torch.equal(d(x), d(x))
    plain = build("arch", "conv32", {"width": 8}).build_discriminator().train()
    assert not any(isinstance(m, nn.Dropout) for m in plain.modules())


def test_spectral_norm_bounds_every_d_layer():
    d = build("arch", "conv32", {"width": 8, "d_norm": "spectral"}).build_discriminator().train()
    assert not any(isinstance(m, nn.BatchNorm2d) for m in d.modules())
    x = torch.randn(4, 3, 32, 32)
    for _ in range(30):  # power iteration converges over forward passes
        d(x)
    layers = [m for m in d.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    assert layers
    for m in layers:
        sigma = torch.linalg.matrix_norm(m.weight.detach().flatten(1), ord=2)
        assert abs(float(sigma) - 1) < 0.05


def test_r1_penalty_known_answer(tmp_path):
    tr = trainer(tmp_path, r1_gamma=4.0, precision="fp32")  # exact arithmetic, not auto's bf16
    w = torch.full((3 * 32 * 32,), 0.01)

    class Linear(nn.Module):
        def forward(self, x):
            return x.flatten(1) @ w

    tr.D = Linear()
    r1 = tr._r1(torch.randn(5, 3, 32, 32))
    # grad_x <w, x> = w for every image: gamma / 2 * ||w||^2.
    assert torch.isclose(r1, torch.tensor(4.0 / 2 * float(w.pow(2).sum())))


def test_ema_update_arithmetic(tmp_path):
    tr = trainer(tmp_path, ema_decay=0.5)
    with torch.no_grad():
        for p in tr.G.parameters():
            p.fill_(1.0)
        for p in tr.G_ema.parameters():
            p.fill_(3.0)
    tr.step = 100  # past the warm-up: decay = min(0.5, 101 / 110) = 0.5
    tr.ema.update(tr.G, tr.step)
    assert all(torch.allclose(p, torch.full_like(p, 2.0)) for p in tr.G_ema.parameters())
    tr.step = 0  # warm-up: decay = min(0.5, 1 / 10) = 0.1 -> mostly the new weights
    tr.ema.update(tr.G, tr.step)
    assert all(torch.allclose(p, torch.full_like(p, 0.1 * 2 + 0.9 * 1)) for p in tr.G_ema.parameters())


def test_sampling_and_saved_generator_use_ema(tmp_path):
    res = api.train({"arch": "conv32", "batch_size": 8, "steps": 3, "options": TINY,
                     "ema_decay": 0.9}, out=tmp_path / "run", data=tiny_data())
    tr = res.trainer
    with torch.no_grad():
        z = tr.fixed_z
        expected = tr.G_ema.eval()(z)
        raw = tr.G.eval()(z)
    assert torch.allclose(tr.sample_fixed(), expected)
    assert not torch.allclose(expected, raw)
    g, meta = api.load_generator(res.run_dir)
    assert meta["has_ema"]
    with torch.no_grad():
        assert torch.allclose(g(z), expected, atol=1e-6)
        g_raw, _ = api.load_generator(res.run_dir, ema=False)
        assert torch.allclose(g_raw(z), raw, atol=1e-6)
