"""The training step: which model gets gradients, determinism, modes, knobs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gan_zoo import api
from gan_zoo.data import ImageArray

TINY = {"conv32": {"width": 8, "latent_dim": 16}}


def tiny_data(n: int = 32, res: int = 32) -> ImageArray:
    rng = np.random.default_rng(0)
    return ImageArray(rng.integers(0, 256, (n, res, res, 3), dtype=np.uint8), "test")


def trainer(tmp_path, **cfg):
    values = {"arch": "conv32", "batch_size": 8, "steps": 4, "options": TINY, **cfg}
    return api.prepare_training(values, out=tmp_path / "run", data=tiny_data())


def _snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_d_update_changes_only_d(tmp_path):
    tr = trainer(tmp_path)
    g0 = {k: v.detach().clone() for k, v in tr.G.named_parameters()}
    real, _ = tr.real_batch()
    fake = tr.G(tr.G.sample_latent(8))
    tr.d_update(real, fake.detach())
    assert all(p.grad is None for p in tr.G.parameters())
    assert all(torch.equal(g0[k], v) for k, v in tr.G.named_parameters())
    assert any(p.grad is not None for p in tr.D.parameters())


def test_generator_update_leaves_no_gradient_in_d(tmp_path):
    tr = trainer(tmp_path)
    seen = []
    # Record D's gradients right before G's optimizer step: none may have been accumulated.
    tr.opt_g.register_step_pre_hook(lambda *a: seen.append([p.grad for p in tr.D.parameters()]))
    tr.opt_d.register_step_post_hook(lambda *a: tr.opt_d.zero_grad(set_to_none=True))
    d_before = _snapshot(tr.D)
    tr.train_step()
    assert seen and all(g is None for g in seen[0])
    assert all(p.requires_grad for p in tr.D.parameters())  # D unfrozen afterwards
    assert any(not torch.equal(d_before[k], v) for k, v in tr.D.state_dict().items())


@pytest.mark.parametrize("mode", ["joint", "separate", "alternating"])
def test_d_update_modes_train(tmp_path, mode):
    tr = trainer(tmp_path, d_update=mode)
    stats = [tr.train_step() for _ in range(3)]
    assert all(np.isfinite(s["loss_d"]) and np.isfinite(s["loss_g"]) for s in stats)
    assert 0 <= stats[-1]["d_acc"] <= 1


def test_fake_batch_generated_once_per_step(tmp_path):
    tr = trainer(tmp_path)
    calls = []
    tr.G.register_forward_hook(lambda *a: calls.append(1))
    tr.train_step()
    assert len(calls) == 1


def test_same_seed_same_weights(tmp_path):
    # One after the other: the trainer draws from torch's global RNG (dropout does too).
    a = trainer(tmp_path / "a", seed=3)
    for _ in range(3):
        a.train_step()
    b = trainer(tmp_path / "b", seed=3)
    for _ in range(3):
        b.train_step()
    for (ka, va), (kb, vb) in zip(a.G.state_dict().items(), b.G.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)
    c = trainer(tmp_path / "c", seed=4)
    c.train_step()
    assert not torch.equal(next(iter(c.G.parameters())), next(iter(a.G.parameters())))


def test_separate_learning_rates_and_betas(tmp_path):
    tr = trainer(tmp_path, lr_g=1e-4, lr_d=4e-4, beta1_g=0.0, beta1_d=0.5)
    tr.train_step()
    assert tr.opt_g.param_groups[0]["lr"] == 1e-4 and tr.opt_d.param_groups[0]["lr"] == 4e-4
    assert tr.opt_g.param_groups[0]["betas"][0] == 0.0
    assert tr.opt_d.param_groups[0]["betas"][0] == 0.5


def test_label_smoothing_changes_d_loss_target(tmp_path):
    from gan_zoo.training.assembly import build

    loss = build("loss", "bce")
    logits = torch.tensor([10.0, 10.0])
    assert loss.real_loss(logits, 1.0) < 1e-3
    # With target 0.9 a confident "real" is penalised: BCE(10, 0.9) = softplus(10) - 0.9 * 10.
    expected = torch.nn.functional.softplus(torch.tensor(10.0)) - 9.0
    assert torch.isclose(loss.real_loss(logits, 0.9), expected)


def test_nan_loss_stops_with_step_and_quantity(tmp_path):
    from gan_zoo.training.trainer import NonFiniteError

    tr = trainer(tmp_path)
    with torch.no_grad():
        next(iter(tr.D.parameters())).fill_(float("nan"))
    with pytest.raises(NonFiniteError, match="loss_d .* step 1"):
        tr.train_step()


def test_bf16_autocast_step_runs(tmp_path):
    tr = trainer(tmp_path, precision="bf16")
    stats = tr.train_step()
    assert np.isfinite(stats["loss_g"])
    assert all(p.dtype == torch.float32 for p in tr.G.parameters())


@pytest.mark.parametrize("mode", ["joint", "separate", "alternating"])
def test_bf16_with_gradient_penalty_trains(tmp_path, mode):
    # Under autocast G's fakes are bf16 and real images float32: the penalty, which mixes the
    # two, gets both in one dtype (it failed with "expected dtype c10::BFloat16").
    options = {"conv32": {**TINY["conv32"], "d_norm": "none"}}
    tr = trainer(tmp_path, precision="bf16", loss="wgan-gp", d_update=mode, options=options)
    stats = tr.train_step()
    assert np.isfinite(stats["loss_d"]) and np.isfinite(stats["loss_g"])


def test_ema_follows_generator(tmp_path):
    tr = trainer(tmp_path, ema_decay=0.9)
    tr.train_step()
    tr.train_step()
    assert tr.sampling_generator() is tr.G_ema
    assert not torch.equal(next(tr.G_ema.parameters()), next(tr.G.parameters()))
    off = trainer(tmp_path / "off", ema_decay=0.0)
    assert off.sampling_generator() is off.G


# ------------------------------------------------------------------------- passes, EMA, callbacks
@pytest.mark.parametrize("mode,expected", [
    ("separate", ["penalty", "r1", "step"]),
    ("joint", ["penalty", "r1", "step"]),
    # Each pass has its own regularizers and its own optimizer step (and scaler update).
    ("alternating", ["r1", "step", "penalty", "step"]),
])
def test_d_passes_take_their_own_regularizers_and_one_step_each(tmp_path, mode, expected):
    from gan_zoo.training.trainer import D_PASSES

    tr = trainer(tmp_path, d_update=mode, loss="wgan-gp", r1_gamma=1.0,
                 options={"conv32": {**TINY["conv32"], "d_norm": "none"}})
    events: list[str] = []
    r1, penalty, step = tr._r1, tr.c.loss.penalty, tr.opt_d.step
    tr._r1 = lambda *a: events.append("r1") or r1(*a)
    tr.c.loss.penalty = lambda *a: events.append("penalty") or penalty(*a)
    tr.opt_d.step = lambda *a, **k: events.append("step") or step(*a, **k)
    tr.d_update(tr.real_batch()[0], tr.G(tr.G.sample_latent(8)).detach())
    assert events == expected and events.count("step") == len(D_PASSES[mode])


def test_messages_and_progress_reach_callbacks(tmp_path):
    """One way to watch the loop: api.train's progress is an on_step callback, and messages for
    the user (here a rollback warning) go to on_message, with the trainer like every callback."""
    from gan_zoo.training.trainer import Callbacks

    def poison(tr, stats):
        if tr.step == 3 and not tr.rollbacks:
            with torch.no_grad():
                tr.G.dense.weight[0, 0] = float("nan")

    messages, seen = [], []
    callbacks = Callbacks(on_step=[poison], on_message=[lambda tr, m: messages.append((tr.step, m))])
    result = api.train({"arch": "conv32", "batch_size": 8, "steps": 5, "options": TINY,
                        "checkpoint_every": 2, "on_nonfinite": "rollback"},
                       out=tmp_path / "r", data=tiny_data(), callbacks=callbacks,
                       progress=lambda *args: seen.append(args))
    assert result.step == 5
    assert [m for m in messages if "rolled back to step 2" in m[1]] and messages[0][0] == 2
    assert [s[:2] for s in seen] == [(1, 5), (2, 5), (3, 5), (3, 5), (4, 5), (5, 5)]
    assert all("loss_d" in s[2] and s[3] >= 0 for s in seen)
    assert callbacks.on_step[-1] is not poison  # installed after the caller's callbacks


def test_ema_calibration_keeps_training_random_state(tmp_path):
    """Batch-norm statistics of the EMA copy come from swa_utils.update_bn on its own noise; a
    generator that draws global random numbers in its forward does not shift training's."""
    from torch import nn
    from torch.optim.swa_utils import update_bn

    from gan_zoo.training.ema import EMA, NORM_BATCHES

    class Noisy(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin, self.norm = nn.Linear(4, 4), nn.BatchNorm1d(4)

        def sample_latent(self, n, generator=None):
            return torch.randn(n, 4, generator=generator)

        def forward(self, z):
            return self.norm(self.lin(z) + torch.randn_like(z))

    torch.manual_seed(0)
    ema = EMA(Noisy(), 0.9, seed=5, device=torch.device("cpu"))
    before = torch.get_rng_state()
    module = ema.calibrated(step=1)
    assert torch.equal(torch.get_rng_state(), before) and not module.training
    ema._norm_step = -1
    again = ema.calibrated(step=1)  # the same noise: the same statistics
    assert torch.equal(again.norm.running_mean, module.norm.running_mean)
    reference = Noisy()
    reference.load_state_dict(module.state_dict())
    rng = torch.Generator().manual_seed(5 + 2)
    with torch.random.fork_rng():
        torch.set_rng_state(before)  # the forward's noise as the calibration drew it
        update_bn([reference.sample_latent(64, rng) for _ in range(NORM_BATCHES)], reference)
    assert torch.equal(reference.norm.running_var, module.norm.running_var)
