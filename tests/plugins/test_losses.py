"""Built-in losses on hand-computed logits, the gradient penalty on a known case, and each loss
training through the engine (including the alternating D update, which must keep penalties)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from gan_zoo_plugins.losses import gradient_penalty
from torch import nn

from gan_zoo import api
from gan_zoo.training.assembly import build
from gan_zoo.training.trainer import d_output_stats

from ..training.test_training_step import tiny_data

T = torch.tensor


def close(a: torch.Tensor, b: float) -> bool:
    return math.isclose(float(a.detach()), b, rel_tol=1e-6, abs_tol=1e-7)


def test_bce_values():
    loss = build("loss", "bce")
    assert close(loss.real_loss(T([0.0])), math.log(2))
    assert close(loss.real_loss(T([2.0, -1.0])), (math.log1p(math.exp(-2)) + math.log1p(math.e)) / 2)
    assert close(loss.fake_loss(T([2.0])), math.log1p(math.exp(2)))
    assert close(loss.generator_loss(T([2.0])), math.log1p(math.exp(-2)))


def test_hinge_values():
    loss = build("loss", "hinge")
    real, fake = T([2.0, 0.5, -1.0]), T([-2.0, 0.5])
    assert close(loss.real_loss(real), (0 + 0.5 + 2.0) / 3)
    assert close(loss.real_loss(real, 0.9), (0 + 0.5 + 2.0) / 3)  # labels ignored
    assert close(loss.fake_loss(fake), (0 + 1.5) / 2)
    assert close(loss.generator_loss(fake), 0.75)
    assert close(loss.discriminator_loss(real, fake), 2.5 / 3 + 0.75)


def test_lsgan_values_and_label_smoothing():
    loss = build("loss", "lsgan")
    x = T([1.0, 0.0])
    assert close(loss.real_loss(x), 0.5 * (0 + 1) / 2)
    assert close(loss.real_loss(x, 0.9), 0.5 * (0.01 + 0.81) / 2)
    assert close(loss.fake_loss(x), 0.5 * (1 + 0) / 2)
    assert close(loss.generator_loss(T([0.5, 3.0])), 0.5 * (0.25 + 4.0) / 2)
    shifted = build("loss", "lsgan", {"fake_target": -1.0, "generator_target": 0.0})
    assert close(shifted.fake_loss(x), 0.5 * (4 + 1) / 2)
    assert close(shifted.generator_loss(x), 0.5 * (1 + 0) / 2)


def test_wgan_values_and_drift():
    loss = build("loss", "wgan-gp")
    x = T([1.0, 3.0])
    assert close(loss.real_loss(x), -2.0)
    assert close(loss.fake_loss(x), 2.0)
    assert close(loss.generator_loss(x), -2.0)
    drift = build("loss", "wgan-gp", {"drift": 0.001})
    assert close(drift.real_loss(x), -2.0 + 0.001 * 5.0)


class _Linear(nn.Module):
    """D(x) = <w, x>: its input gradient is w everywhere."""

    def __init__(self, w: torch.Tensor):
        super().__init__()
        self.w = nn.Parameter(w)

    def forward(self, x):
        return (x * self.w).flatten(1).sum(1)


class _Quadratic(nn.Module):
    """D(x) = 0.5 ||x||^2: its input gradient is x itself."""

    def forward(self, x):
        return 0.5 * x.pow(2).flatten(1).sum(1)


def test_gradient_penalty_linear_critic_known_answer():
    w = torch.full((3, 2, 2), 0.25)  # ||w|| = 0.25 * sqrt(12)
    real, fake = torch.randn(5, 3, 2, 2), torch.randn(5, 3, 2, 2)
    gp = gradient_penalty(_Linear(w), real, fake)
    assert close(gp, (0.25 * math.sqrt(12) - 1) ** 2)


def test_gradient_penalty_at_given_interpolation_points():
    real = torch.ones(2, 1, 1, 4)  # ||real|| = 2
    fake = torch.zeros(2, 1, 1, 4)
    alpha = T([0.25, 1.0])  # x_hat = alpha * real: norms 0.5 and 2
    gp = gradient_penalty(_Quadratic(), real, fake, alpha=alpha)
    assert close(gp, ((0.5 - 1) ** 2 + (2 - 1) ** 2) / 2)


def test_penalty_reaches_discriminator_weights_and_weight_scales_it():
    w = torch.full((3, 2, 2), 0.5)
    d = _Linear(w.clone())
    real, fake = torch.randn(4, 3, 2, 2), torch.randn(4, 3, 2, 2)
    loss = build("loss", "wgan-gp", {"gp_weight": 10.0})
    pen = loss.penalty(d, real, fake)
    assert close(pen, 10 * (0.5 * math.sqrt(12) - 1) ** 2)
    pen.backward()  # create_graph=True: the penalty's gradient flows into D's parameters
    norm = 0.5 * math.sqrt(12)
    # d/dw 10 (||w|| - 1)^2 = 20 (||w|| - 1) w / ||w||
    assert torch.allclose(d.w.grad, 20 * (norm - 1) * w / norm, atol=1e-5)
    assert build("loss", "wgan-gp", {"gp_weight": 0}).penalty(d, real, fake) is None
    assert build("loss", "hinge").penalty(d, real, fake) is None


def test_wgan_gp_warns_once_about_batch_norm():
    d = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(1),
                      nn.Flatten(0))
    loss = build("loss", "wgan-gp")
    x = torch.randn(4, 3, 8, 8)
    with pytest.warns(UserWarning, match="batch norm"):
        loss.penalty(d, x, x + 1)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss.penalty(d, x, x + 1)  # only once


@pytest.mark.parametrize("name", ["bce", "hinge", "lsgan", "wgan-gp"])
def test_each_loss_trains(tmp_path, name):
    opts = {"conv32": {"width": 8, "latent_dim": 16, "d_norm": "none"}}
    tr = api.prepare_training({"arch": "conv32", "batch_size": 8, "steps": 2, "loss": name,
                               "options": opts}, out=tmp_path / "run", data=tiny_data())
    before = [p.detach().clone() for p in tr.G.parameters()]
    stats = [tr.train_step() for _ in range(2)]
    assert all(np.isfinite(s["loss_d"]) and np.isfinite(s["loss_g"]) for s in stats)
    assert any(not torch.equal(a, b) for a, b in zip(before, tr.G.parameters(), strict=True))


def test_d_acc_and_sign_split_at_the_loss_decision_threshold(tmp_path):
    assert [build("loss", n).decision_threshold() for n in ("bce", "hinge", "wgan-gp")] == [0] * 3
    assert build("loss", "lsgan").decision_threshold() == 0.5  # targets 0 and 1
    assert build("loss", "lsgan", {"fake_target": -1.0}).decision_threshold() == 0.0
    real, fake = T([0.8, 0.9, 0.3]), T([0.1, 0.2, 0.6])
    at_half = d_output_stats(real, fake, 0.5)
    assert close(T(at_half["d_acc"]), 4 / 6) and close(T(at_half["d_real_sign"]), 1 / 3)
    at_zero = d_output_stats(real, fake)  # read as logits, every fake looks real
    assert close(T(at_zero["d_acc"]), 3 / 6) and at_zero["d_real_sign"] == 1.0
    assert close(T(at_zero["d_real"]), float(torch.sigmoid(real).mean()))
    # The engine asks the run's loss: a threshold above every output makes D call all fakes
    # right and all reals wrong.
    opts = {"conv32": {"width": 8, "latent_dim": 16, "d_norm": "none"}}
    tr = api.prepare_training({"arch": "conv32", "batch_size": 8, "steps": 2, "loss": "lsgan",
                               "options": opts}, out=tmp_path / "run", data=tiny_data())
    tr.c.loss.decision_threshold = lambda: 1e9
    stats = tr.train_step()
    assert stats["d_acc"] == 0.5 and stats["d_real_sign"] == -1.0


@pytest.mark.parametrize("mode", ["joint", "separate", "alternating"])
def test_penalty_applied_in_every_d_update_mode(tmp_path, mode):
    opts = {"conv32": {"width": 8, "latent_dim": 16, "d_norm": "none"}}
    tr = api.prepare_training({"arch": "conv32", "batch_size": 8, "steps": 2, "loss": "wgan-gp",
                               "d_update": mode, "options": opts},
                              out=tmp_path / "run", data=tiny_data())
    calls = []
    original = tr.c.loss.penalty

    def spy(d, real, fake):
        out = original(d, real, fake)
        calls.append(float(out.detach()))
        return out

    tr.c.loss.penalty = spy
    tr.train_step()
    assert len(calls) == 1 and calls[0] > 0
